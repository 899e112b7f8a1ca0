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

/// How the client authenticates.
#[derive(Clone, Debug, Default)]
pub enum RegistryAuth {
    #[default]
    None,
    /// HTTP basic (Confluent Cloud: API key and secret).
    Basic {
        username: String,
        password: Option<crate::config::Secret>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(crate::config::Secret),
}

/// Where the registry is and how to talk to it.
#[derive(Clone, Debug, Default)]
pub struct RegistrySettings {
    pub url: String,
    pub auth: RegistryAuth,
    /// Extra CA certificates (PEM) to trust for `https`.
    pub ca_pem: Option<Vec<u8>>,
}

impl Registry {
    /// A client of the registry at `url`, without authentication.
    pub fn new(url: &str) -> Registry {
        Self::connect(&RegistrySettings {
            url: url.to_string(),
            ..RegistrySettings::default()
        })
        .expect("a client without TLS or auth settings always builds")
    }

    /// A client with authentication and extra CA certificates.
    pub fn connect(settings: &RegistrySettings) -> Result<Registry, SchemaError> {
        let url = settings.url.trim_end_matches('/').to_string();
        let invalid = |message: String| SchemaError::Registry {
            url: url.clone(),
            message,
            retriable: false,
        };
        let mut builder = SrSettings::new_builder(url.clone());
        builder.set_timeout(Duration::from_secs(30));
        match &settings.auth {
            RegistryAuth::None => {}
            RegistryAuth::Basic { username, password } => {
                builder.set_basic_authorization(username, password.as_ref().map(|p| p.expose()));
            }
            RegistryAuth::Bearer(token) => {
                builder.set_token_authorization(token.expose());
            }
        }
        let mut client = reqwest::Client::builder();
        if let Some(pem) = &settings.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| invalid(format!("registry.ca_file is not a PEM bundle: {e}")))?;
            if certs.is_empty() {
                return Err(invalid("registry.ca_file holds no PEM certificate".into()));
            }
            for cert in certs {
                client = client.add_root_certificate(cert);
            }
        }
        let sr = builder
            .build_with(client)
            .map_err(|e| invalid(format!("building the registry client: {}", describe(&e))))?;
        Ok(Registry {
            settings: sr,
            url,
            by_id: Mutex::new(HashMap::new()),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    use std::sync::Mutex as StdMutex;

    const SCHEMA: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}"#;

    /// An HTTP server that answers like a registry holding SCHEMA as id 7, and refuses
    /// (401, as Confluent does) any call without the expected Authorization header.
    async fn guarded(expected: &'static str) -> (String, Arc<StdMutex<Vec<String>>>) {
        let seen: Arc<StdMutex<Vec<String>>> = Arc::default();
        let check = {
            let seen = seen.clone();
            move |headers: &HeaderMap| {
                let got = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                seen.lock().unwrap().push(got.clone());
                got == expected
            }
        };
        let (c1, c2) = (check.clone(), check);
        let app = axum::Router::new()
            .route(
                "/subjects/{s}/versions",
                post(move |h: HeaderMap| async move {
                    if c1(&h) {
                        (axum::http::StatusCode::OK, r#"{"id":7}"#)
                    } else {
                        (
                            axum::http::StatusCode::UNAUTHORIZED,
                            r#"{"error_code":401,"message":"Unauthorized"}"#,
                        )
                    }
                }),
            )
            .route(
                "/schemas/ids/{id}",
                get(move |h: HeaderMap| async move {
                    if c2(&h) {
                        (
                            axum::http::StatusCode::OK,
                            serde_json::json!({ "schema": SCHEMA }).to_string(),
                        )
                    } else {
                        (axum::http::StatusCode::UNAUTHORIZED, "{}".to_string())
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    #[tokio::test]
    async fn basic_auth_is_sent_on_every_call() {
        // "user:s3cret" in base64.
        let (url, seen) = guarded("Basic dXNlcjpzM2NyZXQ=").await;
        let registry = Registry::connect(&RegistrySettings {
            url,
            auth: RegistryAuth::Basic {
                username: "user".into(),
                password: Some(Secret::new("s3cret")),
            },
            ca_pem: None,
        })
        .unwrap();
        let codec = registry.codec("t-value", SCHEMA).await.unwrap();
        assert_eq!(codec.id(), 7);
        assert_eq!(seen.lock().unwrap().len(), 2, "register and fetch by id");
    }

    #[tokio::test]
    async fn bearer_auth_is_sent_and_a_refusal_is_not_retried() {
        let (url, seen) = guarded("Bearer t0ken").await;
        let good = Registry::connect(&RegistrySettings {
            url: url.clone(),
            auth: RegistryAuth::Bearer(Secret::new("t0ken")),
            ca_pem: None,
        })
        .unwrap();
        assert_eq!(good.codec("t-value", SCHEMA).await.unwrap().id(), 7);
        // Wrong credentials are a configuration problem: reported at once.
        let bad = Registry::connect(&RegistrySettings {
            url,
            auth: RegistryAuth::Bearer(Secret::new("wrong")),
            ca_pem: None,
        })
        .unwrap();
        let err = bad.codec("t-value", SCHEMA).await.unwrap_err();
        assert!(err.to_string().contains("register t-value"), "{err}");
        assert_eq!(seen.lock().unwrap().last().unwrap(), "Bearer wrong");
    }

    #[test]
    fn a_bad_ca_file_is_a_clear_error() {
        let err = Registry::connect(&RegistrySettings {
            url: "https://registry.example".into(),
            auth: RegistryAuth::None,
            ca_pem: Some(b"not a certificate".to_vec()),
        })
        .unwrap_err();
        assert!(err.to_string().contains("ca_file"), "{err}");
    }
}
