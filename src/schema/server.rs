//! The embedded schema registry: the Confluent Schema Registry REST API for Avro —
//! subjects and versions, register (idempotent), look up, schemas by id, soft and
//! permanent deletes, `/config` with the seven compatibility levels, and
//! `/compatibility`. Errors carry Confluent's `error_code` and `message`.
//!
//! Identity follows Confluent: a schema is stored once, with one global id, however many
//! subjects use it; registering the same schema (same JSON, whitespace and key order aside)
//! under a subject again returns the existing id and creates no version.
//!
//! State lives in the compacted `_schemas` topic ([`Journal`], folded by
//! [`RegistryState`]), so several registry processes on one cluster agree, and a restart
//! reads it back.
//!
//! Architecture Invariant: a write is answered only after the log has decided it; the
//! HTTP layer never changes the state itself.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::compat::{self, CompatibilityLevel};
use super::journal::{Journal, JournalError};
use super::state::{
    LogKey, RegistryState, SchemaValue, Verdict, config_value, delete_value, key_bytes,
    schema_value,
};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// How often a registration is proposed again after losing a race to another replica.
const PROPOSALS: usize = 20;

/// The registry: its log and the state read from it.
pub struct SchemaStore {
    journal: Journal,
}

impl SchemaStore {
    pub fn new(journal: Journal) -> SchemaStore {
        SchemaStore { journal }
    }

