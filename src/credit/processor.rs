//! The file processor: one instance per task, all sharing the registered contracts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use apache_avro::Schema;

use super::CreditError;
use super::records::{
    DedupEntry, FileArrived, FileLedgerEntry, FileStatus, QuarantineRecord, QuarantineScope,
};
use super::views::{
    ACCOUNTS_STORE, AccountContribution, AccountState, AccountStateRef, BALANCES_STORE, Balance,
    BalanceRef, Contributions, POSTINGS_STORE, PeriodOf, PostingSum, VERSIONS_STORE, Version,
    VersionChain, identity_key, totals_map,
};
use crate::config::{Config, DeliveryConfig, KafkaConfig, TopologyConfig};
use crate::formats::{
    BadRecordPolicy, Catalog, Category, DriftClass, FieldValue, FileDrift, Identity, ParseSummary,
    ParsedRecord, Position, RecordIssue, parse,
};
use crate::rawstore::{MappedRaw, RawStore, RawStoreError};
use crate::schema::contracts::{self, Contracts};
use crate::schema::{Codec, FileProvenance, Registry, RowPlan, RowRef, value_subject};
use crate::streams::{
    InputRecord, Processor, ProcessorContext, Punctuation, PunctuationType, TopicSpec, Topology,
    TopologyShape, changelog_topic, partition_for_key, replicas_topic,
};
use crate::tokenise::Tokeniser;

/// Store of first arrivals by content: `<client id>/<sha256>` → [`DedupEntry`].
pub const DEDUP_STORE: &str = "dedup";
/// Store of the file ledger: `<sha256>/<arrival id>` → [`FileLedgerEntry`] (JSON).
pub const LEDGER_STORE: &str = "ledger";

/// Store of quarantine entries for `/v1/quarantine`: `<client>/<sha256>/<record index,
/// 12 digits>` (or `/file` for a whole file) → [`QuarantineRecord`] (JSON). At most
/// [`QUARANTINE_VIEW_PER_FILE`] record entries per file; the quarantine topic has them all
/// and the ledger counts them all.
pub const QUARANTINE_STORE: &str = "quarantine";
/// Record-scope quarantine entries kept in the store per file.
pub const QUARANTINE_VIEW_PER_FILE: usize = 10_000;

/// Every store of the topology.
pub const STORES: [&str; 7] = [
    DEDUP_STORE,
    LEDGER_STORE,
    VERSIONS_STORE,
    ACCOUNTS_STORE,
    BALANCES_STORE,
    POSTINGS_STORE,
    QUARANTINE_STORE,
];

/// Header of a retraction (a tombstone on an output topic): the SHA-256 of the version
/// that superseded the record's file.
pub const RETRACTED_BY_HEADER: &str = "credstream.retracted-by";

/// Topic names, without the prefix.
const ARRIVALS: &str = "file-arrivals";
const QUARANTINE: &str = "quarantine";
const LEDGER: &str = "file-ledger";

/// A category with its output topic, registered codec and checked row plan.
struct CategoryOutput {
    category: Category,
    topic: String,
    codec: Arc<Codec>,
    plan: RowPlan,
}

struct Shared {
    registry: Arc<Registry>,
    raw: Arc<dyn RawStore>,
    catalog: Catalog,
    arrivals_topic: String,
    arrival_codec: Arc<Codec>,
    quarantine_topic: String,
    quarantine_codec: Arc<Codec>,
    ledger_topic: String,
    ledger_codec: Arc<Codec>,
    outputs: Vec<CategoryOutput>,
    kafka: KafkaConfig,
    tokeniser: Tokeniser,
}

/// The credit topology with its contracts registered and its layouts checked.
#[derive(Clone)]
pub struct CreditTopology {
    shared: Arc<Shared>,
    deliveries: Arc<Vec<DeliveryConfig>>,
    view_chunk: usize,
}

impl CreditTopology {
    /// Registers every contract (or finds it registered) and checks each category's layout
    /// against its output schema as the registry returns it.
    pub async fn register(
        kafka: &KafkaConfig,
        registry: Arc<Registry>,
        raw: Arc<dyn RawStore>,
        catalog: Catalog,
        contracts: &Contracts,
        tokeniser: Tokeniser,
    ) -> Result<CreditTopology, crate::Error> {
        let codec = async |topic: &str, contract: &str| -> Result<Arc<Codec>, crate::Error> {
            let text = contracts.get(contract)?;
            Ok(Arc::new(registry.codec(&value_subject(topic), text).await?))
        };
        let arrivals_topic = arrivals_topic(kafka);
        let quarantine_topic = kafka.topic(QUARANTINE);
        let ledger_topic = kafka.topic(LEDGER);
        let arrival_codec = codec(&arrivals_topic, contracts::FILE_ARRIVED).await?;
        let quarantine_codec = codec(&quarantine_topic, contracts::QUARANTINE_RECORD).await?;
        let ledger_codec = codec(&ledger_topic, contracts::FILE_LEDGER_ENTRY).await?;
        let mut outputs = Vec::new();
        for category in catalog.categories() {
            let topic = kafka.topic(&category.output_topic);
            let codec = codec(&topic, &category.schema).await?;
            let plan = RowPlan::new(category, codec.schema())?;
            tracing::info!(category = %category.name, topic = %topic, schema_id = codec.id(), layout = %category.layout_id(), "category ready");
            outputs.push(CategoryOutput {
                category: category.clone(),
                topic,
                codec,
                plan,
            });
        }
        Ok(CreditTopology {
            deliveries: Arc::default(),
            view_chunk: TopologyConfig::default().view_chunk_accounts,
            shared: Arc::new(Shared {
                registry,
                raw,
                catalog,
                arrivals_topic,
                arrival_codec,
                quarantine_topic,
                quarantine_codec,
                ledger_topic,
                ledger_codec,
                outputs,
                kafka: kafka.clone(),
                tokeniser,
            }),
        })
    }

    /// The topic arrivals are sent to, and its codec (for the poller's sink).
    pub fn arrivals(&self) -> (String, Arc<Codec>) {
        (
            self.shared.arrivals_topic.clone(),
            self.shared.arrival_codec.clone(),
        )
    }

    /// Every topic the topology reads or writes, except changelogs (the runtime's).
    pub fn topics(&self) -> Vec<TopicSpec> {
        topic_specs(&self.shared.kafka, &self.shared.catalog)
    }

    /// Deliveries expected by a daily cutoff: each task exports, for the clients it holds,
    /// the cutoff and the latest accepted file (see `metrics::ExpectedDelivery`).
    pub fn expecting(mut self, deliveries: Vec<DeliveryConfig>) -> CreditTopology {
        self.deliveries = Arc::new(deliveries);
        self
    }

    /// Accounts per chunk of a large snapshot's view updates (see
    /// [`TopologyConfig::view_chunk_accounts`]).
    pub fn view_chunk(mut self, accounts: usize) -> CreditTopology {
        self.view_chunk = accounts.max(1);
        self
    }

