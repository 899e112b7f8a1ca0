//! Metrics: one small struct per emitted event, so metric names and labels live in one
//! place and stay stable. Names follow `credstream_<name>_<unit>_total` for counters.
//!
//! Architecture Invariant: no other module calls the `metrics` macros directly.

use std::sync::OnceLock;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// What kind of series a catalogue entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric credstream exports: name, kind, help. Each is registered at start (an
/// unlabelled zero series), so `/metrics` lists the whole catalogue before the first event
/// and dashboards and alert rules never query a name that is not there yet.
pub const CATALOGUE: &[(&str, Kind, &str)] = &[
    (
        "credstream_files_seen_total",
        Kind::Counter,
        "Files sighted in a landing area for the first time (or changed).",
    ),
    (
        "credstream_files_emitted_total",
        Kind::Counter,
        "Stable files archived and emitted as arrivals.",
    ),
    (
        "credstream_poll_errors_total",
        Kind::Counter,
        "Failed listings or emits of a source; retried at the next poll.",
    ),
    (
        "credstream_files_processed_total",
        Kind::Counter,
        "Files processed by the topology, by resulting status.",
    ),
    (
        "credstream_sftp_host_key_mismatch_total",
        Kind::Counter,
        "SFTP connections refused because the server's host key differs from the pinned one.",
    ),
    (
        "credstream_raw_store_puts_total",
        Kind::Counter,
        "Raw store puts by outcome: stored (uploaded) or present (same digest already there).",
    ),
    (
        "credstream_raw_store_errors_total",
        Kind::Counter,
        "Failed raw store requests (put, get, head), retried by the caller.",
    ),
    (
        "credstream_files_moved_to_done_total",
        Kind::Counter,
        "Emitted files moved to the source's move_to_done folder.",
    ),
    (
        "credstream_file_names_refused_total",
        Kind::Counter,
        "Files in a landing area whose names cannot be taken safely (left in place).",
    ),
    (
        "credstream_files_superseded_total",
        Kind::Counter,
        "Logical files replaced as current by a correction (same identity, new bytes).",
    ),
    (
        "credstream_records_retracted_total",
        Kind::Counter,
        "Output records retracted (tombstoned) because a correction superseded their file.",
    ),
    (
        "credstream_files_without_identity_total",
        Kind::Counter,
        "Files of a category with logical identities whose name states none: not in views or reports.",
    ),
    (
        "credstream_files_duplicate_total",
        Kind::Counter,
        "Arrivals whose bytes were already processed: audit event only.",
    ),
    (
        "credstream_files_quarantined_total",
        Kind::Counter,
        "Files held whole in quarantine, by drift class.",
    ),
    (
        "credstream_records_out_total",
        Kind::Counter,
        "Records written to output topics.",
    ),
    (
        "credstream_records_quarantined_total",
        Kind::Counter,
        "Records sent to the quarantine topic, by drift class.",
    ),
    (
        "credstream_registry_errors_total",
        Kind::Counter,
        "Failed schema-registry calls.",
    ),
    (
        "credstream_kafka_errors_total",
        Kind::Counter,
        "Failed Kafka operations, by operation.",
    ),
    (
        "credstream_processing_retries_total",
        Kind::Counter,
        "Input records retried after an outside system failed.",
    ),
    (
        "credstream_restore_records_total",
        Kind::Counter,
        "Changelog records applied while restoring stores or keeping standbys.",
    ),
    (
        "credstream_restore_remaining_records",
        Kind::Gauge,
        "Changelog records left to restore, per store partition.",
    ),
    (
        "credstream_store_writes_spilled_total",
        Kind::Counter,
        "Store writes applied before their unit of work committed, in chunks of a unit too large to hold (a big snapshot's view updates).",
    ),
    (
        "credstream_fenced_writes_ignored_total",
        Kind::Counter,
        "Changelog writes of a replica that had lost the partition, ignored by readers.",
    ),
    (
        "credstream_tasks_opened_total",
        Kind::Counter,
        "Tasks opened (fenced and restored).",
    ),
    (
        "credstream_tasks_lost_total",
        Kind::Counter,
        "Tasks stopped because another replica took them over.",
    ),
    (
        "credstream_tasks",
        Kind::Gauge,
        "Tasks held by this replica, by kind (active, standby).",
    ),
    (
        "credstream_standby_lag_records",
        Kind::Gauge,
        "Changelog records a standby is behind, per partition.",
    ),
    (
        "credstream_transactions_total",
        Kind::Counter,
        "Exactly-once transactions, by outcome (committed, aborted, unknown).",
    ),
    (
        "credstream_records_in_total",
        Kind::Counter,
        "Data records read from files, by client and category (= out + quarantined).",
    ),
    (
        "credstream_file_latency_seconds",
        Kind::Histogram,
        "From a file found stable by the poller to its ledger entry being queryable, by category.",
    ),
    (
        "credstream_consumer_lag_records",
        Kind::Gauge,
        "Arrival records not yet processed, per input partition this replica owns.",
    ),
    (
        "credstream_replica_heartbeat_age_seconds",
        Kind::Gauge,
        "Age of each replica's last publication in the replica table, as this replica sees it.",
    ),
    (
        "credstream_partitions_unowned",
        Kind::Gauge,
        "Input partitions with no live owner in the replica table (a rebalance, or a replica down).",
    ),
    (
        "credstream_query_duration_seconds",
        Kind::Histogram,
        "Query API requests, by route and status class, from request to response.",
    ),
    (
        "credstream_query_forwards_total",
        Kind::Counter,
        "Query reads sent to another replica, by outcome (ok, unavailable, error).",
    ),
    (
        "credstream_query_denied_total",
        Kind::Counter,
        "Query requests refused by authentication or scope, by reason.",
    ),
    (
        "credstream_expected_file_deadline_timestamp_seconds",
        Kind::Gauge,
        "The latest passed cutoff of an expected delivery (client, category), Unix seconds.",
    ),
    (
        "credstream_expected_file_window_seconds",
        Kind::Gauge,
        "How long before its cutoff an expected delivery may arrive, seconds.",
    ),
    (
        "credstream_file_last_accepted_timestamp_seconds",
        Kind::Gauge,
        "When the latest accepted file of an expected delivery (client, category) was processed.",
    ),
    (
        "credstream_build_info",
        Kind::Gauge,
        "Always 1; labelled with the running version.",
    ),
];

