//! The HTTP query API over the topology's stores, `/healthz`, `/readyz` and `/metrics`.
//!
//! Errors are JSON: `{"error": {"code": "...", "message": "...", "retryable": bool}}`. List
//! endpoints page with an opaque `cursor`; a response carries `next_cursor` when there is
//! more. Any replica answers any key: reads go to the partition's owner (`cluster.rs`); a
//! rebalance is a retryable 503 with `Retry-After`, and `allow_stale=true` lets a standby
//! answer, its lag in `x-credstream-stale-lag-records`. Bearer tokens scope callers to
//! clients and every query is audited (`auth.rs`).
//!
//! Architecture Invariant: query only reads stores; it never writes one and never talks to
//! Kafka. Stores hold no card numbers in clear, so nothing here needs masking but the
//! audit log's copy of the request line.

mod auth;
mod cluster;

pub use auth::{Audit, Auth, Principal};

use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, middleware};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::credit::views::{self, VERSIONS_STORE, VIEWS, VersionChain, ViewReader};
use crate::credit::{FileLedgerEntry, LEDGER_STORE, QUARANTINE_STORE};
use crate::streams::{Entries, ReplicaInfo, RuntimeStatus, StoreRegistry, StreamsMetadata};
use cluster::{Answered, Cluster, Freshness, Read};

/// Default and largest page size.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Response headers: the replicas whose stores answered, and a standby's lag.
const SERVED_BY: &str = "x-credstream-served-by";
const STALE_LAG: &str = "x-credstream-stale-lag-records";

/// What the API reads, and who may.
#[derive(Clone)]
pub struct QueryState {
    cluster: Cluster,
    runtime: Option<RuntimeStatus>,
    metrics: PrometheusHandle,
    auth: Auth,
    audit: Option<Audit>,
}

impl QueryState {
    /// The API over `stores` alone (no topology in this process), open, not audited.
    pub fn new(stores: StoreRegistry, metrics: PrometheusHandle) -> QueryState {
        QueryState {
            cluster: Cluster {
                local: stores,
                standby: StoreRegistry::default(),
                runtime: None,
                metadata: None,
                http: cluster::peer_client(),
                peer_token: None,
            },
            runtime: None,
            metrics,
            auth: Auth::open(),
            audit: None,
        }
    }

    /// This process runs the topology: route reads by its replica table; `standby` holds
    /// its standby copies for stale reads.
    pub fn with_runtime(
        mut self,
        status: RuntimeStatus,
        metadata: StreamsMetadata,
        standby: StoreRegistry,
    ) -> QueryState {
        self.cluster.runtime = Some(status.clone());
        self.cluster.metadata = Some(metadata);
        self.cluster.standby = standby;
        self.runtime = Some(status);
        self
    }

    /// Requires bearer tokens (when `auth` has any).
    pub fn with_auth(mut self, auth: Auth) -> QueryState {
        self.cluster.peer_token = auth.peer_token();
        self.auth = auth;
        self
    }

    /// Appends every query to `audit`.
    pub fn with_audit(mut self, audit: Audit) -> QueryState {
        self.audit = Some(audit);
        self
    }