    /// The runtime topology.
    pub fn topology(&self) -> Topology {
        let shared = self.shared.clone();
        let deliveries = self.deliveries.clone();
        let view_chunk = self.view_chunk;
        Topology {
            shape: shape(&self.shared.kafka, &self.shared.catalog),
            processor: Box::new(move |_| {
                Box::new(FileProcessor {
                    shared: shared.clone(),
                    deliveries: deliveries.clone(),
                    last_accepted: None,
                    view_chunk,
                })
            }),
            partition_of: Box::new(partition_of),
        }
    }
}

/// The topic the poller (and `credstream replay`) sends `FileArrived` records to.
pub fn arrivals_topic(kafka: &KafkaConfig) -> String {
    kafka.topic(ARRIVALS)
}

/// The topology's shape for `kafka` and `catalog`, without registering anything (for
/// `topology describe`).
pub fn shape(kafka: &KafkaConfig, catalog: &Catalog) -> TopologyShape {
    let mut sinks = vec![kafka.topic(QUARANTINE), kafka.topic(LEDGER)];
    sinks.extend(
        catalog
            .categories()
            .iter()
            .map(|c| kafka.topic(&c.output_topic)),
    );
    TopologyShape {
        name: "credit-files".into(),
        source: arrivals_topic(kafka),
        processor: "file-processor".into(),
        stores: STORES.iter().map(|s| s.to_string()).collect(),
        sinks,
    }
}

/// The partition a store key belongs to: arrivals are keyed by client id, so a dedup key
/// (`<client>/<sha256>`) goes where its client does, and a ledger key
/// (`<sha256>/p<partition>-<offset>`) names its arrival's partition.
fn partition_of(store: &str, key: &[u8], partitions: i32) -> Option<i32> {
    let key = std::str::from_utf8(key).ok()?;
    match store {
        DEDUP_STORE | VERSIONS_STORE | ACCOUNTS_STORE | BALANCES_STORE | POSTINGS_STORE
        | QUARANTINE_STORE => {
            let (client, _) = key.split_once('/')?;
            Some(partition_for_key(client.as_bytes(), partitions))
        }
        LEDGER_STORE => {
            let (_, arrival) = key.split_once('/')?;
            let (partition, _) = arrival.strip_prefix('p')?.split_once('-')?;
            partition
                .parse()
                .ok()
                .filter(|p| (0..partitions).contains(p))
        }
        _ => None,
    }
}

/// The topics of the topology (not changelogs) for `kafka` and `catalog`.
fn topic_specs(kafka: &KafkaConfig, catalog: &Catalog) -> Vec<TopicSpec> {
    let spec = |name: String, compacted: bool| TopicSpec {
        name,
        partitions: kafka.partitions,
        replication_factor: kafka.replication_factor,
        compacted,
        exact_partitions: false,
    };
    let mut topics = vec![
        spec(arrivals_topic(kafka), false),
        spec(kafka.topic(QUARANTINE), false),
        spec(kafka.topic(LEDGER), true),
    ];
    topics.extend(
        catalog
            .categories()
            .iter()
            .map(|c| spec(kafka.topic(&c.output_topic), false)),
    );
    topics
}

/// Every topic a deployment with `config` uses, changelogs included: for brokers where
/// topics are made by hand (or by the demo on the mock cluster).
pub fn planned_topics(config: &Config, catalog: &Catalog) -> Vec<TopicSpec> {
    let mut topics = topic_specs(&config.kafka, catalog);
    for store in STORES {
        topics.push(TopicSpec {
            name: changelog_topic(&config.app.id, store),
            partitions: config.kafka.partitions,
            replication_factor: config.kafka.replication_factor,
            compacted: true,
            exact_partitions: true,
        });
    }
    topics.push(TopicSpec {
        name: replicas_topic(&config.app.id),
        partitions: 1,
        replication_factor: config.kafka.replication_factor,
        compacted: true,
        exact_partitions: false,
    });
    topics
}

struct FileProcessor {
    shared: Arc<Shared>,
    deliveries: Arc<Vec<DeliveryConfig>>,
    /// (client, category) of an expected delivery held by this task → when its latest
    /// accepted file was processed (ms). Read from the versions store at the first
    /// punctuation, then kept up to date by `process`.
    last_accepted: Option<BTreeMap<(String, String), i64>>,
    /// Accounts per chunk of a large snapshot's view updates.
    view_chunk: usize,
}

/// How often each task exports its expected deliveries.
const DELIVERY_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// What routing a file's records came to.
enum Routed {
    /// The file is held whole.
    Held(FileDrift),
    /// Records went out or to quarantine, one by one.
    Records(RoutedRecords),
}

struct RoutedRecords {
    records_in: u64,
    records_out: u64,
    quarantined: BTreeMap<DriftClass, u64>,
    /// Record indices that went to quarantine rather than the output topic.
    not_out: Vec<u64>,
    trailer: Option<BTreeMap<String, String>>,
    contributions: Contributions,
    /// The first [`QUARANTINE_VIEW_PER_FILE`] quarantined records, for the store.
    quarantine_view: Vec<QuarantineRecord>,
}

/// A file's outcome as its logical identity's version chain sees it.
enum Outcome {
    Held { reason: String },
    Accepted(RoutedRecords),
}

