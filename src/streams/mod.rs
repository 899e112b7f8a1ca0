//! The stream-processing runtime, in the spirit of Kafka Streams: a [`Topology`] of one
//! source topic, a [`Processor`], named state stores and output topics, run as one task per
//! input partition by consumer-group replicas.
//!
//! # Delivery (at least once)
//! For each input record the runtime:
//! 1. runs the processor, which reads stores, stages store writes and sends outputs;
//! 2. waits until every output is acknowledged by the broker;
//! 3. only then sends the staged store writes to the stores' changelog topics, and waits for
//!    those acknowledgements;
//! 4. applies the writes to the local RocksDB store, atomically with the new changelog
//!    checkpoint;
//! 5. commits the input offset.
//!
//! A crash anywhere replays the input record. Because outputs are acknowledged before the
//! state that says "done" exists anywhere, a replay never finds state claiming work whose
//! outputs were lost. Output keys are deterministic, so replayed outputs overwrite
//! themselves for key-based consumers; the count of duplicate deliveries is what
//! at-least-once costs downstream.
//!
//! Architecture Invariant: this module knows nothing of credit data, files or Avro. Stores
//! are caches of their changelogs: deleting the state directory loses nothing.

mod admin;
mod producer;
mod runtime;
mod store;

pub use admin::{TopicSpec, ensure_topics};
pub use producer::{Batch, OutputProducer};
pub use runtime::{RuntimeSettings, RuntimeStatus, StreamsRuntime, changelog_topic};
pub use store::{StoreRegistry, StoreWrites};

use crate::ErrorKind;

/// Runtime errors.
#[derive(Debug, thiserror::Error)]
pub enum StreamsError {
    #[error("kafka {op}: {source}")]
    Kafka {
        op: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("state store {store}: {source}")]
    Store {
        store: String,
        #[source]
        source: rocksdb::Error,
    },
    #[error("topic {topic}: {message}")]
    Topic { topic: String, message: String },
    #[error("restoring {store} partition {partition}: {message}")]
    Restore {
        store: String,
        partition: i32,
        message: String,
    },
    #[error("{0}")]
    Shutdown(&'static str),
}

impl StreamsError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StreamsError::Kafka { .. } | StreamsError::Restore { .. } => ErrorKind::External,
            StreamsError::Store { .. } => ErrorKind::Internal,
            StreamsError::Topic { .. } => ErrorKind::Config,
            StreamsError::Shutdown(_) => ErrorKind::External,
        }
    }

    pub(crate) fn kafka(op: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        StreamsError::Kafka {
            op: op.into(),
            source,
        }
    }
}

/// What a topology is made of. The processor is created once per task (input partition).
pub struct Topology {
    /// Name, for logs and `topology describe`.
    pub name: String,
    /// The input topic.
    pub source: String,
    /// Names of the state stores each task has; each is backed by the compacted changelog
    /// `<application id>-<store>-changelog`.
    pub stores: Vec<String>,
    /// Topics the processor may send to.
    pub sinks: Vec<String>,
    /// Creates the processor of one task.
    pub processor: Box<dyn Fn(i32) -> Box<dyn Processor> + Send + Sync>,
}

/// One input record.
#[derive(Clone, Debug)]
pub struct InputRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// The processing logic of a topology.
///
/// Errors are classified by [`crate::Error::kind`]: an `External` error makes the runtime
/// retry the record after a backoff (outputs already sent are re-sent under the same keys);
/// any other error stops the task loudly. Bad data is not an error here: the processor
/// routes it (to a quarantine topic, say) and returns `Ok`.
#[async_trait::async_trait]
pub trait Processor: Send {
    async fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        record: &InputRecord,
    ) -> Result<(), crate::Error>;
}

/// What a processor can do while handling one record: read and stage writes to its task's
/// stores, and send records to sinks.
pub struct ProcessorContext<'a> {
    pub(crate) partition: i32,
    pub(crate) writes: &'a mut StoreWrites,
    pub(crate) producer: &'a OutputProducer,
    pub(crate) batch: &'a Batch,
}

impl ProcessorContext<'_> {
    /// The task's partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Reads `key` from `store`, seeing this record's own staged writes first.
    pub fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, crate::Error> {
        Ok(self.writes.get(store, key)?)
    }

    /// Stages a write; it reaches the changelog and the store only after every output of
    /// this record is acknowledged.
    pub fn put(&mut self, store: &str, key: &[u8], value: &[u8]) {
        self.writes.put(store, key, Some(value));
    }

    /// Stages a delete.
    pub fn delete(&mut self, store: &str, key: &[u8]) {
        self.writes.put(store, key, None);
    }

    /// Sends a record to `topic`, partitioned by key. Returns once it is queued; the
    /// runtime waits for every acknowledgement before it commits.
    pub async fn send(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), crate::Error> {
        Ok(self
            .producer
            .send(self.batch, topic, None, key, Some(value))
            .await?)
    }

    /// [`Self::send`] for synchronous code running under `tokio::task::block_in_place`,
    /// such as a parser's per-record callback: no await per record.
    pub fn send_blocking(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), crate::Error> {
        Ok(self
            .producer
            .send_blocking(self.batch, topic, None, key, Some(value))?)
    }
}
