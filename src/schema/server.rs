//! The embedded schema registry: the Confluent Schema Registry REST API, as far as this
//! version goes: register (idempotent), look up, fetch by id, list subjects and versions.
//!
//! Identity follows Confluent: a schema is stored once, with one global id, however many
//! subjects use it; registering the same schema (same JSON, whitespace and key order aside)
//! under a subject again returns the existing id and creates no version.
//!
//! Architecture Invariant: the registry keeps its state in memory here, so it lives as long
//! as its process; run it as its own process (`credstream registry`) when pipelines restart
//! around it. Persistence in a compacted `_schemas` topic is issue 4.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The registry's state: schemas by id, and each subject's versions.
#[derive(Debug, Default)]
pub struct SchemaStore {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Normalised schema text; the id is the index + 1.
    schemas: Vec<String>,
    by_text: HashMap<String, u32>,
    /// Schema ids of each subject's versions; the version is the index + 1.
    subjects: BTreeMap<String, Vec<u32>>,
}

/// A Confluent-shaped error: HTTP status, `error_code`, `message`.
struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl ApiError {
    fn subject_not_found(subject: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: 40401,
            message: format!("Subject '{subject}' not found."),
        }
    }
    fn version_not_found(version: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: 40402,
            message: format!("Version {version} not found."),
        }
    }
    fn schema_not_found(what: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: 40403,
            message: format!("Schema {what} not found"),
        }
    }
    fn invalid_schema(message: String) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: 42201,
            message: format!("Invalid schema: {message}"),
        }
    }
    fn invalid_version(version: &str) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: 42202,
            message: format!(
                "The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            ),
        }
    }
    fn bad_request(message: String) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: 400,
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        reply(
            self.status,
            json!({"error_code": self.code, "message": self.message}),
        )
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Result<Response, ApiError> {
    Ok(reply(StatusCode::OK, body))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

/// Parses a register or lookup body and normalises its schema.
fn normalise(body: &[u8]) -> Result<String, ApiError> {
    let request: SchemaRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))?;
    if let Some(t) = request.schema_type.as_deref()
        && !t.eq_ignore_ascii_case("AVRO")
    {
        return Err(ApiError::invalid_schema(format!(
            "schema type {t} is not supported; this registry serves AVRO"
        )));
    }
    if !request.references.is_empty() {
        return Err(ApiError::invalid_schema(
            "schema references are not supported yet".into(),
        ));
    }
    let json: Value = serde_json::from_str(&request.schema)
        .map_err(|e| ApiError::invalid_schema(e.to_string()))?;
    apache_avro::Schema::parse(&json).map_err(|e| ApiError::invalid_schema(e.to_string()))?;
    // serde_json's map is ordered by key, so this drops whitespace and key order only.
    Ok(json.to_string())
}

impl SchemaStore {
    /// Registers `text` under `subject`; returns its id.
    fn register(&self, subject: &str, text: String) -> u32 {
        let mut inner = self.inner.write().expect("registry lock");
        let id = match inner.by_text.get(&text) {
            Some(&id) => id,
            None => {
                inner.schemas.push(text.clone());
                let id = inner.schemas.len() as u32;
                inner.by_text.insert(text, id);
                id
            }
        };
        let versions = inner.subjects.entry(subject.to_string()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
            tracing::info!(subject, id, version = versions.len(), "schema registered");
        }
        id
    }

    fn schema(&self, id: u32) -> Option<String> {
        let inner = self.inner.read().expect("registry lock");
        inner.schemas.get((id as usize).checked_sub(1)?).cloned()
    }

    /// `(version, id, schema)` of a subject's version (`latest` or a number).
    fn version(&self, subject: &str, version: &str) -> Result<(u32, u32, String), ApiError> {
        let inner = self.inner.read().expect("registry lock");
        let versions = inner
            .subjects
            .get(subject)
            .ok_or_else(|| ApiError::subject_not_found(subject))?;
        let index = if version == "latest" {
            versions.len() - 1
        } else {
            let n: u32 = version
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ApiError::invalid_version(version))?;
            let index = n as usize - 1;
            if index >= versions.len() {
                return Err(ApiError::version_not_found(version));
            }
            index
        };
        let id = versions[index];
        let schema = inner.schemas[id as usize - 1].clone();
        Ok((index as u32 + 1, id, schema))
    }
}

/// The registry's HTTP routes.
pub fn router(store: Arc<SchemaStore>) -> Router {
    Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/schemas/types", get(|| async { ok(json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", axum::routing::post(lookup))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(subject_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(subject_version_schema),
        )
        .with_state(store)
}

type St = State<Arc<SchemaStore>>;

async fn schema_by_id(State(store): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let schema = id
        .parse()
        .ok()
        .and_then(|id| store.schema(id))
        .ok_or_else(|| ApiError::schema_not_found(&id))?;
    ok(json!({ "schema": schema }))
}

async fn raw_schema_by_id(State(store): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let schema = id
        .parse()
        .ok()
        .and_then(|id| store.schema(id))
        .ok_or_else(|| ApiError::schema_not_found(&id))?;
    Ok(reply(
        StatusCode::OK,
        serde_json::from_str(&schema).unwrap_or(Value::String(schema)),
    ))
}

async fn subjects(State(store): St) -> Result<Response, ApiError> {
    let inner = store.inner.read().expect("registry lock");
    ok(json!(inner.subjects.keys().collect::<Vec<_>>()))
}