/// Adds `note` to an entry's reason.
fn append_reason(entry: &mut FileLedgerEntry, note: String) {
    entry.reason = Some(match entry.reason.take() {
        Some(r) => format!("{r}; {note}"),
        None => note,
    });
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The file's ledger entry is written (and commits with this unit of work): the time since
/// the poller found the file stable. Replays are not arrivals and are not timed.
fn queryable(arrival: &FileArrived, category: &str) {
    if !arrival.replay && arrival.detected_at > 0 {
        crate::metrics::FileLatency {
            category,
            seconds: (now_ms() - arrival.detected_at).max(0) as f64 / 1000.0,
        }
        .emit();
    }
}

/// The quarantine store key of `record`: `<client>/<sha256>/<index, 12 digits>|file`.
fn quarantine_view_key(record: &QuarantineRecord) -> String {
    match record.record_index {
        Some(i) if record.scope == QuarantineScope::Record => {
            format!("{}/{}/{i:012}", record.client_id, record.file_sha256)
        }
        _ => format!("{}/{}/file", record.client_id, record.file_sha256),
    }
}

fn put_quarantine_view(ctx: &mut ProcessorContext<'_>, record: &QuarantineRecord) {
    ctx.put(
        QUARANTINE_STORE,
        quarantine_view_key(record).as_bytes(),
        &serde_json::to_vec(record).expect("quarantine records serialise"),
    );
}

/// Removes a file's quarantine entries (before a replay writes its own).
fn clear_quarantine_view(
    ctx: &mut ProcessorContext<'_>,
    arrival: &FileArrived,
) -> Result<(), crate::Error> {
    let prefix = format!("{}/{}/", arrival.client_id, arrival.sha256);
    let old = ctx.scan(
        QUARANTINE_STORE,
        prefix.as_bytes(),
        QUARANTINE_VIEW_PER_FILE + 1,
    )?;
    for (key, _) in old {
        ctx.delete(QUARANTINE_STORE, &key);
    }
    Ok(())
}

#[async_trait::async_trait]
impl Processor for FileProcessor {
    async fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        record: &InputRecord,
    ) -> Result<(), crate::Error> {
        let arrival = self.decode_arrival(record).await?;
        let arrival_id = format!("p{}-{}", record.partition, record.offset);
        let dedup_key = format!("{}/{}", arrival.client_id, arrival.sha256);

        let seen: Option<DedupEntry> = match ctx.get(DEDUP_STORE, dedup_key.as_bytes())? {
            Some(raw) => {
                Some(
                    serde_json::from_slice(&raw).map_err(|e| CreditError::CorruptState {
                        store: DEDUP_STORE,
                        key: dedup_key.clone(),
                        message: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        // This very record, processed before a crash stopped its offset commit: its state
        // writes went to one changelog per store and may have landed only in part (the
        // dedup entry without the ledger entry, say). So it is processed again in full,
        // not skipped; every write is an upsert under the same key.
        let seen = seen.filter(|first| first.arrival_id != arrival_id);
        // A replay processes the bytes again; its ledger entry names the first arrival.
        let replay_of = match &seen {
            Some(first) if arrival.replay => Some(first.arrival_id.clone()),
            _ => None,
        };
        if arrival.replay {
            // The file's earlier quarantine entries go; this processing writes its own.
            clear_quarantine_view(ctx, &arrival)?;
        }
        if let Some(first) = seen.filter(|_| !arrival.replay) {
            let entry = self.ledger_entry(&arrival, &arrival_id, FileStatus::Duplicate, |e| {
                e.reason = Some(format!(
                    "same bytes as arrival {} of {}; nothing emitted",
                    first.arrival_id, first.path
                ));
                e.duplicate_of = Some(first.arrival_id.clone());
            });
            self.write_ledger(ctx, &entry).await?;
            queryable(&arrival, "unknown");
            crate::metrics::FileDuplicate {
                client: &arrival.client_id,
            }
            .emit();
            tracing::info!(client = %arrival.client_id, path = %arrival.path, sha256 = %arrival.sha256, first = %first.arrival_id, "duplicate file: audit event only");
            return Ok(());
        }

        let entry = match self.shared.catalog.categorize(arrival.file_name()) {
            Err(reason) => {
                let drift = FileDrift {
                    class: DriftClass::UnknownCategory,
                    reason,
                    field: None,
                    expected: None,
                    actual: Some(arrival.file_name().to_string()),
                    records: 0,
                };
                self.hold_file(ctx, &arrival, &arrival_id, None, drift)
                    .await?
            }
            Ok(category) => {
                let output = self
                    .shared
                    .outputs
                    .iter()
                    .find(|o| o.category.name == category.name)
                    .expect("every category has an output");
                // The bytes are mapped, not read: a multi-GB file costs a bounded window
                // of memory (see `MappedRaw`).
                let object = self.shared.raw.open(&arrival.raw_key).await?;
                let mapped = object.map().map_err(|source| RawStoreError::Io {
                    op: "map",
                    key: arrival.raw_key.clone(),
                    source,
                })?;
                // The file's logical identity and its place in the version chain, read
                // once: they decide both whether routing may apply the views as it goes and
                // how the file is recorded.
                let versioning = output
                    .category
                    .identity
                    .as_ref()
                    .and_then(|i| i.identity(arrival.file_name()))
                    .map(|identity| {
                        ChainPlan::read(
                            ctx,
                            &arrival.client_id,
                            &output.category,
                            identity,
                            &arrival.sha256,
                        )
                    })
                    .transpose()?;
                let views = versioning
                    .as_ref()
                    .filter(|p| output.category.account.is_some() && p.becomes_current())
                    .map(|p| {
                        AccountTarget::new(
                            &arrival.client_id,
                            &output.category,
                            &p.identity,
                            p.number,
                            &arrival.sha256,
                        )
                    });
                let routed = tokio::task::block_in_place(|| {
                    self.route_records(
                        ctx,
                        &arrival,
                        output,
                        &mapped,
                        versioning.is_some(),
                        views.as_ref(),
                    )
                })?;
                drop(mapped);
                drop(object);
                let (mut entry, outcome) = match routed {
                    Routed::Held(drift) => {
                        let reason = format!("{}: {}", drift.class, drift.reason);
                        let entry = self
                            .hold_file(ctx, &arrival, &arrival_id, Some(output), drift)
                            .await?;
                        (entry, Outcome::Held { reason })
                    }
                    Routed::Records(mut routed) => {
                        for record in std::mem::take(&mut routed.quarantine_view) {
                            put_quarantine_view(ctx, &record);
                        }
                        let entry = self.records_entry(&arrival, &arrival_id, output, &routed);
                        (entry, Outcome::Accepted(routed))
                    }
                };
                match (output.category.identity.as_ref(), versioning) {
                    (_, Some(plan)) => {
                        self.record_version(ctx, &arrival, output, plan, &mut entry, outcome)
                            .await?;
                    }
                    (Some(spec), None) => {
                        let note = format!(
                            "the name states no logical identity (pattern {}): not versioned, \
                             not in views or reports",
                            spec.pattern()
                        );
                        tracing::warn!(client = %arrival.client_id, path = %arrival.path, category = %output.category.name, "{note}");
                        crate::metrics::FileWithoutIdentity {
                            client: &arrival.client_id,
                            category: &output.category.name,
                        }
                        .emit();
                        append_reason(&mut entry, note);
                    }
                    (None, None) => {}
                }
                entry
            }
        };
        let mut entry = entry;
        if arrival.replay {
            entry.replay_of = replay_of.clone();
            let note = match &replay_of {
                Some(first) => format!("replay of arrival {first}"),
                None => "replay (no earlier arrival of these bytes)".to_string(),
            };
            entry.reason = Some(match entry.reason.take() {
                Some(r) => format!("{note}; {r}"),
                None => note,
            });
            tracing::info!(client = %arrival.client_id, sha256 = %arrival.sha256, replay_of = ?replay_of, status = entry.status.as_str(), "file replayed");
        }
        self.write_ledger(ctx, &entry).await?;
        let category = entry.category.as_deref().unwrap_or("unknown");
        if matches!(
            entry.status,
            FileStatus::Processed | FileStatus::PartiallyQuarantined
        ) && let Some(seen) = self.last_accepted.as_mut()
            && let Some(at) = seen.get_mut(&(arrival.client_id.clone(), category.to_string()))
        {
            *at = (*at).max(entry.processed_at);
        }
        if !self.deliveries.is_empty() {
            // At once, not only at the next punctuation.
            self.export_deliveries(ctx, now_ms())?;
        }
        crate::metrics::FileProcessed {
            client: &arrival.client_id,
            category,
            status: entry.status.as_str(),
        }
        .emit();
        crate::metrics::RecordsIn {
            client: &arrival.client_id,
            category,
            count: entry.records_in.max(0) as u64,
        }
        .emit();
        queryable(&arrival, category);
        if replay_of.is_some() {
            // Later resends of these bytes stay duplicates of the first arrival.
            return Ok(());
        }
        let first = DedupEntry {
            arrival_id,
            ledger_key: entry.key(),
            path: arrival.path.clone(),
        };
        ctx.put(
            DEDUP_STORE,
            dedup_key.as_bytes(),
            &serde_json::to_vec(&first).expect("dedup entries serialise"),
        );
        Ok(())
    }

    fn punctuations(&self) -> Vec<Punctuation> {
        if self.deliveries.is_empty() {
            return Vec::new();
        }
        vec![Punctuation {
            kind: PunctuationType::WallClock,
            interval: DELIVERY_CHECK,
        }]
    }

    async fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        _kind: PunctuationType,
        time_ms: i64,
    ) -> Result<(), crate::Error> {
        self.export_deliveries(ctx, time_ms)
    }
}

impl FileProcessor {
    /// Exports the expected deliveries whose client this task holds: the latest cutoff
    /// and the latest accepted file.
    fn export_deliveries(
        &mut self,
        ctx: &ProcessorContext<'_>,
        now_ms: i64,
    ) -> Result<(), crate::Error> {
        let partitions = self.shared.kafka.partitions;
        let mine: Vec<&DeliveryConfig> = self
            .deliveries
            .iter()
            .filter(|d| partition_for_key(d.client.as_bytes(), partitions) == ctx.partition())
            .collect();
        if self.last_accepted.is_none() {
            let mut seen = BTreeMap::new();
            for d in &mine {
                let prefix = format!("{}/{}/", d.client, d.category);
                let mut latest = None;
                for (key, raw) in ctx.scan(VERSIONS_STORE, prefix.as_bytes(), usize::MAX)? {
                    let key = String::from_utf8_lossy(&key);
                    let chain: VersionChain = decode_state(VERSIONS_STORE, &key, &raw)?;
                    latest = latest.max(
                        chain
                            .versions
                            .iter()
                            .filter(|v| {
                                matches!(
                                    v.status,
                                    FileStatus::Processed
                                        | FileStatus::PartiallyQuarantined
                                        | FileStatus::Superseded
                                )
                            })
                            .map(|v| v.processed_at)
                            .max(),
                    );
                }
                seen.insert((d.client.clone(), d.category.clone()), latest.unwrap_or(0));
            }
            self.last_accepted = Some(seen);
        }
        let seen = self.last_accepted.as_ref().expect("loaded above");
        for d in mine {
            let at = seen
                .get(&(d.client.clone(), d.category.clone()))
                .copied()
                .filter(|at| *at > 0);
            crate::metrics::ExpectedDelivery {
                client: &d.client,
                category: &d.category,
                deadline_s: d.deadline_ms(now_ms) / 1000,
                window_s: i64::from(d.window_hours) * 3600,
                last_accepted_s: at.map(|ms| ms / 1000),
            }
            .emit();
        }
        Ok(())
    }

    async fn decode_arrival(&self, record: &InputRecord) -> Result<FileArrived, crate::Error> {
        let bad = |message: String| CreditError::BadArrival {
            partition: record.partition,
            offset: record.offset,
            message,
        };
        let value = record
            .value
            .as_deref()
            .ok_or_else(|| bad("no value".into()))?;
        let (id, mut body) = crate::schema::split_wire(value)
            .ok_or_else(|| bad("not in the Confluent wire format".into()))?;
        let writer = self.shared.registry.schema_by_id(id).await?;
        let reader: &Schema = self.shared.arrival_codec.schema();
        let decoded = crate::schema::decode_datum(&writer, reader, &mut body)
            .map_err(|e| bad(e.to_string()))?;
        apache_avro::from_value::<FileArrived>(&decoded).map_err(|e| bad(e.to_string()).into())
    }

    fn ledger_entry(
        &self,
        arrival: &FileArrived,
        arrival_id: &str,
        status: FileStatus,
        fill: impl FnOnce(&mut FileLedgerEntry),
    ) -> FileLedgerEntry {
        let mut entry = FileLedgerEntry {
            arrival_id: arrival_id.to_string(),
            client_id: arrival.client_id.clone(),
            category: None,
            file_path: arrival.path.clone(),
            file_sha256: arrival.sha256.clone(),
            raw_key: arrival.raw_key.clone(),
            size: arrival.size,
            status,
            reason: None,
            duplicate_of: None,
            records_in: 0,
            records_out: 0,
            records_quarantined: 0,
            layout_version: None,
            schema_id: None,
            arrived_at: arrival.detected_at,
            processed_at: now_ms(),
            replay_of: None,
            period: None,
            sequence: None,
            version: None,
            supersedes: None,
            superseded_by: None,
            trailer_totals: None,
        };
        fill(&mut entry);
        entry
    }

    /// Sends the ledger entry and stages it in the ledger store.
    async fn write_ledger(
        &self,
        ctx: &mut ProcessorContext<'_>,
        entry: &FileLedgerEntry,
    ) -> Result<(), crate::Error> {
        let key = entry.key();
        let value = self.shared.ledger_codec.to_vec(entry)?;
        ctx.send(&self.shared.ledger_topic, key.as_bytes(), &value)
            .await?;
        ctx.put(
            LEDGER_STORE,
            key.as_bytes(),
            &serde_json::to_vec(entry).expect("ledger entries serialise"),
        );
        Ok(())
    }

    /// Holds a whole file: one file-scope quarantine record, and the ledger entry.
    async fn hold_file(
        &self,
        ctx: &mut ProcessorContext<'_>,
        arrival: &FileArrived,
        arrival_id: &str,
        output: Option<&CategoryOutput>,
        drift: FileDrift,
    ) -> Result<FileLedgerEntry, crate::Error> {
        let category = output.map(|o| o.category.name.clone());
        let record = QuarantineRecord {
            scope: QuarantineScope::File,
            class: drift.class.as_str().to_string(),
            reason: drift.reason.clone(),
            field: drift.field.clone(),
            expected: drift.expected.clone(),
            actual: drift.actual.clone(),
            client_id: arrival.client_id.clone(),
            category: category.clone(),
            file_sha256: arrival.sha256.clone(),
            raw_key: arrival.raw_key.clone(),
            file_path: arrival.path.clone(),
            line: None,
            byte_offset: None,
            record_index: None,
            records_affected: drift.records as i64,
            excerpt: None,
            detected_at: now_ms(),
        };
        let value = self.shared.quarantine_codec.to_vec(&record)?;
        ctx.send(
            &self.shared.quarantine_topic,
            record.key().as_bytes(),
            &value,
        )
        .await?;
        put_quarantine_view(ctx, &record);
        let category_label = category.as_deref().unwrap_or("unknown");
        crate::metrics::FileQuarantined {
            client: &arrival.client_id,
            category: category_label,
            class: drift.class.as_str(),
        }
        .emit();
        crate::metrics::RecordsQuarantined {
            client: &arrival.client_id,
            category: category_label,
            class: drift.class.as_str(),
            count: drift.records,
        }
        .emit();
        tracing::warn!(client = %arrival.client_id, path = %arrival.path, class = %drift.class, reason = %drift.reason, records = drift.records, "file quarantined");
        Ok(
            self.ledger_entry(arrival, arrival_id, FileStatus::Quarantined, |e| {
                e.category = category;
                e.reason = Some(format!("{}: {}", drift.class, drift.reason));
                e.records_in = drift.records as i64;
                e.records_quarantined = drift.records as i64;
                e.layout_version = output.map(|o| o.category.layout_version as i32);
                e.schema_id = output.map(|o| o.codec.id() as i32);
            }),
        )
    }

    /// The ledger entry of a file whose records were routed one by one; emits the
    /// record metrics.
    fn records_entry(
        &self,
        arrival: &FileArrived,
        arrival_id: &str,
        output: &CategoryOutput,
        routed: &RoutedRecords,
    ) -> FileLedgerEntry {
        let held: u64 = routed.quarantined.values().sum();
        let status = if held == 0 {
            FileStatus::Processed
        } else {
            FileStatus::PartiallyQuarantined
        };
        let client = arrival.client_id.as_str();
        let category = output.category.name.as_str();
        crate::metrics::RecordsOut {
            client,
            category,
            count: routed.records_out,
        }
        .emit();
        for (class, count) in &routed.quarantined {
            crate::metrics::RecordsQuarantined {
                client,
                category,
                class: class.as_str(),
                count: *count,
            }
            .emit();
        }
        tracing::info!(client, path = %arrival.path, category, records_in = routed.records_in, records_out = routed.records_out, records_quarantined = held, "file processed");
        self.ledger_entry(arrival, arrival_id, status, |e| {
            e.category = Some(output.category.name.clone());
            e.records_in = routed.records_in as i64;
            e.records_out = routed.records_out as i64;
            e.records_quarantined = held as i64;
            e.layout_version = Some(output.category.layout_version as i32);
            e.schema_id = Some(output.codec.id() as i32);
            e.trailer_totals = routed.trailer.clone();
            if held > 0 {
                e.reason = Some(
                    routed
                        .quarantined
                        .iter()
                        .map(|(c, n)| format!("{n} {c}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                );
            }
        })
    }

    /// Adds the file to its logical identity's version chain. An accepted file becomes the
    /// current version: the previous current one is superseded (its output records
    /// retracted, its ledger entry marked, its view contributions replaced by this file's).
    /// A held file is a version too, but never current.
    async fn record_version(
        &self,
        ctx: &mut ProcessorContext<'_>,
        arrival: &FileArrived,
        output: &CategoryOutput,
        plan: ChainPlan,
        entry: &mut FileLedgerEntry,
        outcome: Outcome,
    ) -> Result<(), crate::Error> {
        let category = &output.category;
        let client = arrival.client_id.as_str();
        let ChainPlan {
            identity,
            key,
            mut chain,
            existing,
            number,
        } = plan;
        let (not_out, trailer, reason, contributions) = match outcome {
            Outcome::Held { reason } => (Vec::new(), None, Some(reason), None),
            Outcome::Accepted(r) => (r.not_out, r.trailer, None, Some(r.contributions)),
        };
        let version = Version {
            version: number,
            file_sha256: arrival.sha256.clone(),
            arrival_id: entry.arrival_id.clone(),
            ledger_key: entry.key(),
            file_path: arrival.path.clone(),
            status: entry.status,
            records_in: entry.records_in as u64,
            records_out: entry.records_out as u64,
            records_quarantined: entry.records_quarantined as u64,
            not_out,
            trailer,
            reason,
            processed_at: entry.processed_at,
            superseded_by: None,
        };
        match existing {
            Some(i) => chain.versions[i] = version,
            None => chain.versions.push(version),
        }
        entry.period = Some(identity.period.clone());
        entry.sequence = Some(identity.sequence.clone());
        entry.version = Some(number as i32);

        if let Some(contributions) = contributions {
            let previous = chain.current().cloned();
            match previous {
                // An older version replayed after a newer one took over: not current.
                Some(p) if p.version > number => {
                    let retracted = self.retract(
                        ctx,
                        output,
                        &arrival.sha256,
                        &chain.versions[existing.unwrap_or(chain.versions.len() - 1)],
                        &p.file_sha256,
                    )?;
                    entry.status = FileStatus::Superseded;
                    entry.superseded_by = Some(p.file_sha256.clone());
                    append_reason(
                        entry,
                        format!(
                            "version {number} is older than the current version {}; its {retracted} records were retracted",
                            p.version
                        ),
                    );
                }
                previous => {
                    let superseded = previous.filter(|p| p.version != number);
                    if let Some(p) = &superseded {
                        let retracted =
                            self.retract(ctx, output, &p.file_sha256, p, &arrival.sha256)?;
                        self.mark_superseded(ctx, p, &arrival.sha256, number)
                            .await?;
                        if let Some(v) = chain.versions.iter_mut().find(|v| v.version == p.version)
                        {
                            v.superseded_by = Some(number);
                            v.status = FileStatus::Superseded;
                        }
                        entry.supersedes = Some(p.file_sha256.clone());
                        append_reason(
                            entry,
                            format!(
                                "correction: version {number} supersedes version {} ({}); {retracted} of its records retracted",
                                p.version, p.file_sha256
                            ),
                        );
                        crate::metrics::FileSuperseded {
                            client,
                            category: &category.name,
                            records_retracted: retracted,
                        }
                        .emit();
                        tracing::info!(client, category = %category.name, period = %identity.period, sequence = %identity.sequence, version = number, supersedes = %p.file_sha256, retracted, "correction: new version supersedes the current one");
                    }
                    self.apply_views(
                        ctx,
                        category,
                        client,
                        &key,
                        &identity,
                        number,
                        &arrival.sha256,
                        superseded.as_ref().map(|p| p.file_sha256.as_str()),
                        contributions,
                    )?;
                    chain.current = Some(number);
                }
            }
        } else if let Some(current) = chain.current() {
            append_reason(
                entry,
                format!(
                    "version {number} is held; version {} stays current",
                    current.version
                ),
            );
        }
        ctx.put(
            VERSIONS_STORE,
            key.as_bytes(),
            &serde_json::to_vec(&chain).expect("version chains serialise"),
        );
        Ok(())
    }

    /// Sends a retraction (tombstone) for every output record of `version`, naming the
    /// version that replaced it. Returns how many.
    fn retract(
        &self,
        ctx: &ProcessorContext<'_>,
        output: &CategoryOutput,
        sha256: &str,
        version: &Version,
        by: &str,
    ) -> Result<u64, crate::Error> {
        tokio::task::block_in_place(|| {
            let mut key = String::with_capacity(80);
            let mut retracted = 0;
            let mut skip = version.not_out.iter().copied().peekable();
            for index in 0..version.records_in {
                if skip.peek() == Some(&index) {
                    skip.next();
                    continue;
                }
                record_key(&mut key, sha256, index);
                ctx.retract_blocking(
                    &output.topic,
                    key.as_bytes(),
                    (RETRACTED_BY_HEADER, by.as_bytes()),
                )?;
                retracted += 1;
            }
            Ok(retracted)
        })
    }

    /// Marks the ledger entry of a superseded version.
    async fn mark_superseded(
        &self,
        ctx: &mut ProcessorContext<'_>,
        version: &Version,
        by: &str,
        by_version: u32,
    ) -> Result<(), crate::Error> {
        let Some(raw) = ctx.get(LEDGER_STORE, version.ledger_key.as_bytes())? else {
            return Ok(());
        };
        let mut old: FileLedgerEntry = decode_state(LEDGER_STORE, &version.ledger_key, &raw)?;
        old.status = FileStatus::Superseded;
        old.superseded_by = Some(by.to_string());
        append_reason(
            &mut old,
            format!("superseded by version {by_version} ({by})"),
        );
        old.processed_at = now_ms();
        self.write_ledger(ctx, &old).await
    }

    /// Replaces the views' contributions of the identity's previous current version (if
    /// any) with this file's.
    #[allow(clippy::too_many_arguments)]
    fn apply_views(
        &self,
        ctx: &mut ProcessorContext<'_>,
        category: &Category,
        client: &str,
        identity_key: &str,
        identity: &Identity,
        version: u32,
        sha256: &str,
        superseded: Option<&str>,
        contributions: Contributions,
    ) -> Result<(), crate::Error> {
        if category.postings.is_some() {
            // Keyed by identity: whatever the identity held before goes, then this file's.
            let prefix = format!("{identity_key}/");
            for (k, _) in ctx.scan(POSTINGS_STORE, prefix.as_bytes(), usize::MAX)? {
                ctx.delete(POSTINGS_STORE, &k);
            }
            for ((month, account), sum) in contributions.postings {
                let k = format!("{prefix}{month}/{account}");
                ctx.put(
                    POSTINGS_STORE,
                    k.as_bytes(),
                    &serde_json::to_vec(&sum).expect("posting sums serialise"),
                );
            }
        }
        if category.account.is_some() {
            let target = AccountTarget::new(client, category, identity, version, sha256);
            put_accounts(ctx, &target, contributions.accounts)?;
            remove_absent_accounts(ctx, &target, superseded, self.view_chunk)?;
        }
        Ok(())
    }

    /// Parses the file and sends each record to the output topic or quarantine, gathering
    /// what it adds to the views. Runs under `block_in_place`: parsing is CPU work, and
    /// sends block only while the producer's queue is full.
    ///
    /// `views` is where the file's accounts go if it is accepted and becomes current. When
    /// the file was validated whole before this pass (so it will be accepted), they are
    /// applied a chunk at a time as they are read, instead of held for the end. A file
    /// without a logical identity (`versioned` false) has no versions, so it adds nothing
    /// to the views.
    fn route_records(
        &self,
        ctx: &mut ProcessorContext<'_>,
        arrival: &FileArrived,
        output: &CategoryOutput,
        raw: &MappedRaw,
        versioned: bool,
        views: Option<&AccountTarget<'_>>,
    ) -> Result<Routed, crate::Error> {
        let bytes: &[u8] = raw;
        let layout = output.category.layout_id();
        let file = FileProvenance {
            file_sha256: &arrival.sha256,
            raw_key: &arrival.raw_key,
            layout: &layout,
        };
        let tokeniser = &self.shared.tokeniser;
        // A trailer, or a layout that holds the whole file on one bad record, must be
        // checked before any record leaves.
        let validated = output.category.validates_first(bytes);
        if validated
            && let Some(drift) = validate(
                &output.category,
                &output.plan,
                tokeniser,
                file,
                bytes,
                |offset| raw.release_before(offset),
            )
        {
            return Ok(Routed::Held(drift));
        }
        raw.rewind();
        let mut gather = versioned.then(|| Gather {
            category: &output.category,
            sha256: &arrival.sha256,
            contributions: Contributions::default(),
            keys: object_keys(&output.category),
        });
        let spill_to = views.filter(|_| validated);
        let mut value = Vec::with_capacity(512);
        let mut key = String::with_capacity(80);
        let mut records_out = 0u64;
        let mut quarantined: BTreeMap<DriftClass, u64> = BTreeMap::new();
        let mut not_out = Vec::new();
        let mut quarantine_view = Vec::new();
        let parsed = parse(
            bytes,
            &output.category,
            tokeniser,
            |outcome| -> Result<(), crate::Error> {
                raw.release_before(outcome_offset(&outcome));
                let issue = match outcome {
                    Ok(rec) => {
                        let row = RowRef {
                            values: rec.values,
                            position: rec.position,
                            file,
                        };
                        match encode_record(&output.codec, &output.plan, &row, &mut value, &mut key)
                        {
                            Ok(()) => {
                                ctx.send_blocking(&output.topic, key.as_bytes(), &value)?;
                                records_out += 1;
                                if let Some(g) = gather.as_mut() {
                                    g.add(rec.values, rec.position);
                                    if let Some(target) = spill_to
                                        && g.contributions.accounts.len() >= self.view_chunk
                                    {
                                        let chunk = std::mem::take(&mut g.contributions.accounts);
                                        put_accounts(ctx, target, chunk)?;
                                        ctx.spill()?;
                                    }
                                }
                                return Ok(());
                            }
                            Err(e) => schema_issue(e, rec.position),
                        }
                    }
                    Err(issue) => issue,
                };
                *quarantined.entry(issue.class).or_default() += 1;
                not_out.push(issue.position.record_index);
                let record = QuarantineRecord {
                    scope: QuarantineScope::Record,
                    class: issue.class.as_str().to_string(),
                    reason: issue.reason,
                    field: issue.field,
                    expected: issue.expected,
                    actual: issue.actual.clone(),
                    client_id: arrival.client_id.clone(),
                    category: Some(output.category.name.clone()),
                    file_sha256: arrival.sha256.clone(),
                    raw_key: arrival.raw_key.clone(),
                    file_path: arrival.path.clone(),
                    line: Some(issue.position.line as i64),
                    byte_offset: Some(issue.position.byte_offset as i64),
                    record_index: Some(issue.position.record_index as i64),
                    records_affected: 1,
                    excerpt: issue.actual,
                    detected_at: now_ms(),
                };
                let encoded = self.shared.quarantine_codec.to_vec(&record)?;
                ctx.send_blocking(
                    &self.shared.quarantine_topic,
                    record.key().as_bytes(),
                    &encoded,
                )?;
                if quarantine_view.len() < QUARANTINE_VIEW_PER_FILE {
                    quarantine_view.push(record);
                }
                Ok(())
            },
        )?;
        Ok(match parsed {
            Err(drift) => Routed::Held(drift),
            Ok(summary) => {
                if let Some(trailer) = &summary.trailer {
                    tracing::info!(path = %arrival.path, line = trailer.line, records = trailer.records, totals = %trailer.sums.iter().map(|t| format!("{}={t}", t.field)).collect::<Vec<_>>().join(" "), "trailer control totals reconcile");
                }
                not_out.sort_unstable();
                Routed::Records(RoutedRecords {
                    records_in: summary.records,
                    records_out,
                    quarantined,
                    not_out,
                    trailer: trailer_totals(&summary),
                    contributions: gather.map(|g| g.contributions).unwrap_or_default(),
                    quarantine_view,
                })
            }
        })
    }
}

/// A file's logical identity and its place in the identity's version chain, as read
/// before the file is routed and recorded.
struct ChainPlan {
    identity: Identity,
    /// The chain's key in the versions store.
    key: String,
    chain: VersionChain,
    /// The index of this file's bytes in the chain, if they were recorded before (a replay).
    existing: Option<usize>,
    /// This file's version number: its earlier one on a replay, else the next.
    number: u32,
}

impl ChainPlan {
    fn read(
        ctx: &ProcessorContext<'_>,
        client: &str,
        category: &Category,
        identity: Identity,
        sha256: &str,
    ) -> Result<ChainPlan, crate::Error> {
        let key = identity_key(client, &category.name, &identity);
        let chain: VersionChain = match ctx.get(VERSIONS_STORE, key.as_bytes())? {
            Some(raw) => decode_state(VERSIONS_STORE, &key, &raw)?,
            None => VersionChain {
                client_id: client.to_string(),
                category: category.name.clone(),
                period: identity.period.clone(),
                sequence: identity.sequence.clone(),
                ..VersionChain::default()
            },
        };
        let existing = chain.versions.iter().position(|v| v.file_sha256 == sha256);
        let number = existing.map_or_else(|| chain.next_version(), |i| chain.versions[i].version);
        Ok(ChainPlan {
            identity,
            key,
            chain,
            existing,
            number,
        })
    }

    /// Whether an accepted file becomes its identity's current version (and so replaces
    /// the views' contributions): not when a newer version is current already.
    fn becomes_current(&self) -> bool {
        self.chain
            .current()
            .is_none_or(|p| p.version <= self.number)
    }
}

/// Where one accepted snapshot file's accounts go in the `accounts` and `balances` views.
struct AccountTarget<'a> {
    client: &'a str,
    category: &'a str,
    period: &'a str,
    /// `<client>/<period>/`: the snapshot's keys in `balances`.
    period_prefix: String,
    /// The scale of the layout's balance field.
    scale: u32,
    version: u32,
    sha256: &'a str,
}

impl<'a> AccountTarget<'a> {
    fn new(
        client: &'a str,
        category: &'a Category,
        identity: &'a Identity,
        version: u32,
        sha256: &'a str,
    ) -> AccountTarget<'a> {
        let scale = category
            .account
            .as_ref()
            .and_then(|role| category.fields[role.balance].ty.numeric_scale())
            .unwrap_or(0);
        AccountTarget {
            client,
            category: &category.name,
            period: &identity.period,
            period_prefix: format!("{client}/{}/", identity.period),
            scale,
            version,
            sha256,
        }
    }
}

/// Writes each account's balance in the snapshot, and its account view entry unless a
/// later period's file shows the account already.
fn put_accounts(
    ctx: &mut ProcessorContext<'_>,
    target: &AccountTarget<'_>,
    accounts: impl IntoIterator<Item = (String, AccountContribution)>,
) -> Result<(), crate::Error> {
    let (mut bk, mut ak, mut json) = (String::new(), String::new(), Vec::new());
    for (account, c) in accounts {
        bk.clear();
        write!(bk, "{}{account}", target.period_prefix).expect("writing to a String");
        json.clear();
        let balance = BalanceRef {
            unscaled: c.balance,
            scale: target.scale,
            file_sha256: target.sha256,
            version: target.version,
        };
        serde_json::to_writer(&mut json, &balance).expect("balances serialise");
        ctx.put(BALANCES_STORE, bk.as_bytes(), &json);
        ak.clear();
        write!(ak, "{}/{account}", target.client).expect("writing to a String");
        let newer_exists = match ctx.get(ACCOUNTS_STORE, ak.as_bytes())? {
            Some(raw) => {
                let existing: PeriodOf = decode_state(ACCOUNTS_STORE, &ak, &raw)?;
                existing.period.as_str() > target.period
            }
            None => false,
        };
        if !newer_exists {
            json.clear();
            AccountStateRef {
                client_id: target.client,
                account: &account,
                category: target.category,
                period: target.period,
                version: target.version,
                file_sha256: target.sha256,
                record_index: c.record_index,
                values: &c.values,
            }
            .write_json(&mut json);
            ctx.put(ACCOUNTS_STORE, ak.as_bytes(), &json);
        }
    }
    Ok(())
}

/// After a snapshot's accounts are written: every balance of its period that another file
/// (or another version) wrote is of an account this snapshot no longer has, so it goes,
/// and so does the account's view entry if that showed it from the superseded file. Reads
/// the period a page at a time, and spills when the unit has staged a chunk's worth.
fn remove_absent_accounts(
    ctx: &mut ProcessorContext<'_>,
    target: &AccountTarget<'_>,
    superseded: Option<&str>,
    chunk: usize,
) -> Result<(), crate::Error> {
    let prefix = target.period_prefix.as_bytes();
    let mut start: Option<Vec<u8>> = None;
    loop {
        let page = ctx.scan_from(BALANCES_STORE, prefix, start.as_deref(), chunk)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        let mut next = last.clone();
        next.push(0);
        for (bk, stored) in &page {
            // The balance as this unit leaves it: its own write if it staged one.
            let current = match ctx.staged(BALANCES_STORE, bk) {
                Some(None) => continue,
                Some(Some(v)) => v,
                None => stored.as_slice(),
            };
            let bk_text = String::from_utf8_lossy(bk);
            let written: Balance = decode_state(BALANCES_STORE, &bk_text, current)?;
            if written.file_sha256 == target.sha256 && written.version == target.version {
                continue;
            }
            let ak = format!("{}/{}", target.client, &bk_text[prefix.len()..]);
            ctx.delete(BALANCES_STORE, bk);
            if let Some(raw) = ctx.get(ACCOUNTS_STORE, ak.as_bytes())? {
                let state: AccountState = decode_state(ACCOUNTS_STORE, &ak, &raw)?;
                if Some(state.file_sha256.as_str()) == superseded {
                    ctx.delete(ACCOUNTS_STORE, ak.as_bytes());
                }
            }
        }
        if ctx.staged_writes() >= 2 * chunk {
            tokio::task::block_in_place(|| ctx.spill())?;
        }
        if page.len() < chunk {
            return Ok(());
        }
        start = Some(next);
    }
}

/// The trailer's reconciled values by name, with `records` (the data records counted).
fn trailer_totals(summary: &ParseSummary) -> Option<BTreeMap<String, String>> {
    summary.trailer.as_ref().map(|t| {
        let mut totals = totals_map(&t.sums);
        totals
            .entry("records".to_string())
            .or_insert_with(|| t.records.to_string());
        totals
    })
}

/// Reads a store value the topology wrote itself; unreadable means a bug, not bad data.
fn decode_state<T: serde::de::DeserializeOwned>(
    store: &'static str,
    key: &str,
    raw: &[u8],
) -> Result<T, crate::Error> {
    serde_json::from_slice(raw).map_err(|e| {
        CreditError::CorruptState {
            store,
            key: key.to_string(),
            message: e.to_string(),
        }
        .into()
    })
}

/// Gathers a file's view contributions from its good records.
struct Gather<'a> {
    category: &'a Category,
    sha256: &'a str,
    contributions: Contributions,
    /// The layout's fields in key order, each with its JSON key text (`"name":`): the
    /// account view's `values` object is written from these.
    keys: Vec<(usize, Vec<u8>)>,
}

/// The fields of `category` in the order serde_json writes an object's keys, each with
/// its key text.
fn object_keys(category: &Category) -> Vec<(usize, Vec<u8>)> {
    let mut keys: Vec<(usize, Vec<u8>)> = category
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut key = serde_json::to_vec(&f.name).expect("names serialise");
            key.push(b':');
            (i, key)
        })
        .collect();
    keys.sort_by(|a, b| category.fields[a.0].name.cmp(&category.fields[b.0].name));
    keys
}

/// A record's values as the JSON object of its fields by name: the text serde_json
/// writes for a map of each field's `FieldValue::to_json`, without building the map.
fn values_object(
    category: &Category,
    keys: &[(usize, Vec<u8>)],
    values: &[FieldValue<'_>],
) -> Box<str> {
    let mut text = Vec::with_capacity(64 * keys.len());
    text.push(b'{');
    for (n, (i, key)) in keys.iter().enumerate() {
        if n > 0 {
            text.push(b',');
        }
        text.extend_from_slice(key);
        values[*i].write_json(&category.fields[*i].ty, &mut text);
    }
    text.push(b'}');
    String::from_utf8(text)
        .expect("JSON text is UTF-8")
        .into_boxed_str()
}

impl Gather<'_> {
    fn add(&mut self, values: &[FieldValue<'_>], position: Position) {
        let text = |i: usize| match values[i] {
            FieldValue::Str(s) => Some(s.trim().to_string()),
            FieldValue::Pan(t) => Some(t.token()),
            _ => None,
        };
        let unscaled = |i: usize| values[i].as_unscaled().unwrap_or(0);
        let scale = |i: usize| self.category.fields[i].ty.numeric_scale().unwrap_or(0);
        if let Some(role) = &self.category.account {
            let Some(account) = text(role.key) else {
                return;
            };
            let contribution = AccountContribution {
                balance: unscaled(role.balance),
                record_index: position.record_index,
                values: values_object(self.category, &self.keys, values),
            };
            self.contributions.accounts.insert(account, contribution);
        }
        if let Some(role) = &self.category.postings {
            let (Some(account), FieldValue::Date(days), Some(flag)) =
                (text(role.account), values[role.date], text(role.sign))
            else {
                return;
            };
            let Some(date) = crate::formats::epoch_date(days) else {
                return;
            };
            let month = date.format("%Y-%m").to_string();
            let amount = unscaled(role.amount);
            let sum = self
                .contributions
                .postings
                .entry((month, account))
                .or_insert_with(|| PostingSum {
                    scale: scale(role.amount),
                    file_sha256: self.sha256.to_string(),
                    ..PostingSum::default()
                });
            if flag == role.debit {
                sum.net += amount;
                sum.debits += 1;
            } else if flag == role.credit {
                sum.net -= amount;
                sum.credits += 1;
            }
        }
    }
}

/// A record the parser accepted but the Avro schema refused.
fn schema_issue(e: impl std::fmt::Display, position: Position) -> RecordIssue {
    RecordIssue {
        class: DriftClass::SchemaViolation,
        reason: e.to_string(),
        field: None,
        expected: None,
        actual: None,
        position,
    }
}

/// One parsed record as the routing pass sends it: the Confluent header and the Avro row
/// into `value`, its key `<file sha256>:<record index>` into `key` (both emptied first).
pub fn encode_record(
    codec: &Codec,
    plan: &RowPlan,
    row: &RowRef<'_, '_>,
    value: &mut Vec<u8>,
    key: &mut String,
) -> Result<(), crate::schema::SchemaError> {
    value.clear();
    codec.write_header(value);
    plan.write(row, value)?;
    record_key(key, row.file.file_sha256, row.position.record_index);
    Ok(())
}

/// An output record's key, `<file sha256>:<record index>` (into `key`, emptied first): what
/// a record is sent under and what its retraction names.
fn record_key(key: &mut String, sha256: &str, index: u64) {
    key.clear();
    write!(key, "{sha256}:{index}").expect("writing to a String");
}

/// Where a parsed record or issue starts: the parser is past everything before it.
fn outcome_offset(outcome: &Result<ParsedRecord<'_, '_>, RecordIssue>) -> u64 {
    match outcome {
        Ok(rec) => rec.position.byte_offset,
        Err(issue) => issue.position.byte_offset,
    }
}

/// The validation pass of a file of `category`, which sends nothing: what
/// `FileProcessor` runs before a category that [`Category::validates_first`] sends any
/// record. Returns the drift that holds the file: a structure or trailer that does not
/// reconcile (found with [`crate::formats::reconcile`], which types only the summed
/// fields), or with `quarantine.bad_records = "file"` the first bad record, for which
/// every record is parsed, tokenised and encoded with `plan`. `release` hears how far the
/// pass has read (see [`MappedRaw::release_before`]).
pub fn validate(
    category: &Category,
    plan: &RowPlan,
    tokeniser: &Tokeniser,
    file: FileProvenance<'_>,
    bytes: &[u8],
    release: impl Fn(u64),
) -> Option<FileDrift> {
    if category.bad_records == BadRecordPolicy::Record {
        // No single record can hold the file: only its structure and trailer can.
        return crate::formats::reconcile(bytes, category, release).err();
    }
    let mut scratch = Vec::with_capacity(512);
    let mut first: Option<RecordIssue> = None;
    let mut bad = 0u64;
    let parsed = parse(
        bytes,
        category,
        tokeniser,
        |outcome| -> Result<(), std::convert::Infallible> {
            release(outcome_offset(&outcome));
            let issue = match outcome {
                Ok(rec) => {
                    scratch.clear();
                    let row = RowRef {
                        values: rec.values,
                        position: rec.position,
                        file,
                    };
                    match plan.write(&row, &mut scratch) {
                        Ok(()) => return Ok(()),
                        Err(e) => schema_issue(e, rec.position),
                    }
                }
                Err(issue) => issue,
            };
            bad += 1;
            first.get_or_insert(issue);
            Ok(())
        },
    );
    let summary = match parsed {
        Ok(Err(drift)) => return Some(drift),
        Ok(Ok(summary)) => summary,
        Err(never) => match never {},
    };
    let issue = first.filter(|_| category.bad_records == BadRecordPolicy::File)?;
    Some(FileDrift {
        class: issue.class,
        reason: format!(
            "{bad} of {} records are bad, and this layout holds the whole file on any \
             (quarantine.bad_records = \"file\"); the first, line {}: {}",
            summary.records, issue.position.line, issue.reason
        ),
        field: issue.field,
        expected: issue.expected,
        actual: issue.actual,
        records: summary.records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The account view's `values` object, written from text, is byte for byte the JSON
    /// serde_json writes for the map of every field's `to_json` (what the store held
    /// before): every record of a generated file with card numbers, each category.
    #[test]
    fn account_values_are_the_map_serde_json_would_write() {
        let catalog = Catalog::builtin().unwrap();
        let tokeniser = Tokeniser::for_tests();
        let text = crate::samples::account_master_csv(200, 5, "2026-10-31", &[]);
        let category = catalog.categorize("accounts_2026-10.csv").unwrap();
        let keys = object_keys(category);
        let mut checked = 0;
        let parsed = parse(text.as_bytes(), category, &tokeniser, |outcome| {
            let rec = outcome.expect("a clean file");
            let ours = values_object(category, &keys, rec.values);
            let map: serde_json::Map<String, serde_json::Value> = category
                .fields
                .iter()
                .zip(rec.values)
                .map(|(f, v)| (f.name.clone(), v.to_json(&f.ty)))
                .collect();
            assert_eq!(&*ours, serde_json::to_string(&map).unwrap());
            checked += 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert!(parsed.is_ok());
        assert_eq!(checked, 200);
    }
}