    /// Catches up with the end of the log before a read; if the broker cannot say where
    /// that is, answers from what has been read (and says so in the log).
    async fn catch_up(&self) {
        if let Err(e) = self.journal.sync().await {
            tracing::warn!(error = %e, "answering from the registry state read so far");
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RegistryState> {
        self.journal.state().read().expect("registry state lock")
    }
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
    fn subject_soft_deleted(subject: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: 40404,
            message: format!(
                "Subject '{subject}' was soft deleted.Set permanent=true to delete permanently"
            ),
        }
    }
    fn subject_not_soft_deleted(subject: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: 40405,
            message: format!(
                "Subject '{subject}' was not deleted first before being permanently deleted"
            ),
        }
    }
    fn version_soft_deleted(subject: &str, version: u32) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: 40406,
            message: format!(
                "Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently"
            ),
        }
    }
    fn version_not_soft_deleted(subject: &str, version: u32) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: 40407,
            message: format!(
                "Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
            ),
        }
    }
    fn subject_level_not_configured(subject: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: 40408,
            message: format!(
                "Subject '{subject}' does not have subject-level compatibility configured"
            ),
        }
    }
    fn incompatible(subject: &str, messages: &[String]) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            code: 409,
            message: format!(
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                messages.join("; ")
            ),
        }
    }
    fn invalid_level(level: &str) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: 42203,
            message: format!(
                "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive; got '{level}'"
            ),
        }
    }
    fn store(e: JournalError) -> Self {
        let (code, status) = match e {
            JournalError::Timeout(_) => (50002, StatusCode::INTERNAL_SERVER_ERROR),
            JournalError::Write { .. } => (50001, StatusCode::INTERNAL_SERVER_ERROR),
        };
        ApiError {
            status,
            code,
            message: format!("Error in the backend data store: {e}"),
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

/// Query parameters Confluent clients send. Flags are strings: Python's client sends
/// `normalize=False`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    deleted: Option<String>,
    permanent: Option<String>,
    verbose: Option<String>,
    default_to_global: Option<String>,
}

fn flag(value: &Option<String>) -> bool {
    value
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// A version path segment: `latest`/`-1`, or a number from 1.
enum VersionRef {
    Latest,
    Number(u32),
}

fn parse_version(version: &str) -> Result<VersionRef, ApiError> {
    if version == "latest" || version == "-1" {
        return Ok(VersionRef::Latest);
    }
    version
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1 && *n <= i32::MAX as u32)
        .map(VersionRef::Number)
        .ok_or_else(|| ApiError::invalid_version(version))
}

fn parse_schema(text: &str) -> Result<apache_avro::Schema, ApiError> {
    apache_avro::Schema::parse_str(text).map_err(|e| ApiError::invalid_schema(e.to_string()))
}

impl SchemaStore {
    /// `(version, id, schema)` of a subject's version.
    fn version(
        &self,
        subject: &str,
        version: &str,
        deleted: bool,
    ) -> Result<(u32, u32, String), ApiError> {
        let wanted = parse_version(version)?;
        let state = self.read();
        let versions = state.versions(subject, deleted).ok_or_else(|| {
            if state.has_subject(subject) {
                ApiError::subject_soft_deleted(subject)
            } else {
                ApiError::subject_not_found(subject)
            }
        })?;
        let v = match wanted {
            VersionRef::Latest => versions.last(),
            VersionRef::Number(n) => versions.iter().find(|v| v.version == n),
        }
        .ok_or_else(|| ApiError::version_not_found(version))?;
        let schema = state.schema(v.id).unwrap_or_default().to_string();
        Ok((v.version, v.id, schema))
    }

    /// The live versions' schemas of `subject`, oldest first.
    fn history(&self, subject: &str) -> Result<Vec<apache_avro::Schema>, ApiError> {
        let texts: Vec<String> = {
            let state = self.read();
            state
                .versions(subject, false)
                .unwrap_or_default()
                .iter()
                .filter_map(|v| state.schema(v.id).map(str::to_string))
                .collect()
        };
        texts.iter().map(|t| parse_schema(t)).collect()
    }

    /// Registers `text` under `subject` (checked against the subject's level); returns
    /// its id. Proposes until the log accepts, or the schema turns out to be there.
    async fn register(&self, subject: &str, text: String) -> Result<u32, ApiError> {
        let candidate = parse_schema(&text)?;
        // Propose against everything any replica has written so far.
        self.journal.sync().await.map_err(ApiError::store)?;
        for _ in 0..PROPOSALS {
            let (existing, level) = {
                let state = self.read();
                let existing = state.id_of(&text).filter(|id| {
                    state
                        .versions(subject, false)
                        .unwrap_or_default()
                        .iter()
                        .any(|v| v.id == *id)
                });
                (existing, state.level_for(subject))
            };
            if let Some(id) = existing {
                return Ok(id);
            }
            let problems = compat::check(level, &candidate, &self.history(subject)?);
            if !problems.is_empty() {
                return Err(ApiError::incompatible(subject, &problems));
            }
            let (version, id) = {
                let state = self.read();
                (state.next_version(subject), state.id_for(&text))
            };
            let nonce = format!("{:016x}", fastrand::u64(..));
            let key = LogKey::Schema {
                subject: subject.to_string(),
                version,
                nonce: nonce.clone(),
            };
            let value = SchemaValue {
                subject: subject.to_string(),
                version,
                id,
                schema: text.clone(),
            };
            self.journal
                .write(key_bytes(&key), Some(schema_value(&value)))
                .await
                .map_err(ApiError::store)?;
            let verdict = self.read().verdict(&nonce);
            if verdict == Some(Verdict::Accepted) {
                tracing::info!(subject, id, version, "schema registered");
                return Ok(id);
            }
            // Another replica took the version or id first: clean up and propose again.
            let _ = self.journal.write(key_bytes(&key), None).await;
        }
        Err(ApiError::store(JournalError::Timeout(
            std::time::Duration::ZERO,
        )))
    }
}

/// Answers from the state read so far; on "not found", first catches up with the end of
/// the log (another replica may have just written it) and asks again.
async fn fresh<T>(
    store: &SchemaStore,
    answer: impl Fn(&SchemaStore) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    match answer(store) {
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            store.catch_up().await;
            answer(store)
        }
        other => other,
    }
}