/// Latency buckets, seconds: 1 ms to 30 min (file latency spans both).
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0,
];

/// Installs the Prometheus recorder (once per process) and returns its handle, which
/// renders the text exposition for `/metrics`.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .expect("the buckets are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            register();
            handle
        })
        .clone()
}

fn register() {
    for &(name, kind, help) in CATALOGUE {
        match kind {
            Kind::Counter => {
                describe_counter!(name, help);
                counter!(name).absolute(0);
            }
            Kind::Gauge => {
                describe_gauge!(name, help);
                if name != "credstream_build_info" {
                    gauge!(name).set(0.0);
                }
            }
            Kind::Histogram => {
                describe_histogram!(name, Unit::Seconds, help);
                // Registered without an observation: every bucket at zero.
                let _ = histogram!(name);
            }
        }
    }
    gauge!("credstream_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// A file sighted for the first time.
pub struct FileSeen<'a> {
    pub source: &'a str,
}

impl FileSeen<'_> {
    pub fn emit(self) {
        counter!("credstream_files_seen_total", "source" => self.source.to_string()).increment(1);
    }
}

/// A stable file archived and emitted.
pub struct FileEmitted<'a> {
    pub source: &'a str,
    pub client: &'a str,
}

impl FileEmitted<'_> {
    pub fn emit(self) {
        counter!("credstream_files_emitted_total", "source" => self.source.to_string(), "client" => self.client.to_string()).increment(1);
    }
}

/// A listing or emit that failed.
pub struct PollError<'a> {
    pub source: &'a str,
}

