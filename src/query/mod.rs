//! The HTTP query API over the topology's stores, `/healthz`, `/readyz` and `/metrics`.
//!
//! Errors are JSON: `{"error": {"code": "...", "message": "..."}}`. List endpoints page with
//! an opaque `cursor`; a response carries `next_cursor` when there is more.
//!
//! Architecture Invariant: query only reads stores; it never writes one and never talks to
//! Kafka. Ledger entries hold no card numbers, so nothing here needs masking yet.

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::credit::views::{self, VERSIONS_STORE, VIEWS, VersionChain, ViewReader};
use crate::credit::{FileLedgerEntry, LEDGER_STORE};
use crate::streams::{ReplicaInfo, RuntimeStatus, StoreRegistry, StreamsMetadata};

/// Default and largest page size.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// What the API reads.
#[derive(Clone)]
pub struct QueryState {
    pub stores: StoreRegistry,
    /// The topology runtime, when this process runs one.
    pub runtime: Option<RuntimeStatus>,
    /// Which replica owns which partition, when this process runs the topology.
    pub metadata: Option<StreamsMetadata>,
    pub metrics: PrometheusHandle,
}

/// The API's routes.
pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/files", get(list_files))
        .route("/v1/files/{sha256}", get(file))
        .route("/v1/views", get(list_views))
        .route("/v1/views/{view}", get(scan_view))
        .route("/v1/views/{view}/{*key}", get(view_key))
        .route("/v1/reports/reconciliation", get(reconciliation))
        .route("/v1/metadata", get(replicas))
        .route("/v1/metadata/{store}/{*key}", get(key_metadata))
        .fallback(|| async { ApiError::not_found("no such endpoint".into()) })
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: QueryState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

use axum::Json;

struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn not_found(message: String) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message,
        }
    }
    fn bad_request(message: String) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message,
        }
    }
    fn unavailable(message: String) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message,
        }
    }
    fn internal(message: String) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

/// Query parameters; a malformed or unknown one is a JSON `bad_request` like every other
/// error of this API (axum's own rejection is plain text).
struct Query<T>(T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

impl From<crate::streams::StreamsError> for ApiError {
    fn from(e: crate::streams::StreamsError) -> Self {
        ApiError::internal(e.to_string())
    }
}

/// The OpenAPI 3 document of this API, kept true by the tests below.
const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn readyz(State(state): State<QueryState>) -> Response {
    match &state.runtime {
        Some(r) if !r.is_ready() => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": "joining the group or restoring stores"})),
        )
            .into_response(),
        _ => Json(json!({"status": "ready", "partitions": state.runtime.as_ref().map(RuntimeStatus::assigned)})).into_response(),
    }
}