    fn metadata(&self) -> Option<&StreamsMetadata> {
        self.cluster.metadata.as_ref()
    }
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
        .route("/v1/quarantine", get(quarantine))
        .route("/v1/reports/reconciliation", get(reconciliation))
        .route("/v1/metadata", get(replicas))
        .route("/v1/metadata/{store}/{*key}", get(key_metadata))
        .merge(
            // Replica to replica: not part of the public API (see cluster.rs).
            Router::new().route(cluster::INTERNAL_READ, get(cluster::internal_read)),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint".into()) })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Paths answered without a token and not audited: probes and the scraper.
fn is_open(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Authenticates, scopes, times and audits every request.
async fn guard(State(state): State<QueryState>, mut request: Request, next: Next) -> Response {
    let began = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let path = request.uri().path().to_string();
    let open = is_open(&path);
    let target = auth::audited_target(request.uri());
    let method = request.method().to_string();
    let header_value = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let internal = path.starts_with("/internal/");
    let (who, denied, response) = if open {
        (String::new(), None, next.run(request).await)
    } else {
        match state.auth.authenticate(header_value.as_deref()) {
            Ok(p) if internal && state.auth.enabled() && !p.peer => {
                let e = ApiError::forbidden("only replicas read this endpoint".into());
                (p.name, Some(auth::Denied::NotPeer), e.into_response())
            }
            Ok(principal) => {
                let name = principal.name.clone();
                request.extensions_mut().insert(principal);
                (name, None, next.run(request).await)
            }
            Err(d) => {
                let e = ApiError::unauthorized(match d {
                    auth::Denied::Missing => "a bearer token is required".into(),
                    _ => "the bearer token is not known".into(),
                });
                ("unknown".into(), Some(d), e.into_response())
            }
        }
    };
    let seconds = began.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    crate::metrics::QueryServed {
        route: &route,
        status,
        seconds,
    }
    .emit();
    if let Some(d) = denied {
        crate::metrics::QueryDenied { reason: d.as_str() }.emit();
    }
    if !open && let Some(audit) = &state.audit {
        let served_by = response
            .headers()
            .get(SERVED_BY)
            .and_then(|h| h.to_str().ok());
        audit.record(&auth::AuditEntry {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            who: &who,
            method: &method,
            what: target,
            status,
            denied: denied.map(auth::Denied::as_str),
            duration_ms: seconds * 1000.0,
            served_by,
        });
    }
    response
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

#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The same request may succeed shortly (a rebalance, an owner restarting).
    retryable: bool,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            code,
            message,
            retryable: false,
        }
    }
    /// A 503 the caller should retry after a second.
    fn retryable(code: &'static str, message: String) -> Self {
        ApiError {
            retryable: true,
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }
    fn unauthorized(message: String) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    fn forbidden(message: String) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// The message prefixed with where it happened.
    fn context(mut self, at: &str) -> Self {
        self.message = format!("{at}: {}", self.message);
        self
    }
    fn not_found(message: String) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    fn bad_request(message: String) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    fn unavailable(message: String) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    fn internal(message: String) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(
                json!({"error": {"code": self.code, "message": self.message, "retryable": self.retryable}}),
            ),
        )
            .into_response();
        let headers = response.headers_mut();
        if self.retryable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"credstream\""),
            );
        }
        response
    }
}

/// A JSON answer and who answered it (as headers).
struct Answer {
    body: Value,
    answered: Answered,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = Json(self.body).into_response();
        let headers = response.headers_mut();
        if !self.answered.replicas.is_empty() {
            let names: Vec<&str> = self.answered.replicas.iter().map(String::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&names.join(",")) {
                headers.insert(SERVED_BY, v);
            }
        }
        if let Some(lag) = self.answered.stale_lag {
            headers.insert(STALE_LAG, HeaderValue::from(lag));
        }
        response
    }
}

/// `allow_stale=true`: a standby may answer when the owner cannot.
fn freshness(allow_stale: Option<bool>) -> Freshness {
    if allow_stale == Some(true) {
        Freshness::AllowStale
    } else {
        Freshness::Owner
    }
}

/// The client a store key belongs to: its first path component.
fn key_client(key: &[u8]) -> &[u8] {
    key.split(|b| *b == b'/').next().unwrap_or_default()
}

/// Refuses a principal that may not read `client`.
fn check_client(principal: &Principal, client: &str) -> Result<(), ApiError> {
    if principal.may_read(client) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{} may not read client {client:?}",
            principal.name
        )))
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
    /// The logical file's period as its name states it: `2026-10`, or a day `2026-10-05`;
    /// a month also matches its days.
    period: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    allow_stale: Option<bool>,
}

/// A page size within bounds.
fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    Ok(limit)
}