impl PollError<'_> {
    pub fn emit(self) {
        counter!("credstream_poll_errors_total", "source" => self.source.to_string()).increment(1);
    }
}

/// A file the topology finished, with its ledger status.
pub struct FileProcessed<'a> {
    pub client: &'a str,
    pub category: &'a str,
    pub status: &'a str,
}

impl FileProcessed<'_> {
    pub fn emit(self) {
        counter!("credstream_files_processed_total", "client" => self.client.to_string(), "category" => self.category.to_string(), "status" => self.status.to_string()).increment(1);
    }
}

/// An arrival of bytes already processed.
pub struct FileDuplicate<'a> {
    pub client: &'a str,
}

impl FileDuplicate<'_> {
    pub fn emit(self) {
        counter!("credstream_files_duplicate_total", "client" => self.client.to_string())
            .increment(1);
    }
}

/// A logical file's current version replaced by a correction, and its records retracted.
pub struct FileSuperseded<'a> {
    pub client: &'a str,
    pub category: &'a str,
    pub records_retracted: u64,
}

impl FileSuperseded<'_> {
    pub fn emit(self) {
        counter!("credstream_files_superseded_total", "client" => self.client.to_string(), "category" => self.category.to_string()).increment(1);
        counter!("credstream_records_retracted_total", "client" => self.client.to_string(), "category" => self.category.to_string()).increment(self.records_retracted);
    }
}

/// An SFTP server presented a host key other than the pinned one.
pub struct SftpHostKeyMismatch<'a> {
    pub source: &'a str,
}

impl SftpHostKeyMismatch<'_> {
    pub fn emit(self) {
        counter!("credstream_sftp_host_key_mismatch_total", "source" => self.source.to_string())
            .increment(1);
    }
}

/// One raw store put: `stored` when the bytes were written, `present` when an object with
/// the same digest was already there.
pub struct RawStorePut<'a> {
    pub backend: &'a str,
    pub outcome: &'a str,
}

impl RawStorePut<'_> {
    pub fn emit(self) {
        counter!("credstream_raw_store_puts_total", "backend" => self.backend.to_string(), "outcome" => self.outcome.to_string()).increment(1);
    }
}

/// A raw store request failed (`op`: put, get, head).
pub struct RawStoreFailure<'a> {
    pub backend: &'a str,
    pub op: &'a str,
}

impl RawStoreFailure<'_> {
    pub fn emit(self) {
        counter!("credstream_raw_store_errors_total", "backend" => self.backend.to_string(), "op" => self.op.to_string()).increment(1);
    }
}

/// An emitted file was moved to the source's done folder.
pub struct FileMovedToDone<'a> {
    pub source: &'a str,
}

impl FileMovedToDone<'_> {
    pub fn emit(self) {
        counter!("credstream_files_moved_to_done_total", "source" => self.source.to_string())
            .increment(1);
    }
}

/// A file whose name cannot be taken safely (`reason`: e.g. `traversal`, `too_long`).
pub struct FileNameRefused<'a> {
    pub source: &'a str,
    pub reason: &'a str,
}

impl FileNameRefused<'_> {
    pub fn emit(self) {
        counter!("credstream_file_names_refused_total", "source" => self.source.to_string(), "reason" => self.reason.to_string()).increment(1);
    }
}

/// A file whose name states no logical identity although its category has them.
pub struct FileWithoutIdentity<'a> {
    pub client: &'a str,
    pub category: &'a str,
}

impl FileWithoutIdentity<'_> {
    pub fn emit(self) {
        counter!("credstream_files_without_identity_total", "client" => self.client.to_string(), "category" => self.category.to_string()).increment(1);
    }
}

/// A whole file held in quarantine.
pub struct FileQuarantined<'a> {
    pub client: &'a str,
    pub category: &'a str,
    pub class: &'a str,
}

impl FileQuarantined<'_> {
    pub fn emit(self) {
        counter!("credstream_files_quarantined_total", "client" => self.client.to_string(), "category" => self.category.to_string(), "class" => self.class.to_string()).increment(1);
    }
}