async fn metrics(State(state): State<QueryState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFilter {
    client: Option<String>,
    status: Option<String>,
    category: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn decode_entry(key: &[u8], value: &[u8]) -> Result<FileLedgerEntry, ApiError> {
    serde_json::from_slice(value).map_err(|e| {
        ApiError::internal(format!(
            "ledger entry {} is unreadable: {e}",
            String::from_utf8_lossy(key)
        ))
    })
}

fn entry_json(entry: &FileLedgerEntry) -> Value {
    let mut v = serde_json::to_value(entry).expect("ledger entries serialise");
    v["key"] = Value::String(entry.key());
    v
}

/// `GET /v1/files`: ledger entries in key order, filtered, one page at a time.
async fn list_files(
    State(state): State<QueryState>,
    Query(filter): Query<FileFilter>,
) -> Result<Json<Value>, ApiError> {
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let mut start = match &filter.cursor {
        Some(c) => {
            Some(hex::decode(c).map_err(|_| ApiError::bad_request("cursor is not valid".into()))?)
        }
        None => None,
    };
    let matches = |e: &FileLedgerEntry| {
        filter.client.as_ref().is_none_or(|c| *c == e.client_id)
            && filter
                .status
                .as_ref()
                .is_none_or(|s| s.eq_ignore_ascii_case(e.status.as_str()))
            && filter
                .category
                .as_ref()
                .is_none_or(|c| Some(c) == e.category.as_ref())
    };
    let mut files = Vec::with_capacity(limit);
    let mut next_cursor = None;
    // Scan in chunks until a page (plus one, to know there is more) matched.
    'scan: loop {
        let chunk = state
            .stores
            .scan(LEDGER_STORE, b"", start.as_deref(), limit + 1)?;
        let exhausted = chunk.len() <= limit;
        for (key, value) in &chunk {
            let entry = decode_entry(key, value)?;
            if !matches(&entry) {
                continue;
            }
            if files.len() == limit {
                next_cursor = Some(hex::encode(key));
                break 'scan;
            }
            files.push(entry_json(&entry));
        }
        match chunk.last() {
            Some((last, _)) if !exhausted => {
                let mut after = last.clone();
                after.push(0);
                start = Some(after);
            }
            _ => break,
        }
    }
    Ok(Json(json!({"files": files, "next_cursor": next_cursor})))
}

/// `GET /v1/files/{sha256}`: every arrival of one file's bytes.
async fn file(
    State(state): State<QueryState>,
    Path(sha256): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "a file is named by the lower-case hex SHA-256 of its bytes".into(),
        ));
    }
    let sha256 = sha256.to_ascii_lowercase();
    let prefix = format!("{sha256}/");
    let entries = state
        .stores
        .scan(LEDGER_STORE, prefix.as_bytes(), None, MAX_LIMIT)?;
    if entries.is_empty() {
        return Err(ApiError::not_found(format!(
            "no file with SHA-256 {sha256}"
        )));
    }
    let decoded = entries
        .iter()
        .map(|(k, v)| decode_entry(k, v))
        .collect::<Result<Vec<_>, _>>()?;
    // The version chain of the file's logical identity, if it has one.
    let versions = match decoded.iter().find(|e| e.period.is_some()) {
        Some(e) => {
            let key = views::identity_key(
                &e.client_id,
                e.category.as_deref().unwrap_or_default(),
                &crate::formats::Identity {
                    period: e.period.clone().unwrap_or_default(),
                    sequence: e.sequence.clone().unwrap_or_default(),
                },
            );
            match state.stores.get(VERSIONS_STORE, key.as_bytes())? {
                Some(raw) => {
                    let chain: VersionChain = serde_json::from_slice(&raw).map_err(|e| {
                        ApiError::internal(format!("version chain {key} is unreadable: {e}"))
                    })?;
                    Some(chain_json(&key, &chain))
                }
                None => None,
            }
        }
        None => None,
    };
    let arrivals: Vec<Value> = decoded.iter().map(entry_json).collect();
    Ok(Json(
        json!({"sha256": sha256, "arrivals": arrivals, "logical_file": versions}),
    ))
}

/// A version chain as the API shows it: the identity, the current version and every
/// version (without the per-record index lists).
fn chain_json(key: &str, chain: &VersionChain) -> Value {
    json!({
        "key": key,
        "client_id": chain.client_id,
        "category": chain.category,
        "period": chain.period,
        "sequence": chain.sequence,
        "current_version": chain.current,
        "versions": chain.versions.iter().map(|v| json!({
            "version": v.version,
            "sha256": v.file_sha256,
            "arrival_id": v.arrival_id,
            "path": v.file_path,
            "status": v.status.as_str(),
            "current": Some(v.version) == chain.current,
            "records_in": v.records_in,
            "records_out": v.records_out,
            "records_quarantined": v.records_quarantined,
            "trailer": v.trailer,
            "reason": v.reason,
            "superseded_by": v.superseded_by,
            "processed_at": v.processed_at,
        })).collect::<Vec<_>>(),
    })
}

impl ViewReader for crate::streams::StoreRegistry {
    fn scan_all(&self, store: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        const CHUNK: usize = 10_000;
        let mut out = Vec::new();
        let mut start: Option<Vec<u8>> = None;
        loop {
            let chunk = self
                .scan(store, prefix.as_bytes(), start.as_deref(), CHUNK)
                .map_err(|e| e.to_string())?;
            let done = chunk.len() < CHUNK;
            if let Some((last, _)) = chunk.last() {
                let mut after = last.clone();
                after.push(0);
                start = Some(after);
            }
            out.extend(
                chunk
                    .into_iter()
                    .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v)),
            );
            if done {
                return Ok(out);
            }
        }
    }
}

/// The store behind a view name.
fn view_store(view: &str) -> Result<&'static str, ApiError> {
    VIEWS
        .iter()
        .find(|(name, _, _)| *name == view)
        .map(|(_, store, _)| *store)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no view {view:?}; views: {}",
                VIEWS.iter().map(|v| v.0).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// A view entry as JSON; version chains without their per-record index lists.
