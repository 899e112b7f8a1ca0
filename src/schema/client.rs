//! The schema-registry client, over the `schema_registry_converter` crate: it speaks the
//! Confluent REST API, so any compatible registry works (Confluent, Karapace, Redpanda,
//! Apicurio's ccompat API, or our embedded one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::Schema;
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use super::{Codec, SchemaError};

/// First and longest wait between attempts while the registry is unreachable.
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// A Confluent-compatible registry, with schemas cached by id.
pub struct Registry {
    url: String,
    settings: SrSettings,
    by_id: Mutex<HashMap<u32, Arc<Schema>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("url", &self.url).finish()
    }
}

impl Registry {
    pub fn new(url: &str) -> Registry {
        let url = url.trim_end_matches('/').to_string();
        Registry {
            settings: SrSettings::new(url.clone()),
            url,
            by_id: Mutex::new(HashMap::new()),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Registers `schema` under `subject` (the registry returns the existing id when it is
    /// already there), fetches the registered schema back by id, and returns a codec for
    /// it. Retries with backoff while the registry is unreachable.
    pub async fn codec(&self, subject: &str, schema: &str) -> Result<Codec, SchemaError> {
        let id = self
            .retrying(&format!("register {subject}"), || async move {
                let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_string());
                post_schema(&self.settings, subject.to_string(), supplied)
                    .await
                    .map(|r| r.id)
            })
            .await?;
        let registered = self.schema_by_id(id).await?;
        Codec::new(id, subject, (*registered).clone())
    }

    /// The schema with `id`, from the cache or the registry.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>, SchemaError> {
        if let Some(s) = self.by_id.lock().expect("cache lock").get(&id) {
            return Ok(s.clone());
        }
        let registered = self
            .retrying(&format!("fetch schema {id}"), || async move {
                get_schema_by_id(id, &self.settings).await
            })
            .await?;
        let schema = Schema::parse_str(&registered.schema).map_err(|e| SchemaError::Invalid {
            name: format!("registry schema {id}"),
            message: e.to_string(),
        })?;
        let schema = Arc::new(schema);
        self.by_id
            .lock()
            .expect("cache lock")
            .insert(id, schema.clone());
        Ok(schema)
    }

    /// Runs `call` until it succeeds or fails in a way retrying cannot fix.
    async fn retrying<T, F, Fut>(&self, what: &str, call: F) -> Result<T, SchemaError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, SRCError>>,
    {
        let mut wait = BACKOFF_START;
        let mut attempt = 1u32;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) if e.retriable => {
                    crate::metrics::RegistryError { retriable: true }.emit();
                    tracing::warn!(registry = %self.url, attempt, retry_in_ms = wait.as_millis() as u64, error = %e, "{what}: schema registry unreachable; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(BACKOFF_MAX);
                    attempt += 1;
                }
                Err(e) => {
                    crate::metrics::RegistryError { retriable: false }.emit();
                    return Err(SchemaError::Registry {
                        url: self.url.clone(),
                        message: format!("{what}: {}", describe(&e)),
                        retriable: false,
                    });
                }
            }
        }
    }
}

/// The registry's own message, without the crate's "it's retriable" boilerplate.
fn describe(e: &SRCError) -> String {
    match &e.cause {
        Some(cause) => format!("{} ({cause})", e.error),
        None => e.error.clone(),
    }
}