/// Records written to an output topic.
pub struct RecordsOut<'a> {
    pub client: &'a str,
    pub category: &'a str,
    pub count: u64,
}

impl RecordsOut<'_> {
    pub fn emit(self) {
        counter!("credstream_records_out_total", "client" => self.client.to_string(), "category" => self.category.to_string()).increment(self.count);
    }
}

/// Records sent to quarantine.
pub struct RecordsQuarantined<'a> {
    pub client: &'a str,
    pub category: &'a str,
    pub class: &'a str,
    pub count: u64,
}

impl RecordsQuarantined<'_> {
    pub fn emit(self) {
        counter!("credstream_records_quarantined_total", "client" => self.client.to_string(), "category" => self.category.to_string(), "class" => self.class.to_string()).increment(self.count);
    }
}

/// A failed schema-registry call.
pub struct RegistryError {
    pub retriable: bool,
}

impl RegistryError {
    pub fn emit(self) {
        counter!("credstream_registry_errors_total", "retriable" => self.retriable.to_string())
            .increment(1);
    }
}

/// A failed Kafka operation.
pub struct KafkaError<'a> {
    pub op: &'a str,
}

impl KafkaError<'_> {
    pub fn emit(self) {
        counter!("credstream_kafka_errors_total", "op" => self.op.to_string()).increment(1);
    }
}

/// An input record retried after an outside system failed.
pub struct ProcessingRetry {}

impl ProcessingRetry {
    pub fn emit(self) {
        counter!("credstream_processing_retries_total").increment(1);
    }
}

/// Changelog records applied to a store during restore.
pub struct RestoreProgress<'a> {
    pub store: &'a str,
    pub records: u64,
}

impl RestoreProgress<'_> {
    pub fn emit(self) {
        counter!("credstream_restore_records_total", "store" => self.store.to_string())
            .increment(self.records);
    }
}

/// Changelog records left to restore for one store partition.
pub struct RestoreRemaining<'a> {
    pub store: &'a str,
    pub partition: i32,
    pub records: i64,
}

impl RestoreRemaining<'_> {
    pub fn emit(self) {
        gauge!("credstream_restore_remaining_records", "store" => self.store.to_string(), "partition" => self.partition.to_string()).set(self.records as f64);
    }
}

/// A zombie's changelog write skipped by a reader.
pub struct FencedWriteIgnored<'a> {
    pub store: &'a str,
}

impl FencedWriteIgnored<'_> {
    pub fn emit(self) {
        counter!("credstream_fenced_writes_ignored_total", "store" => self.store.to_string())
            .increment(1);
    }
}

/// A chunk of a unit's store writes applied before the unit commits.
pub struct WritesSpilled {
    pub writes: usize,
}

impl WritesSpilled {
    pub fn emit(self) {
        counter!("credstream_store_writes_spilled_total").increment(self.writes as u64);
    }
}

/// A task opened.
pub struct TaskOpened {}

impl TaskOpened {
    pub fn emit(self) {
        counter!("credstream_tasks_opened_total").increment(1);
    }
}

/// A task lost to another replica.
pub struct TaskFenced {}

impl TaskFenced {
    pub fn emit(self) {
        counter!("credstream_tasks_lost_total").increment(1);
    }
}

/// Tasks held now.
pub struct Tasks {
    pub active: usize,
    pub standby: usize,
}

impl Tasks {
    pub fn emit(self) {
        gauge!("credstream_tasks", "kind" => "active").set(self.active as f64);
        gauge!("credstream_tasks", "kind" => "standby").set(self.standby as f64);
    }
}

/// How far a standby is behind its changelogs.
pub struct StandbyLag {
    pub partition: i32,
    pub records: i64,
}

impl StandbyLag {
    pub fn emit(self) {
        gauge!("credstream_standby_lag_records", "partition" => self.partition.to_string())
            .set(self.records as f64);
    }
}