/// The registry's HTTP routes.
pub fn router(store: Arc<SchemaStore>) -> Router {
    Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/schemas/types", get(|| async { ok(json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_by_id))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(subject_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(subject_version_schema),
        )
        .route("/config", get(global_config).put(set_global_config))
        .route(
            "/config/{subject}",
            get(subject_config)
                .put(set_subject_config)
                .delete(delete_subject_config),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility_with_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatibility_with_all),
        )
        .with_state(store)
}

type St = State<Arc<SchemaStore>>;

fn schema_id(store: &SchemaStore, id: &str) -> Result<(u32, String), ApiError> {
    id.parse()
        .ok()
        .and_then(|n| Some((n, store.read().schema(n)?.to_string())))
        .ok_or_else(|| ApiError::schema_not_found(id))
}

async fn schema_by_id(State(store): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (_, schema) = fresh(&store, |s| schema_id(s, &id)).await?;
    ok(json!({ "schema": schema }))
}

async fn raw_schema_by_id(State(store): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (_, schema) = fresh(&store, |s| schema_id(s, &id)).await?;
    Ok(reply(
        StatusCode::OK,
        serde_json::from_str(&schema).unwrap_or(Value::String(schema)),
    ))
}

async fn subjects_by_id(State(store): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (n, _) = schema_id(&store, &id)?;
    let mut subjects: Vec<String> = store
        .read()
        .uses_of(n)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    subjects.dedup();
    ok(json!(subjects))
}

async fn versions_by_id(State(store): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (n, _) = schema_id(&store, &id)?;
    let uses: Vec<Value> = store
        .read()
        .uses_of(n)
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    ok(json!(uses))
}

async fn subjects(State(store): St, Query(p): Query<Params>) -> Result<Response, ApiError> {
    store.catch_up().await;
    ok(json!(store.read().subjects(flag(&p.deleted))))
}

async fn versions(
    State(store): St,
    Path(subject): Path<String>,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    store.catch_up().await;
    let state = store.read();
    let versions = state
        .versions(&subject, flag(&p.deleted))
        .ok_or_else(|| ApiError::subject_not_found(&subject))?;
    ok(json!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>()
    ))
}

async fn register(
    State(store): St,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = normalise(&body)?;
    let id = store.register(&subject, text).await?;
    ok(json!({ "id": id }))
}

async fn lookup(
    State(store): St,
    Path(subject): Path<String>,
    Query(p): Query<Params>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = normalise(&body)?;
    store.catch_up().await;
    let state = store.read();
    let versions = state
        .versions(&subject, flag(&p.deleted))
        .ok_or_else(|| ApiError::subject_not_found(&subject))?;
    let id = state
        .id_of(&text)
        .ok_or_else(|| ApiError::schema_not_found("for this subject"))?;
    let v = versions
        .iter()
        .find(|v| v.id == id)
        .ok_or_else(|| ApiError::schema_not_found("for this subject"))?;
    ok(json!({"subject": subject, "id": id, "version": v.version, "schema": text}))
}

async fn subject_version(
    State(store): St,
    Path((subject, version)): Path<(String, String)>,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let (version, id, schema) =
        fresh(&store, |s| s.version(&subject, &version, flag(&p.deleted))).await?;
    ok(json!({"subject": subject, "version": version, "id": id, "schema": schema}))
}

async fn subject_version_schema(
    State(store): St,
    Path((subject, version)): Path<(String, String)>,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let (_, _, schema) = fresh(&store, |s| s.version(&subject, &version, flag(&p.deleted))).await?;
    Ok(reply(
        StatusCode::OK,
        serde_json::from_str(&schema).unwrap_or(Value::String(schema)),
    ))
}