fn view_value(view: &str, key: &[u8], raw: &[u8]) -> Result<Value, ApiError> {
    let key_text = String::from_utf8_lossy(key);
    let unreadable = |e: serde_json::Error| {
        ApiError::internal(format!("{view} entry {key_text} is unreadable: {e}"))
    };
    if view == "control-totals" {
        let chain: VersionChain = serde_json::from_slice(raw).map_err(unreadable)?;
        return Ok(chain_json(&key_text, &chain));
    }
    let mut value: Value = serde_json::from_slice(raw).map_err(unreadable)?;
    // Exact amounts as decimal text, as everywhere else in the API.
    if let Some(obj) = value.as_object_mut() {
        let scale = obj.get("scale").and_then(Value::as_u64).unwrap_or(0) as u32;
        for field in ["unscaled", "net"] {
            if let Some(n) = obj.get(field).and_then(|v| v.as_i64().map(i128::from)) {
                let name = if field == "unscaled" {
                    "amount"
                } else {
                    "net_amount"
                };
                obj.insert(
                    name.into(),
                    Value::String(crate::formats::format_decimal(n, scale)),
                );
            }
        }
    }
    Ok(json!({"key": key_text, "value": value}))
}

/// `GET /v1/views`: the views and what their keys are.
async fn list_views() -> Json<Value> {
    Json(
        json!({"views": VIEWS.iter().map(|(name, _, about)| json!({"name": name, "description": about, "href": format!("/v1/views/{name}")})).collect::<Vec<_>>()}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanParams {
    prefix: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /v1/views/{view}?prefix=&limit=&cursor=`: entries in key order, with a cursor.
async fn scan_view(
    State(state): State<QueryState>,
    Path(view): Path<String>,
    Query(params): Query<ScanParams>,
) -> Result<Json<Value>, ApiError> {
    let store = view_store(&view)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let start = match &params.cursor {
        Some(c) => {
            Some(hex::decode(c).map_err(|_| ApiError::bad_request("cursor is not valid".into()))?)
        }
        None => None,
    };
    let prefix = params.prefix.unwrap_or_default();
    let chunk = state
        .stores
        .scan(store, prefix.as_bytes(), start.as_deref(), limit + 1)?;
    let next_cursor = chunk.get(limit).map(|(k, _)| hex::encode(k));
    let entries = chunk
        .iter()
        .take(limit)
        .map(|(k, v)| view_value(&view, k, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(
        json!({"view": view, "entries": entries, "next_cursor": next_cursor}),
    ))
}

/// `GET /v1/views/{view}/{key}`: one entry.
async fn view_key(
    State(state): State<QueryState>,
    Path((view, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let store = view_store(&view)?;
    match state.stores.get(store, key.as_bytes())? {
        Some(raw) => Ok(Json(view_value(&view, key.as_bytes(), &raw)?)),
        None => Err(ApiError::not_found(format!("no {view} entry {key:?}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportParams {
    client: String,
    period: String,
    limit: Option<usize>,
}

/// `GET /v1/reports/reconciliation?client=&period=YYYY-MM`: trailer vs parsed for every
/// file of the month, and the account roll-forward with every exception.
async fn reconciliation(
    State(state): State<QueryState>,
    Query(params): Query<ReportParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(10_000);
    let stores = state.stores.clone();
    let report = tokio::task::spawn_blocking(move || {
        views::reconciliation(&stores, &params.client, &params.period, limit)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    report.map(Json).map_err(|m| {
        if m.contains("is not YYYY-MM") {
            ApiError::bad_request(m)
        } else {
            ApiError::internal(m)
        }
    })
}

fn metadata(state: &QueryState) -> Result<&StreamsMetadata, ApiError> {
    state.metadata.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "this process does not run the topology; ask a replica that does".into(),
        )
    })
}

fn replica_json(r: &ReplicaInfo) -> Value {
    json!({"replica_id": r.replica_id, "endpoint": r.endpoint})
}

/// `GET /v1/metadata`: the live replicas, and the owner of each partition.
async fn replicas(State(state): State<QueryState>) -> Result<Json<Value>, ApiError> {
    let m = metadata(&state)?;
    let owners: Vec<Value> = (0..m.partitions())
        .map(|p| {
            json!({
                "partition": p,
                "owner": m.owner(p).as_ref().map(replica_json),
                "standbys": m.standbys(p).iter().map(replica_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({
        "replica_id": m.replica_id(),
        "partitions": owners,
        "replicas": m.replicas(),
    })))
}

/// `GET /v1/metadata/{store}/{key}`: which replica owns a store key, for routing.
async fn key_metadata(
    State(state): State<QueryState>,
    Path((store, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let m = metadata(&state)?;
    let partition = m
        .partition_of(&store, key.as_bytes())
        .ok_or_else(|| ApiError::bad_request(format!("store {store} has no key like {key:?}")))?;
    let owner = m.owner(partition).ok_or_else(|| {
        ApiError::unavailable(format!(
            "partition {partition} has no live owner right now (a rebalance is under way); retry shortly"
        ))
    })?;
    Ok(Json(json!({
        "store": store,
        "key": key,
        "partition": partition,
        "owner": replica_json(&owner),
        "standbys": m.standbys(partition).iter().map(replica_json).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves the API over empty stores (no topology: metadata is unavailable) on a free
    /// loopback port; returns its base URL.
    async fn serve_empty() -> String {
        let state = QueryState {
            stores: StoreRegistry::default(),
            runtime: None,
            metadata: None,
            metrics: crate::metrics::install(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener, state, std::future::pending()));
        url
    }

    /// The document's path with each `{param}` replaced by its example.
    fn example_url(base: &str, path: &str, op: &Value) -> String {
        let mut url = path.to_string();
        let mut query = Vec::new();
        for param in op["parameters"].as_array().into_iter().flatten() {
            let name = param["name"].as_str().unwrap();
            let example = match &param["example"] {
                Value::String(s) => s.clone(),
                Value::Null => panic!("{path}: parameter {name} has no example"),
                other => other.to_string(),
            };
            match param["in"].as_str().unwrap() {
                "path" => url = url.replace(&format!("{{{name}}}"), &example),
                "query" if param["required"] == true => query.push(format!("{name}={example}")),
                _ => {}
            }
        }
        let sep = if query.is_empty() { "" } else { "?" };
        format!("{base}{url}{sep}{}", query.join("&"))
    }

    /// Resolves a `$ref` to `#/components/schemas/X`.
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
            None => schema,
        }
    }

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_serves() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let mut documented: Vec<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        documented.sort();
        // The router's paths, in OpenAPI's spelling (`{*key}` is `{key}`).
        let source = include_str!("mod.rs");
        let mut routed: Vec<String> = source
            .lines()
            .filter_map(|l| l.trim().strip_prefix(".route(\""))
            .map(|l| l.split('"').next().unwrap().replace("{*", "{"))
            .collect();
        routed.sort();
        assert_eq!(documented, routed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_documented_operation_answers_as_documented() {
        let base = serve_empty().await;
        let doc: Value = reqwest::get(format!("{base}/v1/openapi.json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let client = reqwest::Client::new();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            let op = &item["get"];
            let url = example_url(&base, path, op);
            let response = client.get(&url).send().await.unwrap();
            let status = response.status().as_u16().to_string();
            let documented = &op["responses"][&status];
            assert!(
                documented.is_object(),
                "GET {url}: {status} is not a documented response of {path}"
            );
            let content = documented["content"].as_object().unwrap();
            let (media, body) = content.iter().next().unwrap();
            let got_type = response.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_string();
            assert!(
                got_type.starts_with(media.as_str()),
                "GET {url}: {got_type}, documented {media}"
            );
            if media == "application/json" {
                let value: Value = response.json().await.unwrap();
                let schema = resolve(&doc, &body["schema"]);
                for field in schema["required"].as_array().into_iter().flatten() {
                    let field = field.as_str().unwrap();
                    assert!(
                        value.get(field).is_some(),
                        "GET {url}: no {field} in {value}"
                    );
                }
            }
            checked += 1;
        }
        assert_eq!(checked, 12, "every path of the document was requested");

        // Errors are the documented JSON, whatever went wrong.
        for bad in [
            "/v1/files?limit=0",
            "/v1/files/not-a-digest",
            "/v1/views/no-such-view",
            "/v1/reports/reconciliation?client=acme-bank&period=October",
            "/v1/nothing-here",
            "/v1/files?nonsense=1",
            "/v1/files?limit=many",
            "/v1/reports/reconciliation",
        ] {
            let value: Value = reqwest::get(format!("{base}{bad}"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(
                value["error"]["code"].is_string() && value["error"]["message"].is_string(),
                "{bad}: {value}"
            );
        }
    }
}
