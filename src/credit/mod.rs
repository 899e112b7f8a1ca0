//! The credit topology: for each file arrival, deduplicate by content, recognise the file's
//! category, parse it with the category's layout, write valid records to the category's
//! output topic and everything else to quarantine, and account for the file in the ledger.
//!
//! Stores (each backed by a compacted changelog):
//! - `dedup`: `<client id>/<sha256>` → the first arrival of those bytes;
//! - `ledger`: `<sha256>/<arrival id>` → the [`FileLedgerEntry`] of each arrival;
//! - `versions`, `accounts`, `balances`, `postings`: logical files and the views, see
//!   [`views`].
//!
//! Corrections: a file whose name states the same logical identity (client + category +
//! period + sequence) as an earlier one, with other bytes, is its next version. Once
//! accepted it is current: the previous version's output records are retracted
//! (tombstones under their keys), its ledger entry becomes SUPERSEDED, and its view
//! contributions are replaced in the same unit of work.
//!
//! Architecture Invariant: every data record of a file ends in exactly one place, an
//! output topic or quarantine, and the ledger's counts add up
//! (`records_in = records_out + records_quarantined`). Bad data never stops the topology;
//! only outside failures (retried) and bugs (loud) do.

mod arrivals;
mod processor;
pub mod records;
pub mod views;

pub use arrivals::KafkaArrivalSink;
pub use processor::{
    CreditTopology, DEDUP_STORE, LEDGER_STORE, QUARANTINE_STORE, QUARANTINE_VIEW_PER_FILE,
    RETRACTED_BY_HEADER, STORES, arrivals_topic, encode_record, planned_topics, shape, validate,
};
pub use records::{FileArrived, FileLedgerEntry, FileStatus, QuarantineRecord};

use crate::ErrorKind;

/// Credit topology errors.
#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    #[error("undecodable file arrival at partition {partition} offset {offset}: {message}")]
    BadArrival {
        partition: i32,
        offset: i64,
        message: String,
    },
    #[error("the reconciliation report cannot be made: {0}")]
    Report(String),
    #[error("corrupt {store} store value for {key}: {message}")]
    CorruptState {
        store: &'static str,
        key: String,
        message: String,
    },
}

impl CreditError {
    pub fn kind(&self) -> ErrorKind {
        // Both mean our own contract was broken: a bug to stop on, not data to quarantine.
        ErrorKind::Internal
    }
}
