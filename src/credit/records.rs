//! The fixed-shape records of the credit topology, mirroring `avro/*.avsc`. Field names and
//! order match the contracts; `serde` writes them straight to Avro.

use serde::{Deserialize, Serialize};

/// `avro/file_arrived.avsc`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileArrived {
    pub client_id: String,
    pub source: String,
    pub path: String,
    pub size: i64,
    pub mtime: i64,
    pub sha256: String,
    pub raw_key: String,
    pub detected_at: i64,
    /// Process the bytes again although they were seen before (`credstream replay`).
    #[serde(default)]
    pub replay: bool,
}

impl FileArrived {
    /// The file name: the last path segment.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// `FileStatus` in `avro/file_ledger_entry.avsc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FileStatus {
    /// Every record went to the output topic.
    Processed,
    /// Some records went to quarantine, the rest to the output topic.
    PartiallyQuarantined,
    /// The whole file is held in quarantine.
    Quarantined,
    /// The same bytes were processed before: audit event only.
    Duplicate,
    /// A later version of the same logical file replaced this one; its records were
    /// retracted from the output topic and the views.
    Superseded,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Processed => "PROCESSED",
            FileStatus::PartiallyQuarantined => "PARTIALLY_QUARANTINED",
            FileStatus::Quarantined => "QUARANTINED",
            FileStatus::Duplicate => "DUPLICATE",
            FileStatus::Superseded => "SUPERSEDED",
        }
    }
}

/// `avro/file_ledger_entry.avsc`: what happened to one arrival of a file. Also the value of
/// the `ledger` store (as JSON), which the query API serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLedgerEntry {
    pub arrival_id: String,
    pub client_id: String,
    pub category: Option<String>,
    pub file_path: String,
    pub file_sha256: String,
    pub raw_key: String,
    pub size: i64,
    pub status: FileStatus,
    pub reason: Option<String>,
    pub duplicate_of: Option<String>,
    pub records_in: i64,
    pub records_out: i64,
    pub records_quarantined: i64,
    pub layout_version: Option<i32>,
    pub schema_id: Option<i32>,
    pub arrived_at: i64,
    pub processed_at: i64,
    /// For a replay: the first arrival of these bytes, whose outcome this one supersedes.
    #[serde(default)]
    pub replay_of: Option<String>,
    /// The logical identity's period and sequence, when the name states them.
    #[serde(default)]
    pub period: Option<String>,
    #[serde(default)]
    pub sequence: Option<String>,
    /// Version of the logical file (1, 2, …).
    #[serde(default)]
    pub version: Option<i32>,
    /// SHA-256 of the version this one replaced as current.
    #[serde(default)]
    pub supersedes: Option<String>,
    /// SHA-256 of the version that replaced this one.
    #[serde(default)]
    pub superseded_by: Option<String>,
    /// The trailer's control totals as reconciled, name → decimal.
    #[serde(default)]
    pub trailer_totals: Option<std::collections::BTreeMap<String, String>>,
}

impl FileLedgerEntry {
    /// The ledger key: `<sha256>/<arrival id>`, so one file's arrivals sit together.
    pub fn key(&self) -> String {
        format!("{}/{}", self.file_sha256, self.arrival_id)
    }
}

/// `QuarantineScope` in `avro/quarantine_record.avsc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QuarantineScope {
    File,
    Record,
}

/// `avro/quarantine_record.avsc`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub scope: QuarantineScope,
    pub class: String,
    pub reason: String,
    pub field: Option<String>,
    pub expected: Option<String>,
    pub actual: Option<String>,
    pub client_id: String,
    pub category: Option<String>,
    pub file_sha256: String,
    pub raw_key: String,
    pub file_path: String,
    pub line: Option<i64>,
    pub byte_offset: Option<i64>,
    pub record_index: Option<i64>,
    pub records_affected: i64,
    pub excerpt: Option<String>,
    pub detected_at: i64,
}

impl QuarantineRecord {
    /// `<sha256>:<record index>` for a record, `<sha256>:file` for a whole file.
    pub fn key(&self) -> String {
        match self.record_index {
            Some(i) if self.scope == QuarantineScope::Record => format!("{}:{i}", self.file_sha256),
            _ => format!("{}:file", self.file_sha256),
        }
    }
}

/// Value of the `dedup` store, keyed `<client id>/<sha256>`: the first arrival of the bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupEntry {
    pub arrival_id: String,
    pub ledger_key: String,
    pub path: String,
}
