//! Avro contracts, the schema-registry client, and the embedded registry server.
//!
//! Every topic's value schema is an `.avsc` file in `avro/` ([`contracts`]). At start-up
//! each is registered under `<topic>-value` (TopicNameStrategy) and fetched back by id from
//! the registry; the schema the registry returns is the one records are written with
//! ([`Registry`]). Values go out in the Confluent wire format: `0x00`, a 4-byte big-endian
//! schema id, then the Avro body ([`Codec`]).
//!
//! Architecture Invariant: a registry outage delays processing; it never turns into
//! quarantined data. Client errors are `External` and retried with backoff.

mod client;
mod codec;
pub mod compat;
pub mod contracts;
pub mod journal;
mod row;
pub mod server;
pub mod state;

pub use client::{Registry, RegistryAuth, RegistrySettings};
pub use codec::{Codec, WIRE_MAGIC, decode_datum, split_wire};
pub use row::{FileProvenance, RowPlan, RowRef};

use crate::ErrorKind;

/// Schema and registry errors.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema registry at {url} failed: {message}")]
    Registry {
        url: String,
        message: String,
        retriable: bool,
    },
    #[error("invalid Avro schema {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("layout {layout} does not fit schema {schema}: {message}")]
    LayoutMismatch {
        layout: String,
        schema: String,
        message: String,
    },
    #[error("value does not fit schema {schema}: {message}")]
    Encode { schema: String, message: String },
    #[error("no contract named {0} in avro/")]
    UnknownContract(String),
    #[error("cannot read contracts from {dir}: {source}")]
    Read {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SchemaError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SchemaError::Registry {
                retriable: true, ..
            } => ErrorKind::External,
            // A registry that answers but refuses (invalid, incompatible) needs a person.
            SchemaError::Registry { .. } => ErrorKind::Config,
            SchemaError::Invalid { .. }
            | SchemaError::LayoutMismatch { .. }
            | SchemaError::UnknownContract(_)
            | SchemaError::Read { .. } => ErrorKind::Config,
            SchemaError::Encode { .. } => ErrorKind::Data,
        }
    }
}

/// The registry subject of a topic's values (TopicNameStrategy).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}