/// `DELETE /subjects/{s}`: soft-deletes every version; with `permanent=true` (after a soft
/// delete) removes them. Answers the versions affected.
async fn delete_subject(
    State(store): St,
    Path(subject): Path<String>,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let permanent = flag(&p.permanent);
    let all = store
        .read()
        .versions(&subject, true)
        .ok_or_else(|| ApiError::subject_not_found(&subject))?;
    let live: Vec<u32> = all
        .iter()
        .filter(|v| !v.deleted)
        .map(|v| v.version)
        .collect();
    if permanent && !live.is_empty() {
        return Err(ApiError::subject_not_soft_deleted(&subject));
    }
    if !permanent && live.is_empty() {
        return Err(ApiError::subject_soft_deleted(&subject));
    }
    let affected: Vec<u32> = if permanent {
        all.iter().map(|v| v.version).collect()
    } else {
        live
    };
    for version in &affected {
        delete_one(&store, &subject, *version, permanent).await?;
    }
    tracing::info!(subject, permanent, versions = ?affected, "subject deleted");
    ok(json!(affected))
}

async fn delete_version(
    State(store): St,
    Path((subject, version)): Path<(String, String)>,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let permanent = flag(&p.permanent);
    let (number, _, _) = store.version(&subject, &version, true)?;
    let deleted = store
        .read()
        .versions(&subject, true)
        .unwrap_or_default()
        .iter()
        .any(|v| v.version == number && v.deleted);
    match (permanent, deleted) {
        (true, false) => return Err(ApiError::version_not_soft_deleted(&subject, number)),
        (false, true) => return Err(ApiError::version_soft_deleted(&subject, number)),
        _ => {}
    }
    delete_one(&store, &subject, number, permanent).await?;
    tracing::info!(subject, version = number, permanent, "version deleted");
    ok(json!(number))
}

async fn delete_one(
    store: &SchemaStore,
    subject: &str,
    version: u32,
    permanent: bool,
) -> Result<(), ApiError> {
    let marker = key_bytes(&LogKey::DeleteVersion {
        subject: subject.to_string(),
        version,
    });
    if !permanent {
        return store
            .journal
            .write(marker, Some(delete_value()))
            .await
            .map_err(ApiError::store);
    }
    let Some(nonce) = store.read().nonce_of(subject, version) else {
        return Ok(());
    };
    let key = key_bytes(&LogKey::Schema {
        subject: subject.to_string(),
        version,
        nonce,
    });
    store
        .journal
        .write(key, None)
        .await
        .map_err(ApiError::store)?;
    store
        .journal
        .write(marker, None)
        .await
        .map_err(ApiError::store)
}

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: String,
}

fn parse_level(body: &[u8]) -> Result<CompatibilityLevel, ApiError> {
    let request: ConfigRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))?;
    request
        .compatibility
        .parse()
        .map_err(|_| ApiError::invalid_level(&request.compatibility))
}

async fn global_config(State(store): St) -> Result<Response, ApiError> {
    store.catch_up().await;
    ok(json!({"compatibilityLevel": store.read().global_level().to_string()}))
}

async fn set_global_config(State(store): St, body: Bytes) -> Result<Response, ApiError> {
    let level = parse_level(&body)?;
    set_level(&store, None, level).await?;
    ok(json!({"compatibility": level.to_string()}))
}

async fn subject_config(
    State(store): St,
    Path(subject): Path<String>,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    store.catch_up().await;
    let state = store.read();
    let level = match state.subject_level(&subject) {
        Some(level) => level,
        None if flag(&p.default_to_global) => state.global_level(),
        None => return Err(ApiError::subject_level_not_configured(&subject)),
    };
    ok(json!({"compatibilityLevel": level.to_string()}))
}

async fn set_subject_config(
    State(store): St,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let level = parse_level(&body)?;
    set_level(&store, Some(subject), level).await?;
    ok(json!({"compatibility": level.to_string()}))
}

async fn delete_subject_config(
    State(store): St,
    Path(subject): Path<String>,
) -> Result<Response, ApiError> {
    let previous = store
        .read()
        .subject_level(&subject)
        .ok_or_else(|| ApiError::subject_not_found(&subject))?;
    let key = key_bytes(&LogKey::Config {
        subject: Some(subject),
    });
    store
        .journal
        .write(key, None)
        .await
        .map_err(ApiError::store)?;
    ok(json!({"compatibilityLevel": previous.to_string()}))
}