/// An exactly-once transaction's outcome.
pub struct Transaction<'a> {
    pub outcome: &'a str,
}

impl Transaction<'_> {
    pub fn emit(self) {
        counter!("credstream_transactions_total", "outcome" => self.outcome.to_string())
            .increment(1);
    }
}

/// Data records read from one file.
pub struct RecordsIn<'a> {
    pub client: &'a str,
    pub category: &'a str,
    pub count: u64,
}

impl RecordsIn<'_> {
    pub fn emit(self) {
        counter!("credstream_records_in_total", "client" => self.client.to_string(), "category" => self.category.to_string()).increment(self.count);
    }
}

/// A file became queryable: its ledger entry is written, `seconds` after the poller found
/// it stable.
pub struct FileLatency<'a> {
    pub category: &'a str,
    pub seconds: f64,
}

impl FileLatency<'_> {
    pub fn emit(self) {
        histogram!("credstream_file_latency_seconds", "category" => self.category.to_string())
            .record(self.seconds);
    }
}

/// Arrival records an owned input partition is behind.
pub struct ConsumerLag {
    pub partition: i32,
    pub records: i64,
}

impl ConsumerLag {
    pub fn emit(self) {
        gauge!("credstream_consumer_lag_records", "partition" => self.partition.to_string())
            .set(self.records as f64);
    }
}

/// How old a replica's last publication is, as seen here.
pub struct ReplicaHeartbeatAge<'a> {
    pub replica: &'a str,
    pub seconds: f64,
}

impl ReplicaHeartbeatAge<'_> {
    pub fn emit(self) {
        gauge!("credstream_replica_heartbeat_age_seconds", "replica" => self.replica.to_string())
            .set(self.seconds);
    }
}

/// Input partitions without a live owner.
pub struct PartitionsUnowned {
    pub count: usize,
}

impl PartitionsUnowned {
    pub fn emit(self) {
        gauge!("credstream_partitions_unowned").set(self.count as f64);
    }
}

/// A query API request answered.
pub struct QueryServed<'a> {
    /// The route's template, e.g. `/v1/views/{view}/{key}`: bounded cardinality.
    pub route: &'a str,
    pub status: u16,
    pub seconds: f64,
}

impl QueryServed<'_> {
    pub fn emit(self) {
        let class = format!("{}xx", self.status / 100);
        histogram!("credstream_query_duration_seconds", "route" => self.route.to_string(), "status" => class)
            .record(self.seconds);
    }
}

/// A query read sent to another replica.
pub struct QueryForwarded<'a> {
    pub outcome: &'a str,
}

impl QueryForwarded<'_> {
    pub fn emit(self) {
        counter!("credstream_query_forwards_total", "outcome" => self.outcome.to_string())
            .increment(1);
    }
}

/// A query request refused by authentication or scope.
pub struct QueryDenied<'a> {
    pub reason: &'a str,
}

impl QueryDenied<'_> {
    pub fn emit(self) {
        counter!("credstream_query_denied_total", "reason" => self.reason.to_string()).increment(1);
    }
}

/// An expected delivery's schedule and what has arrived: the latest passed cutoff, the
/// window before it, and when its latest accepted file was processed (if any).
pub struct ExpectedDelivery<'a> {
    pub client: &'a str,
    pub category: &'a str,
    pub deadline_s: i64,
    pub window_s: i64,
    pub last_accepted_s: Option<i64>,
}

impl ExpectedDelivery<'_> {
    pub fn emit(self) {
        let labels = [
            ("client", self.client.to_string()),
            ("category", self.category.to_string()),
        ];
        gauge!(
            "credstream_expected_file_deadline_timestamp_seconds",
            &labels
        )
        .set(self.deadline_s as f64);
        gauge!("credstream_expected_file_window_seconds", &labels).set(self.window_s as f64);
        if let Some(at) = self.last_accepted_s {
            gauge!("credstream_file_last_accepted_timestamp_seconds", &labels).set(at as f64);
        }
    }
}