async fn versions(State(store): St, Path(subject): Path<String>) -> Result<Response, ApiError> {
    let inner = store.inner.read().expect("registry lock");
    let versions = inner
        .subjects
        .get(&subject)
        .ok_or_else(|| ApiError::subject_not_found(&subject))?;
    ok(json!((1..=versions.len() as u32).collect::<Vec<_>>()))
}

async fn register(
    State(store): St,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = normalise(&body)?;
    let id = store.register(&subject, text);
    ok(json!({ "id": id }))
}

async fn lookup(
    State(store): St,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = normalise(&body)?;
    let inner = store.inner.read().expect("registry lock");
    let versions = inner
        .subjects
        .get(&subject)
        .ok_or_else(|| ApiError::subject_not_found(&subject))?;
    let id = *inner
        .by_text
        .get(&text)
        .ok_or_else(|| ApiError::schema_not_found("for this subject"))?;
    let index = versions
        .iter()
        .position(|v| *v == id)
        .ok_or_else(|| ApiError::schema_not_found("for this subject"))?;
    ok(json!({"subject": subject, "id": id, "version": index + 1, "schema": text}))
}

async fn subject_version(
    State(store): St,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (version, id, schema) = store.version(&subject, &version)?;
    ok(json!({"subject": subject, "version": version, "id": id, "schema": schema}))
}

async fn subject_version_schema(
    State(store): St,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, _, schema) = store.version(&subject, &version)?;
    Ok(reply(
        StatusCode::OK,
        serde_json::from_str(&schema).unwrap_or(Value::String(schema)),
    ))
}

/// Serves the registry on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<SchemaStore>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(store))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            serve(listener, Arc::default(), std::future::pending())
                .await
                .unwrap()
        });
        (url, task)
    }

    const SCHEMA: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}"#;
    const SCHEMA_REORDERED: &str =
        r#"{ "name": "A", "fields": [ {"type": "long", "name": "x"} ], "type": "record" }"#;
    const SCHEMA_2: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"},{"name":"y","type":["null","string"],"default":null}]}"#;

    #[tokio::test]
    async fn the_same_schema_gets_the_same_id_and_no_new_version() {
        let (url, _task) = start().await;
        let http = reqwest::Client::new();
        let post = |subject: &'static str, schema: &'static str| {
            let http = http.clone();
            let url = url.clone();
            async move {
                http.post(format!("{url}/subjects/{subject}/versions"))
                    .header("content-type", CONTENT_TYPE)
                    .body(json!({ "schema": schema }).to_string())
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        assert_eq!(post("t-value", SCHEMA).await, json!({"id": 1}));
        assert_eq!(post("t-value", SCHEMA_REORDERED).await, json!({"id": 1}));
        assert_eq!(post("u-value", SCHEMA).await, json!({"id": 1}));
        assert_eq!(post("t-value", SCHEMA_2).await, json!({"id": 2}));

        let get = |path: String| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let r = http.get(format!("{url}{path}")).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
        assert_eq!(
            get("/subjects".into()).await.1,
            json!(["t-value", "u-value"])
        );
        assert_eq!(
            get("/subjects/t-value/versions".into()).await.1,
            json!([1, 2])
        );
        let (_, latest) = get("/subjects/t-value/versions/latest".into()).await;
        assert_eq!(latest["version"], 2);
        assert_eq!(latest["id"], 2);
        let (_, v1) = get("/subjects/t-value/versions/1".into()).await;
        assert_eq!(v1["id"], 1);
        let (_, by_id) = get("/schemas/ids/1".into()).await;
        let fetched = apache_avro::Schema::parse_str(by_id["schema"].as_str().unwrap()).unwrap();
        assert_eq!(fetched, apache_avro::Schema::parse_str(SCHEMA).unwrap());
    }

    #[tokio::test]
    async fn errors_use_confluent_codes() {
        let (url, _task) = start().await;
        let http = reqwest::Client::new();
        let get = |path: &str| {
            let req = http.get(format!("{url}{path}"));
            async move {
                let r = req.send().await.unwrap();
                (
                    r.status().as_u16(),
                    r.json::<Value>().await.unwrap()["error_code"].clone(),
                )
            }
        };
        assert_eq!(get("/subjects/nope/versions").await, (404, json!(40401)));
        assert_eq!(get("/schemas/ids/9").await, (404, json!(40403)));
        let r = http
            .post(format!("{url}/subjects/x/versions"))
            .body(json!({"schema": "{\"type\": \"nonsense\"}"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 422);
        assert_eq!(r.json::<Value>().await.unwrap()["error_code"], 42201);
        http.post(format!("{url}/subjects/x/versions"))
            .body(json!({ "schema": SCHEMA }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(get("/subjects/x/versions/2").await, (404, json!(40402)));
        assert_eq!(get("/subjects/x/versions/zero").await, (422, json!(42202)));
    }

    /// The crate the pipeline uses as its client agrees with the server.
    #[tokio::test]
    async fn schema_registry_converter_registers_and_fetches() {
        let (url, _task) = start().await;
        let registry = crate::schema::Registry::new(&url);
        let codec = registry.codec("t-value", SCHEMA).await.unwrap();
        assert_eq!(codec.id(), 1);
        let again = registry.codec("t-value", SCHEMA_REORDERED).await.unwrap();
        assert_eq!(again.id(), 1);
        assert_eq!(
            *codec.schema(),
            apache_avro::Schema::parse_str(SCHEMA).unwrap()
        );
    }
}