async fn set_level(
    store: &SchemaStore,
    subject: Option<String>,
    level: CompatibilityLevel,
) -> Result<(), ApiError> {
    tracing::info!(subject = ?subject, %level, "compatibility level set");
    let key = key_bytes(&LogKey::Config { subject });
    store
        .journal
        .write(key, Some(config_value(level)))
        .await
        .map_err(ApiError::store)
}

/// `POST /compatibility/subjects/{s}/versions/{v}`: is the schema compatible with that
/// version, in the direction(s) the subject's level asks for?
async fn compatibility_with_version(
    State(store): St,
    Path((subject, version)): Path<(String, String)>,
    Query(p): Query<Params>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let candidate = parse_schema(&normalise(&body)?)?;
    let (_, _, text) = store.version(&subject, &version, false)?;
    let level = non_transitive(store.read().level_for(&subject));
    let problems = compat::check(level, &candidate, &[parse_schema(&text)?]);
    compatibility_reply(&problems, flag(&p.verbose))
}

/// `POST /compatibility/subjects/{s}/versions`: against every version the level asks for.
async fn compatibility_with_all(
    State(store): St,
    Path(subject): Path<String>,
    Query(p): Query<Params>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let candidate = parse_schema(&normalise(&body)?)?;
    let level = store.read().level_for(&subject);
    let problems = compat::check(level, &candidate, &store.history(&subject)?);
    compatibility_reply(&problems, flag(&p.verbose))
}

/// A check against one given version uses the level's direction only.
fn non_transitive(level: CompatibilityLevel) -> CompatibilityLevel {
    match level {
        CompatibilityLevel::BackwardTransitive => CompatibilityLevel::Backward,
        CompatibilityLevel::ForwardTransitive => CompatibilityLevel::Forward,
        CompatibilityLevel::FullTransitive => CompatibilityLevel::Full,
        other => other,
    }
}

