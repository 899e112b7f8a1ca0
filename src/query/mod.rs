//! The HTTP query API over the topology's stores, `/healthz`, `/readyz` and `/metrics`.
//!
//! Errors are JSON: `{"error": {"code": "...", "message": "..."}}`. List endpoints page with
//! an opaque `cursor`; a response carries `next_cursor` when there is more.
//!
//! Architecture Invariant: query only reads stores; it never writes one and never talks to
//! Kafka. Ledger entries hold no card numbers, so nothing here needs masking yet.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{Value, json};

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
        .route("/v1/files", get(list_files))
        .route("/v1/files/{sha256}", get(file))
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

impl From<crate::streams::StreamsError> for ApiError {
    fn from(e: crate::streams::StreamsError) -> Self {
        ApiError::internal(e.to_string())
    }
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
    let arrivals = entries
        .iter()
        .map(|(k, v)| decode_entry(k, v).map(|e| entry_json(&e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({"sha256": sha256, "arrivals": arrivals})))
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
