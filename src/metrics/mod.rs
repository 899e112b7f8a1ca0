//! Metrics: one small struct per emitted event, so metric names and labels live in one
//! place and stay stable. Names follow `credstream_<name>_<unit>_total` for counters.
//!
//! Architecture Invariant: no other module calls the `metrics` macros directly.

use std::sync::OnceLock;

use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its handle, which
/// renders the text exposition for `/metrics`.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        "credstream_files_seen_total",
        "Files sighted in a landing area for the first time (or changed)."
    );
    describe_counter!(
        "credstream_files_emitted_total",
        "Stable files archived and emitted as arrivals."
    );
    describe_counter!(
        "credstream_poll_errors_total",
        "Failed listings or emits of a source; retried at the next poll."
    );
    describe_counter!(
        "credstream_files_processed_total",
        "Files processed by the topology, by resulting status."
    );
    describe_counter!(
        "credstream_sftp_host_key_mismatch_total",
        "SFTP connections refused because the server's host key differs from the pinned one."
    );
    describe_counter!(
        "credstream_raw_store_puts_total",
        "Raw store puts by outcome: stored (uploaded) or present (same digest already there)."
    );
    describe_counter!(
        "credstream_raw_store_errors_total",
        "Failed raw store requests (put, get, head), retried by the caller."
    );
    describe_counter!(
        "credstream_files_moved_to_done_total",
        "Emitted files moved to the source's move_to_done folder."
    );
    describe_counter!(
        "credstream_file_names_refused_total",
        "Files in a landing area whose names cannot be taken safely (left in place)."
    );
    describe_counter!(
        "credstream_files_superseded_total",
        "Logical files replaced as current by a correction (same identity, new bytes)."
    );
    describe_counter!(
        "credstream_records_retracted_total",
        "Output records retracted (tombstoned) because a correction superseded their file."
    );
    describe_counter!(
        "credstream_files_without_identity_total",
        "Files of a category with logical identities whose name states none: not in views or reports."
    );
    describe_counter!(
        "credstream_files_duplicate_total",
        "Arrivals whose bytes were already processed: audit event only."
    );
    describe_counter!(
        "credstream_files_quarantined_total",
        "Files held whole in quarantine, by drift class."
    );
    describe_counter!(
        "credstream_records_out_total",
        "Records written to output topics."
    );
    describe_counter!(
        "credstream_records_quarantined_total",
        "Records sent to the quarantine topic, by drift class."
    );
    describe_counter!(
        "credstream_registry_errors_total",
        "Failed schema-registry calls."
    );
    describe_counter!(
        "credstream_kafka_errors_total",
        "Failed Kafka operations, by operation."
    );
    describe_counter!(
        "credstream_processing_retries_total",
        "Input records retried after an outside system failed."
    );
    describe_counter!(
        "credstream_restore_records_total",
        "Changelog records applied while restoring stores or keeping standbys."
    );
    describe_gauge!(
        "credstream_restore_remaining_records",
        "Changelog records left to restore, per store partition."
    );
    describe_counter!(
        "credstream_fenced_writes_ignored_total",
        "Changelog writes of a replica that had lost the partition, ignored by readers."
    );
    describe_counter!(
        "credstream_tasks_opened_total",
        "Tasks opened (fenced and restored)."
    );
    describe_counter!(
        "credstream_tasks_lost_total",
        "Tasks stopped because another replica took them over."
    );
    describe_gauge!(
        "credstream_tasks",
        "Tasks held by this replica, by kind (active, standby)."
    );
    describe_gauge!(
        "credstream_standby_lag_records",
        "Changelog records a standby is behind, per partition."
    );
    describe_counter!(
        "credstream_transactions_total",
        "Exactly-once transactions, by outcome (committed, aborted, unknown)."
    );
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