/// The key a cursor resumes at.
fn cursor_start(cursor: &Option<String>) -> Result<Option<Vec<u8>>, ApiError> {
    cursor
        .as_deref()
        .map(hex::decode)
        .transpose()
        .map_err(|_| ApiError::bad_request("cursor is not valid".into()))
}

/// A filtered page of `store` under `prefix`: scans in chunks (every partition, wherever
/// it lives) until `limit` entries matched, plus one to know there is more.
async fn filtered_page(
    state: &QueryState,
    store: &str,
    prefix: &[u8],
    cursor: &Option<String>,
    limit: usize,
    freshness: Freshness,
    mut keep: impl FnMut(&[u8], &[u8]) -> Result<bool, ApiError>,
) -> Result<(Entries, Option<String>, Answered), ApiError> {
    let mut start = cursor_start(cursor)?;
    let mut page = Vec::with_capacity(limit);
    let mut answered = Answered::default();
    loop {
        let read = Read::Scan {
            store,
            prefix,
            start: start.as_deref(),
            limit: limit + 1,
        };
        let (chunk, who) = state.cluster.read(&read, freshness).await?;
        answered.merge(who);
        let exhausted = chunk.len() <= limit;
        for (key, value) in &chunk {
            if !keep(key, value)? {
                continue;
            }
            if page.len() == limit {
                return Ok((page, Some(hex::encode(key)), answered));
            }
            page.push((key.clone(), value.clone()));
        }
        match chunk.last() {
            Some((last, _)) if !exhausted => {
                let mut after = last.clone();
                after.push(0);
                start = Some(after);
            }
            _ => return Ok((page, None, answered)),
        }
    }
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
    Extension(principal): Extension<Principal>,
    Query(filter): Query<FileFilter>,
) -> Result<Answer, ApiError> {
    let limit = page_limit(filter.limit)?;
    if let Some(client) = &filter.client {
        check_client(&principal, client)?;
    }
    let matches = |e: &FileLedgerEntry| {
        principal.may_read(&e.client_id)
            && filter.client.as_ref().is_none_or(|c| *c == e.client_id)
            && filter
                .status
                .as_ref()
                .is_none_or(|s| s.eq_ignore_ascii_case(e.status.as_str()))
            && filter
                .category
                .as_ref()
                .is_none_or(|c| Some(c) == e.category.as_ref())
            && filter.period.as_ref().is_none_or(|p| {
                e.period
                    .as_deref()
                    .is_some_and(|own| own == p || own.starts_with(&format!("{p}-")))
            })
    };
    let (page, next_cursor, answered) = filtered_page(
        &state,
        LEDGER_STORE,
        b"",
        &filter.cursor,
        limit,
        freshness(filter.allow_stale),
        |k, v| Ok(matches(&decode_entry(k, v)?)),
    )
    .await?;
    let files = page
        .iter()
        .map(|(k, v)| decode_entry(k, v).map(|e| entry_json(&e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Answer {
        body: json!({"files": files, "next_cursor": next_cursor}),
        answered,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaleParam {
    allow_stale: Option<bool>,
}

/// `GET /v1/files/{sha256}`: every arrival of one file's bytes.
async fn file(
    State(state): State<QueryState>,
    Extension(principal): Extension<Principal>,
    Path(sha256): Path<String>,
    Query(params): Query<StaleParam>,
) -> Result<Answer, ApiError> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "a file is named by the lower-case hex SHA-256 of its bytes".into(),
        ));
    }
    let fresh = freshness(params.allow_stale);
    let sha256 = sha256.to_ascii_lowercase();
    let prefix = format!("{sha256}/");
    let read = Read::Scan {
        store: LEDGER_STORE,
        prefix: prefix.as_bytes(),
        start: None,
        limit: MAX_LIMIT,
    };
    let (entries, mut answered) = state.cluster.read(&read, fresh).await?;
    let decoded = entries
        .iter()
        .map(|(k, v)| decode_entry(k, v))
        .filter(|e| e.as_ref().is_ok_and(|e| principal.may_read(&e.client_id)) || e.is_err())
        .collect::<Result<Vec<_>, _>>()?;
    if decoded.is_empty() {
        return Err(ApiError::not_found(format!(
            "no file with SHA-256 {sha256}"
        )));
    }
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
            let read = Read::Get {
                store: VERSIONS_STORE,
                key: key.as_bytes(),
            };
            let (found, who) = state.cluster.read(&read, fresh).await?;
            answered.merge(who);
            match found.first() {
                Some((_, raw)) => {
                    let chain: VersionChain = serde_json::from_slice(raw).map_err(|e| {
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
    Ok(Answer {
        body: json!({"sha256": sha256, "arrivals": arrivals, "logical_file": versions}),
        answered,
    })
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

/// Every entry `read_chunk` gives, chunk after chunk, each starting after the last key of
/// the one before.
fn scan_chunked(
    mut read_chunk: impl FnMut(Option<&[u8]>, usize) -> Result<Entries, String>,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    const CHUNK: usize = 10_000;
    let mut out = Vec::new();
    let mut start: Option<Vec<u8>> = None;
    loop {
        let chunk = read_chunk(start.as_deref(), CHUNK)?;
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

impl ViewReader for crate::streams::StoreRegistry {
    fn scan_all(&self, store: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        scan_chunked(|start, limit| {
            self.scan(store, prefix.as_bytes(), start, limit)
                .map_err(|e| e.to_string())
        })
    }
}

/// The views as the reconciliation report reads them: through the cluster, from a
/// blocking thread.
struct ClusterViews {
    cluster: Cluster,
    freshness: Freshness,
    runtime: tokio::runtime::Handle,
    answered: std::sync::Mutex<Answered>,
}

impl ViewReader for ClusterViews {
    fn scan_all(&self, store: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        scan_chunked(|start, limit| {
            let read = Read::Scan {
                store,
                prefix: prefix.as_bytes(),
                start,
                limit,
            };
            let (chunk, who) = self
                .runtime
                .block_on(self.cluster.read(&read, self.freshness))
                .map_err(|e| e.message)?;
            let mut answered = self.answered.lock().expect("answered lock");
            answered.merge(who);
            Ok(chunk)
        })
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
    allow_stale: Option<bool>,
}

/// `GET /v1/views/{view}?prefix=&limit=&cursor=`: entries in key order, with a cursor.
async fn scan_view(
    State(state): State<QueryState>,
    Extension(principal): Extension<Principal>,
    Path(view): Path<String>,
    Query(params): Query<ScanParams>,
) -> Result<Answer, ApiError> {
    let store = view_store(&view)?;
    let limit = page_limit(params.limit)?;
    let prefix = params.prefix.unwrap_or_default();
    if prefix.contains('/') {
        check_client(
            &principal,
            &String::from_utf8_lossy(key_client(prefix.as_bytes())),
        )?;
    }
    let (page, next_cursor, answered) = filtered_page(
        &state,
        store,
        prefix.as_bytes(),
        &params.cursor,
        limit,
        freshness(params.allow_stale),
        |k, _| Ok(principal.may_read(&String::from_utf8_lossy(key_client(k)))),
    )
    .await?;
    let entries = page
        .iter()
        .map(|(k, v)| view_value(&view, k, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Answer {
        body: json!({"view": view, "entries": entries, "next_cursor": next_cursor}),
        answered,
    })
}

/// `GET /v1/views/{view}/{key}`: one entry, from the replica that owns it.
async fn view_key(
    State(state): State<QueryState>,
    Extension(principal): Extension<Principal>,
    Path((view, key)): Path<(String, String)>,
    Query(params): Query<StaleParam>,
) -> Result<Answer, ApiError> {
    let store = view_store(&view)?;
    check_client(
        &principal,
        &String::from_utf8_lossy(key_client(key.as_bytes())),
    )?;
    let read = Read::Get {
        store,
        key: key.as_bytes(),
    };
    let (found, answered) = state
        .cluster
        .read(&read, freshness(params.allow_stale))
        .await?;
    match found.first() {
        Some((k, raw)) => Ok(Answer {
            body: view_value(&view, k, raw)?,
            answered,
        }),
        None => Err(ApiError::not_found(format!("no {view} entry {key:?}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuarantineFilter {
    client: Option<String>,
    /// A file's SHA-256 (needs `client`).
    file: Option<String>,
    class: Option<String>,
    category: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    allow_stale: Option<bool>,
}

/// `GET /v1/quarantine`: what was held and why, newest processing last, filtered by
/// client, file, drift class and category.
async fn quarantine(
    State(state): State<QueryState>,
    Extension(principal): Extension<Principal>,
    Query(filter): Query<QuarantineFilter>,
) -> Result<Answer, ApiError> {
    let limit = page_limit(filter.limit)?;
    let prefix = match (&filter.client, &filter.file) {
        (Some(client), Some(file)) => format!("{client}/{}/", file.to_ascii_lowercase()),
        (Some(client), None) => format!("{client}/"),
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "file needs client: quarantine entries are kept by client".into(),
            ));
        }
        (None, None) => String::new(),
    };
    if let Some(client) = &filter.client {
        check_client(&principal, client)?;
    }
    let keep = |k: &[u8], v: &[u8]| -> Result<bool, ApiError> {
        if !principal.may_read(&String::from_utf8_lossy(key_client(k))) {
            return Ok(false);
        }
        if filter.class.is_none() && filter.category.is_none() {
            return Ok(true);
        }
        let record: crate::credit::QuarantineRecord = serde_json::from_slice(v).map_err(|e| {
            ApiError::internal(format!(
                "quarantine entry {} is unreadable: {e}",
                String::from_utf8_lossy(k)
            ))
        })?;
        Ok(filter.class.as_ref().is_none_or(|c| *c == record.class)
            && filter
                .category
                .as_ref()
                .is_none_or(|c| Some(c) == record.category.as_ref()))
    };
    let (page, next_cursor, answered) = filtered_page(
        &state,
        QUARANTINE_STORE,
        prefix.as_bytes(),
        &filter.cursor,
        limit,
        freshness(filter.allow_stale),
        keep,
    )
    .await?;
    let entries = page
        .iter()
        .map(|(k, v)| {
            let value: Value = serde_json::from_slice(v).map_err(|e| {
                ApiError::internal(format!(
                    "quarantine entry {} is unreadable: {e}",
                    String::from_utf8_lossy(k)
                ))
            })?;
            Ok(json!({"key": String::from_utf8_lossy(k), "value": value}))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Answer {
        body: json!({"entries": entries, "next_cursor": next_cursor}),
        answered,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportParams {
    client: String,
    period: String,
    limit: Option<usize>,
    allow_stale: Option<bool>,
}

/// `GET /v1/reports/reconciliation?client=&period=YYYY-MM`: trailer vs parsed for every
/// file of the month, and the account roll-forward with every exception.
async fn reconciliation(
    State(state): State<QueryState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<ReportParams>,
) -> Result<Answer, ApiError> {
    check_client(&principal, &params.client)?;
    let limit = params.limit.unwrap_or(10_000);
    let reader = ClusterViews {
        cluster: state.cluster.clone(),
        freshness: freshness(params.allow_stale),
        runtime: tokio::runtime::Handle::current(),
        answered: Default::default(),
    };
    let (report, reader) = tokio::task::spawn_blocking(move || {
        let report = views::reconciliation(&reader, &params.client, &params.period, limit);
        (report, reader)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let answered = reader.answered.into_inner().expect("answered lock");
    match report {
        Ok(body) => Ok(Answer { body, answered }),
        Err(m) if m.contains("is not YYYY-MM") => Err(ApiError::bad_request(m)),
        Err(m) if m.contains("rebalance") || m.contains("could not read") => {
            Err(ApiError::retryable("rebalancing", m))
        }
        Err(m) => Err(ApiError::internal(m)),
    }
}

fn metadata(state: &QueryState) -> Result<&StreamsMetadata, ApiError> {
    state.metadata().ok_or_else(|| {
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
        let state = QueryState::new(StoreRegistry::default(), crate::metrics::install());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener, state, std::future::pending()));
        url
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_scope_callers_to_clients_and_every_query_is_audited() {
        use sha2::Digest as _;
        let dir = tempfile::tempdir().unwrap();
        let peer = dir.path().join("peer");
        std::fs::write(&peer, "p".repeat(32)).unwrap();
        let token = |name: &str, secret: &str, clients: &[&str]| crate::config::TokenConfig {
            name: name.into(),
            sha256: hex::encode(sha2::Sha256::digest(secret.as_bytes())),
            clients: clients.iter().map(|c| c.to_string()).collect(),
        };
        let auth = Auth::from_config(&crate::config::QueryAuthConfig {
            tokens: vec![
                token("acme", "acme-secret", &["acme-bank"]),
                token("ops", "ops-secret", &["*"]),
            ],
            peer_token_file: Some(peer),
        })
        .unwrap();
        let audit = Audit::open(&dir.path().join("audit.jsonl")).unwrap();
        let state = QueryState::new(StoreRegistry::default(), crate::metrics::install())
            .with_auth(auth)
            .with_audit(audit.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener, state, std::future::pending()));
        let client = reqwest::Client::new();
        let get = async |path: &str, token: Option<&str>| {
            let mut request = client.get(format!("{base}{path}"));
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenge = response.headers().contains_key(header::WWW_AUTHENTICATE);
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body, challenge)
        };
        let (status, body, challenge) = get("/v1/files", None).await;
        assert_eq!((status, challenge), (401, true), "{body}");
        assert_eq!(body["error"]["code"], "unauthorized");
        assert_eq!(get("/v1/files", Some("guess")).await.0, 401);
        assert_eq!(get("/healthz", None).await.0, 200, "probes need no token");
        assert_eq!(
            get("/v1/files?client=acme-bank", Some("acme-secret"))
                .await
                .0,
            200
        );
        let (status, body, _) = get("/v1/files?client=other-bank", Some("acme-secret")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
        let report = "/v1/reports/reconciliation?client=other-bank&period=2026-10";
        assert_eq!(get(report, Some("acme-secret")).await.0, 403);
        assert_eq!(get(report, Some("ops-secret")).await.0, 200);
        assert_eq!(
            get("/v1/views/accounts/other-bank/1", Some("acme-secret"))
                .await
                .0,
            403
        );
        assert_eq!(
            get(
                "/internal/v1/read?store=ledger&partitions=0&prefix=",
                Some("ops-secret")
            )
            .await
            .0,
            403,
            "only replicas read the internal endpoint"
        );
        assert_eq!(
            get(
                "/v1/views/accounts/acme-bank/4111111111111111",
                Some("acme-secret")
            )
            .await
            .0,
            404
        );

        let lines: Vec<Value> = std::fs::read_to_string(audit.path())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // Every request but the probe, in order, with who asked and what became of it.
        assert_eq!(lines.len(), 9, "{lines:#?}");
        assert_eq!(lines[0]["who"], "unknown");
        assert_eq!(lines[0]["denied"], "missing_token");
        assert_eq!(lines[2]["who"], "acme");
        assert_eq!(lines[2]["what"], "/v1/files?client=acme-bank");
        assert_eq!(lines[3]["status"], 403);
        assert_eq!(lines[7]["denied"], "not_peer");
        let last = lines[8]["what"].as_str().unwrap();
        assert!(
            !last.contains("4111111111111111") && last.contains("411111"),
            "a card number in a URL is masked in the audit log: {last}"
        );
        assert!(
            lines
                .iter()
                .all(|l| l["at"].as_str().is_some_and(|t| t.ends_with('Z')))
        );
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
        assert_eq!(checked, 13, "every path of the document was requested");

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
