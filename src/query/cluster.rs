//! Interactive queries across replicas: every store key lives in one partition, and every
//! partition in the stores of the one replica that owns it (the replica table says which,
//! see `streams::membership`). A read is answered from this replica's stores when it owns
//! the partition, and otherwise sent to the owner's internal endpoint. A partition without
//! a live owner — a rebalance under way — is a retryable `503 rebalancing`, never an empty
//! or old answer, unless the caller allows stale reads: then a standby copy answers and the
//! response says how far behind it was.
//!
//! The internal endpoint (`GET /internal/v1/read`) answers only from the partitions this
//! replica holds as their current owner (or as a standby, when asked for one) and never
//! forwards, so a request cannot loop between replicas that disagree for a moment.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::{ApiError, Json, Query, QueryState};
use crate::streams::{Entries, RuntimeStatus, StoreRegistry, StreamsMetadata, TaskDb};

/// The path replicas read each other's stores at.
pub(crate) const INTERNAL_READ: &str = "/internal/v1/read";

/// Whether a standby copy may answer when the owner cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Only the partition's owner answers.
    Owner,
    /// A standby may answer when there is no live owner or it cannot be reached.
    AllowStale,
}

/// Who answered a read: the replicas involved, and the largest lag of a standby that
/// answered, if one did.
#[derive(Clone, Debug, Default)]
pub(crate) struct Answered {
    pub replicas: BTreeSet<String>,
    pub stale_lag: Option<i64>,
}

impl Answered {
    pub fn merge(&mut self, other: Answered) {
        self.replicas.extend(other.replicas);
        self.stale_lag = match (self.stale_lag, other.stale_lag) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// One read of a store: a key, or a range of keys under a prefix.
#[derive(Clone, Debug)]
pub(crate) enum Read<'a> {
    Get {
        store: &'a str,
        key: &'a [u8],
    },
    Scan {
        store: &'a str,
        prefix: &'a [u8],
        start: Option<&'a [u8]>,
        limit: usize,
    },
}

impl Read<'_> {
    fn store(&self) -> &str {
        match self {
            Read::Get { store, .. } | Read::Scan { store, .. } => store,
        }
    }

    fn limit(&self) -> usize {
        match self {
            Read::Get { .. } => 1,
            Read::Scan { limit, .. } => *limit,
        }
    }

    /// The read on one task database.
    fn on(&self, db: &TaskDb) -> Result<Entries, ApiError> {
        Ok(match self {
            Read::Get { store, key } => db
                .get(store, key)?
                .map(|v| vec![(key.to_vec(), v)])
                .unwrap_or_default(),
            Read::Scan {
                store,
                prefix,
                start,
                limit,
            } => db.scan(store, prefix, *start, *limit)?,
        })
    }
}

/// Where one partition's read goes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Local {
        standby: bool,
    },
    Remote {
        replica: String,
        endpoint: String,
        standby: bool,
    },
}

/// The reader the query API answers from.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub local: StoreRegistry,
    pub standby: StoreRegistry,
    pub runtime: Option<RuntimeStatus>,
    pub metadata: Option<StreamsMetadata>,
    pub http: reqwest::Client,
    /// Presented to other replicas' internal endpoint.
    pub peer_token: Option<Arc<str>>,
}

/// The client replicas call each other with: short timeouts, so a dead owner is a quick
/// retryable error rather than a hung request.
pub(crate) fn peer_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client without TLS settings builds")
}

fn rebalancing(partition: i32) -> ApiError {
    ApiError::retryable(
        "rebalancing",
        format!(
            "partition {partition} has no live owner right now (a rebalance is under way); \
             retry shortly, or allow a stale read with allow_stale=true"
        ),
    )
}