fn compatibility_reply(problems: &[String], verbose: bool) -> Result<Response, ApiError> {
    if verbose {
        ok(json!({"is_compatible": problems.is_empty(), "messages": problems}))
    } else {
        ok(json!({"is_compatible": problems.is_empty()}))
    }
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
    use rdkafka::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::DefaultProducerContext;

    /// A mock cluster with the registry topic; held by the test.
    fn cluster() -> (MockCluster<'static, DefaultProducerContext>, ClientConfig) {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("_schemas", 1, 1).unwrap();
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", mock.bootstrap_servers());
        (mock, client)
    }

    /// A registry process on `client`'s cluster: its URL.
    async fn start(client: &ClientConfig) -> String {
        let journal = Journal::open(client, "_schemas", false, 1).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            serve(
                listener,
                Arc::new(SchemaStore::new(journal)),
                std::future::pending(),
            )
            .await
            .unwrap()
        });
        url
    }

    const SCHEMA: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}"#;
    const SCHEMA_REORDERED: &str =
        r#"{ "name": "A", "fields": [ {"type": "long", "name": "x"} ], "type": "record" }"#;
    const SCHEMA_2: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"},{"name":"y","type":["null","string"],"default":null}]}"#;
    /// Adds a field without a default: not BACKWARD compatible with SCHEMA.
    const SCHEMA_NO_DEFAULT: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"},{"name":"z","type":"string"}]}"#;

    struct Client {
        http: reqwest::Client,
        url: String,
    }

    impl Client {
        fn new(url: &str) -> Client {
            Client {
                http: reqwest::Client::new(),
                url: url.to_string(),
            }
        }
        async fn send(
            &self,
            method: reqwest::Method,
            path: &str,
            body: Option<Value>,
        ) -> (u16, Value) {
            let mut req = self.http.request(method, format!("{}{path}", self.url));
            if let Some(b) = body {
                req = req.header("content-type", CONTENT_TYPE).body(b.to_string());
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json().await.unwrap())
        }
        async fn get(&self, path: &str) -> (u16, Value) {
            self.send(reqwest::Method::GET, path, None).await
        }
        async fn delete(&self, path: &str) -> (u16, Value) {
            self.send(reqwest::Method::DELETE, path, None).await
        }
        async fn register(&self, subject: &str, schema: &str) -> (u16, Value) {
            self.send(
                reqwest::Method::POST,
                &format!("/subjects/{subject}/versions"),
                Some(json!({ "schema": schema })),
            )
            .await
        }
    }

    #[tokio::test]
    async fn the_same_schema_gets_the_same_id_and_no_new_version() {
        let (_mock, kafka) = cluster();
        let c = Client::new(&start(&kafka).await);
        assert_eq!(c.register("t-value", SCHEMA).await, (200, json!({"id": 1})));
        assert_eq!(
            c.register("t-value", SCHEMA_REORDERED).await.1,
            json!({"id": 1})
        );
        assert_eq!(c.register("u-value", SCHEMA).await.1, json!({"id": 1}));
        assert_eq!(c.register("t-value", SCHEMA_2).await.1, json!({"id": 2}));
        assert_eq!(c.get("/subjects").await.1, json!(["t-value", "u-value"]));
        assert_eq!(c.get("/subjects/t-value/versions").await.1, json!([1, 2]));
        let (_, latest) = c.get("/subjects/t-value/versions/latest").await;
        assert_eq!(
            (latest["version"].clone(), latest["id"].clone()),
            (json!(2), json!(2))
        );
        assert_eq!(c.get("/subjects/t-value/versions/1").await.1["id"], 1);
        let (_, by_id) = c.get("/schemas/ids/1").await;
        let fetched = apache_avro::Schema::parse_str(by_id["schema"].as_str().unwrap()).unwrap();
        assert_eq!(fetched, apache_avro::Schema::parse_str(SCHEMA).unwrap());
        assert_eq!(
            c.get("/schemas/ids/1/versions").await.1,
            json!([{"subject": "t-value", "version": 1}, {"subject": "u-value", "version": 1}])
        );
    }

    #[tokio::test]
    async fn state_survives_a_restart_and_replicas_agree() {
        let (_mock, kafka) = cluster();
        let first = Client::new(&start(&kafka).await);
        first.register("t-value", SCHEMA).await;
        first.register("t-value", SCHEMA_2).await;
        first
            .send(
                reqwest::Method::PUT,
                "/config/t-value",
                Some(json!({"compatibility": "FULL"})),
            )
            .await;
        // A second registry on the same cluster (or the first, restarted) reads the log.
        let second = Client::new(&start(&kafka).await);
        assert_eq!(
            second.get("/subjects/t-value/versions").await.1,
            json!([1, 2])
        );
        assert_eq!(
            second.get("/config/t-value").await.1,
            json!({"compatibilityLevel": "FULL"})
        );
        // Both take writes; ids and versions never collide.
        let (a, b) = tokio::join!(
            first.register("v-value", SCHEMA_NO_DEFAULT),
            second.register("w-value", r#""string""#)
        );
        let ids = [a.1["id"].as_u64().unwrap(), b.1["id"].as_u64().unwrap()];
        assert_ne!(ids[0], ids[1], "two schemas got one id");
        for c in [&first, &second] {
            for id in ids {
                assert_eq!(c.get(&format!("/schemas/ids/{id}")).await.0, 200);
            }
        }
    }

    #[tokio::test]
    async fn an_incompatible_schema_is_refused_under_the_subjects_level() {
        let (_mock, kafka) = cluster();
        let c = Client::new(&start(&kafka).await);
        c.register("t-value", SCHEMA).await;
        let (status, body) = c.register("t-value", SCHEMA_NO_DEFAULT).await;
        assert_eq!((status, body["error_code"].clone()), (409, json!(409)));
        let check = c
            .send(
                reqwest::Method::POST,
                "/compatibility/subjects/t-value/versions/latest?verbose=true",
                Some(json!({ "schema": SCHEMA_NO_DEFAULT })),
            )
            .await;
        assert_eq!(check.1["is_compatible"], false);
        assert!(!check.1["messages"].as_array().unwrap().is_empty());
        // NONE lets it through.
        c.send(
            reqwest::Method::PUT,
            "/config/t-value",
            Some(json!({"compatibility": "NONE"})),
        )
        .await;
        assert_eq!(c.register("t-value", SCHEMA_NO_DEFAULT).await.0, 200);
        assert_eq!(
            c.send(
                reqwest::Method::PUT,
                "/config",
                Some(json!({"compatibility": "SIDEWAYS"}))
            )
            .await
            .1["error_code"],
            42203
        );
        assert_eq!(c.get("/config/u-value").await.1["error_code"], 40408);
        assert_eq!(
            c.get("/config/u-value?defaultToGlobal=true").await.1,
            json!({"compatibilityLevel": "BACKWARD"})
        );
    }

    #[tokio::test]
    async fn soft_then_permanent_delete_follow_confluent() {
        let (_mock, kafka) = cluster();
        let c = Client::new(&start(&kafka).await);
        c.register("t-value", SCHEMA).await;
        c.register("t-value", SCHEMA_2).await;
        // Permanent first is refused.
        assert_eq!(
            c.delete("/subjects/t-value/versions/1?permanent=true")
                .await
                .1["error_code"],
            40407
        );
        assert_eq!(
            c.delete("/subjects/t-value/versions/1").await,
            (200, json!(1))
        );
        assert_eq!(c.get("/subjects/t-value/versions").await.1, json!([2]));
        assert_eq!(
            c.get("/subjects/t-value/versions?deleted=true").await.1,
            json!([1, 2])
        );
        assert_eq!(
            c.get("/subjects/t-value/versions/1").await.1["error_code"],
            40402
        );
        assert_eq!(
            c.delete("/subjects/t-value/versions/1?permanent=true")
                .await,
            (200, json!(1))
        );
        assert_eq!(
            c.get("/subjects/t-value/versions?deleted=true").await.1,
            json!([2])
        );
        assert_eq!(
            c.delete("/subjects/t-value?permanent=true").await.1["error_code"],
            40405
        );
        assert_eq!(c.delete("/subjects/t-value").await, (200, json!([2])));
        assert_eq!(c.get("/subjects").await.1, json!([]));
        assert_eq!(c.get("/subjects?deleted=true").await.1, json!(["t-value"]));
        assert_eq!(
            c.delete("/subjects/t-value?permanent=true").await,
            (200, json!([2]))
        );
        assert_eq!(c.get("/subjects?deleted=true").await.1, json!([]));
        // A schema id stays readable by consumers of old records.
        assert_eq!(c.get("/schemas/ids/1").await.0, 200);
    }

    #[tokio::test]
    async fn errors_use_confluent_codes() {
        let (_mock, kafka) = cluster();
        let c = Client::new(&start(&kafka).await);
        assert_eq!(
            c.get("/subjects/nope/versions").await,
            (
                404,
                json!({"error_code": 40401, "message": "Subject 'nope' not found."})
            )
        );
        assert_eq!(c.get("/schemas/ids/9").await.1["error_code"], 40403);
        let (status, body) = c.register("x", "{\"type\": \"nonsense\"}").await;
        assert_eq!((status, body["error_code"].clone()), (422, json!(42201)));
        c.register("x", SCHEMA).await;
        assert_eq!(c.get("/subjects/x/versions/2").await.1["error_code"], 40402);
        assert_eq!(
            c.get("/subjects/x/versions/zero").await.1["error_code"],
            42202
        );
    }

    /// The crate the pipeline uses as its client agrees with the server.
    #[tokio::test]
    async fn schema_registry_converter_registers_and_fetches() {
        let (_mock, kafka) = cluster();
        let url = start(&kafka).await;
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