impl Cluster {
    /// Reads `read` wherever its partitions live. A `Get` reads the key's partition; a
    /// `Scan` reads the partition its prefix pins (`<client>/…`) or every partition,
    /// merged in key order and cut at its limit.
    pub async fn read(
        &self,
        read: &Read<'_>,
        freshness: Freshness,
    ) -> Result<(Entries, Answered), ApiError> {
        let Some(m) = &self.metadata else {
            // No topology in this process: its stores (if any) are all there is.
            let mut entries = Vec::new();
            for p in self.local.partitions() {
                if let Some(db) = self.local.task(p) {
                    entries.extend(read.on(&db)?);
                }
            }
            return Ok((sorted(entries, read.limit()), Answered::default()));
        };
        let partitions: Vec<i32> = match read {
            Read::Get { store, key } => vec![m.partition_of(store, key).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{store} has no key like {:?}",
                    String::from_utf8_lossy(key)
                ))
            })?],
            Read::Scan { store, prefix, .. } => match m.partition_of(store, prefix) {
                Some(p) => vec![p],
                None => (0..m.partitions()).collect(),
            },
        };
        self.read_partitions(m, &partitions, read, freshness).await
    }

    /// Reads `read` on each of `partitions`, from its owner (or a standby).
    pub async fn read_partitions(
        &self,
        m: &StreamsMetadata,
        partitions: &[i32],
        read: &Read<'_>,
        freshness: Freshness,
    ) -> Result<(Entries, Answered), ApiError> {
        let mut plan: BTreeMap<Target, Vec<i32>> = BTreeMap::new();
        for &p in partitions {
            let target = match self.owner_target(m, p) {
                Ok(t) => t,
                Err(e) if freshness == Freshness::AllowStale && e.retryable => {
                    self.standby_target(m, p).ok_or(e)?
                }
                Err(e) => return Err(e),
            };
            plan.entry(target).or_default().push(p);
        }
        let reads = plan.into_iter().map(|(target, parts)| async move {
            let got = self.read_at(&target, &parts, read).await;
            match got {
                Err(e) if freshness == Freshness::AllowStale && e.retryable => {
                    // The owner could not answer: each partition from a standby instead.
                    let mut entries = Vec::new();
                    let mut answered = Answered::default();
                    for p in parts {
                        let standby = self.standby_target(m, p).ok_or_else(|| e.clone())?;
                        let (got, who) = self.read_at(&standby, &[p], read).await?;
                        entries.extend(got);
                        answered.merge(who);
                    }
                    Ok((entries, answered))
                }
                other => other,
            }
        });
        let mut entries = Vec::new();
        let mut answered = Answered::default();
        for result in futures::future::join_all(reads).await {
            let (got, who) = result?;
            entries.extend(got);
            answered.merge(who);
        }
        Ok((sorted(entries, read.limit()), answered))
    }

    /// The owner of `p`: this replica when the replica table and its open stores agree;
    /// otherwise the owner's endpoint.
    fn owner_target(&self, m: &StreamsMetadata, p: i32) -> Result<Target, ApiError> {
        let owner = m.owner(p).ok_or_else(|| rebalancing(p))?;
        if owner.replica_id == m.replica_id() {
            return match self.local.task(p) {
                Some(_) => Ok(Target::Local { standby: false }),
                // The table still names this replica, which has let the task go.
                None => Err(rebalancing(p)),
            };
        }
        let endpoint = owner.endpoint.ok_or_else(|| {
            ApiError::unavailable(format!(
                "replica {} owns partition {p} but serves no query API",
                owner.replica_id
            ))
        })?;
        Ok(Target::Remote {
            replica: owner.replica_id,
            endpoint,
            standby: false,
        })
    }

    /// A standby of `p`: this replica's own if it keeps one, else another's.
    fn standby_target(&self, m: &StreamsMetadata, p: i32) -> Option<Target> {
        if self.standby.task(p).is_some() {
            return Some(Target::Local { standby: true });
        }
        m.standbys(p)
            .into_iter()
            .filter(|r| r.replica_id != m.replica_id())
            .find_map(|r| {
                Some(Target::Remote {
                    replica: r.replica_id,
                    endpoint: r.endpoint?,
                    standby: true,
                })
            })
    }

    async fn read_at(
        &self,
        target: &Target,
        partitions: &[i32],
        read: &Read<'_>,
    ) -> Result<(Entries, Answered), ApiError> {
        match target {
            Target::Local { standby } => self.read_local(partitions, read, *standby),
            Target::Remote {
                replica,
                endpoint,
                standby,
            } => {
                let got = self
                    .read_remote(endpoint, partitions, read, *standby)
                    .await
                    .map_err(|e| e.context(&format!("replica {replica} at {endpoint}")));
                crate::metrics::QueryForwarded {
                    outcome: match &got {
                        Ok(_) => "ok",
                        Err(e) if e.retryable => "unavailable",
                        Err(_) => "error",
                    },
                }
                .emit();
                got
            }
        }
    }

    /// Reads `partitions` here, as their owner or standby; refuses (retryably) any this
    /// replica does not hold in that role now.
    pub fn read_local(
        &self,
        partitions: &[i32],
        read: &Read<'_>,
        standby: bool,
    ) -> Result<(Entries, Answered), ApiError> {
        let me = self
            .metadata
            .as_ref()
            .map(|m| m.replica_id().to_string())
            .unwrap_or_default();
        let mut entries = Vec::new();
        let mut answered = Answered::default();
        answered.replicas.insert(me.clone());
        for &p in partitions {
            let db = if standby {
                let db = self.standby.task(p).ok_or_else(|| {
                    ApiError::retryable(
                        "not_standby",
                        format!("replica {me} keeps no standby of partition {p} now"),
                    )
                })?;
                let lag = self
                    .runtime
                    .as_ref()
                    .and_then(|r| r.standby_lag(p))
                    .unwrap_or(0);
                answered.stale_lag = Some(answered.stale_lag.unwrap_or(0).max(lag));
                db
            } else {
                let owns = self
                    .metadata
                    .as_ref()
                    .and_then(|m| m.owner(p))
                    .is_some_and(|o| o.replica_id == me);
                match self.local.task(p) {
                    Some(db) if owns => db,
                    _ => {
                        return Err(ApiError::retryable(
                            "not_owner",
                            format!(
                                "replica {me} does not own partition {p} now (a rebalance is under way); retry shortly"
                            ),
                        ));
                    }
                }
            };
            entries.extend(read.on(&db)?);
        }
        Ok((entries, answered))
    }

    async fn read_remote(
        &self,
        endpoint: &str,
        partitions: &[i32],
        read: &Read<'_>,
        standby: bool,
    ) -> Result<(Entries, Answered), ApiError> {
        let mut params = InternalRead {
            store: read.store().to_string(),
            partitions: partitions
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            key: None,
            prefix: None,
            start: None,
            limit: None,
            standby,
        };
        match read {
            Read::Get { key, .. } => params.key = Some(hex::encode(key)),
            Read::Scan {
                prefix,
                start,
                limit,
                ..
            } => {
                params.prefix = Some(hex::encode(prefix));
                params.start = start.map(hex::encode);
                params.limit = Some(*limit);
            }
        }
        let mut request = self
            .http
            .get(format!("http://{endpoint}{INTERNAL_READ}"))
            .query(&params);
        if let Some(token) = &self.peer_token {
            request = request.bearer_auth(token);
        }
        let unreachable = |e: reqwest::Error| {
            // reqwest's message alone says only "error sending request".
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why.push_str(&format!(": {s}"));
                source = s.source();
            }
            ApiError::retryable("owner_unreachable", format!("could not read: {why}"))
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(unreachable)?;
        if !status.is_success() {
            let code = body["error"]["code"].as_str().unwrap_or("internal");
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            return Err(if status == StatusCode::SERVICE_UNAVAILABLE {
                ApiError::retryable(
                    if code == "not_owner" {
                        "rebalancing"
                    } else {
                        "owner_unreachable"
                    },
                    message.to_string(),
                )
            } else {
                ApiError::internal(format!("{status} {code}: {message}"))
            });
        }
        let answer: InternalAnswer = serde_json::from_value(body)
            .map_err(|e| ApiError::internal(format!("unreadable answer: {e}")))?;
        let mut entries = Vec::with_capacity(answer.entries.len());
        for (k, v) in answer.entries {
            let key = hex::decode(&k)
                .map_err(|_| ApiError::internal("a key in the answer is not hex".into()))?;
            let value = BASE64
                .decode(&v)
                .map_err(|_| ApiError::internal("a value in the answer is not base64".into()))?;
            entries.push((key, value));
        }
        let mut answered = Answered::default();
        answered.replicas.insert(answer.replica_id);
        answered.stale_lag = answer.lag_records;
        Ok((entries, answered))
    }
}

/// Entries in key order, at most `limit`.
fn sorted(mut entries: Entries, limit: usize) -> Entries {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.truncate(limit);
    entries
}

/// The internal read's query string.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InternalRead {
    store: String,
    /// Comma-separated partitions.
    partitions: String,
    /// Hex: a `Get` of this key.
    key: Option<String>,
    /// Hex: a `Scan` of this prefix, from `start`, at most `limit`.
    prefix: Option<String>,
    start: Option<String>,
    limit: Option<usize>,
    #[serde(default)]
    standby: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct InternalAnswer {
    replica_id: String,
    /// `[hex key, base64 value]` in key order.
    entries: Vec<(String, String)>,
    lag_records: Option<i64>,
}

/// `GET /internal/v1/read`: another replica reads partitions this one holds.
pub(crate) async fn internal_read(
    State(state): State<QueryState>,
    Query(params): Query<InternalRead>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let bad = |m: &str| ApiError::bad_request(m.to_string());
    let partitions = params
        .partitions
        .split(',')
        .map(|p| p.trim().parse::<i32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad("partitions must be comma-separated numbers"))?;
    let decode = |h: &Option<String>| -> Result<Option<Vec<u8>>, ApiError> {
        h.as_deref()
            .map(hex::decode)
            .transpose()
            .map_err(|_| bad("key, prefix and start are hex"))
    };
    let (key, prefix, start) = (
        decode(&params.key)?,
        decode(&params.prefix)?,
        decode(&params.start)?,
    );
    if key.is_some() == prefix.is_some() {
        return Err(bad("give either key or prefix"));
    }
    let limit = params.limit.unwrap_or(super::DEFAULT_LIMIT).min(10_000);
    if !crate::credit::STORES.contains(&params.store.as_str()) {
        return Err(ApiError::not_found(format!("no store {:?}", params.store)));
    }
    let cluster = state.cluster.clone();
    let (entries, answered) = tokio::task::spawn_blocking(move || {
        let read = match &key {
            Some(key) => Read::Get {
                store: &params.store,
                key,
            },
            None => Read::Scan {
                store: &params.store,
                prefix: prefix.as_deref().unwrap_or_default(),
                start: start.as_deref(),
                limit,
            },
        };
        cluster.read_local(&partitions, &read, params.standby)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(
        serde_json::to_value(InternalAnswer {
            replica_id: answered.replicas.into_iter().next().unwrap_or_default(),
            entries: entries
                .into_iter()
                .map(|(k, v)| (hex::encode(k), BASE64.encode(v)))
                .collect(),
            lag_records: answered.stale_lag,
        })
        .expect("answers serialise"),
    ))
}
