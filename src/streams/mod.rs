//! The stream-processing runtime, in the spirit of Kafka Streams: a [`Topology`] of one
//! source topic, a [`Processor`], named state stores and output topics, run as one task per
//! input partition by the replicas of a consumer group.
//!
//! # Processing guarantees
//!
//! Each input record is one unit of work: the processor reads its task's stores, stages
//! store writes and sends output records.
//!
//! **`at_least_once`** (default). The runtime waits until every output is acknowledged,
//! then sends the staged writes to the stores' changelogs and waits for those, then applies
//! them to the local store with the new changelog checkpoint in one atomic batch, and only
//! then commits the input offset. A crash anywhere replays the record. Because outputs are
//! acknowledged before any state saying "done" exists, a replay never skips work whose
//! outputs were lost. What downstream consumers see: every output record at least once;
//! after a crash some records again, under the same key (keys are deterministic), so
//! consumers that keep the latest value per key see each exactly once. Processors must
//! make state writes idempotent upserts (keyed by what they describe, never increments),
//! so a replay never double-counts a view.
//!
//! **`exactly_once`**. Each task has its own transactional producer
//! (`transactional.id = <application id>-task-<partition>`). Outputs, changelog writes and
//! the input offset go in one Kafka transaction per input record; the local store is
//! updated after the commit. A zombie owner is fenced by the broker when the new owner
//! initialises the same transactional id. After an error whose outcome is unknown (a commit
//! that timed out), the producer is re-created and the committed offset tells whether the
//! transaction landed. What downstream consumers see: with `isolation.level =
//! read_committed`, each output record exactly once; uncommitted consumers may see
//! records of aborted transactions. (Tansu 0.6.0 does not implement `EndTxn`, so this mode
//! needs a broker that does: Kafka, Redpanda, MSK.)
//!
//! In both modes a task that opens writes a fence marker to its changelogs first (see
//! [`changelog`]), so writes of a replica that lost the partition are ignored by every
//! reader, and offset commits of such a replica are refused by the group coordinator.
//!
//! Architecture Invariant: this module knows nothing of credit data, files or Avro. Stores
//! are caches of their changelogs: deleting the state directory loses nothing.

mod admin;
pub mod changelog;
mod describe;
mod membership;
mod partitioner;
mod producer;
mod runtime;
mod standby;
mod store;
mod task;

pub use admin::{TopicSpec, ensure_topics, topic_partitions};
pub use describe::{DescribeFormat, describe};
pub use membership::{ActiveClaim, ReplicaInfo, StreamsMetadata};
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{Batch, Outgoing, OutputProducer};
pub use runtime::{
    RuntimeSettings, RuntimeStatus, StreamsRuntime, changelog_topic, replicas_topic,
};
pub use store::{Entries, StoreRegistry, StoreWrites, TaskDb};
pub use task::restore;

use std::time::Duration;

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
    #[error("task {partition} was fenced: another replica owns it now ({reason})")]
    Fenced { partition: i32, reason: String },
    #[error("state directory {path}: {source}")]
    StateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Shutdown(&'static str),
}

impl StreamsError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StreamsError::Kafka { .. }
            | StreamsError::Restore { .. }
            | StreamsError::Fenced { .. }
            | StreamsError::StateDir { .. }
            | StreamsError::Shutdown(_) => ErrorKind::External,
            StreamsError::Store { .. } => ErrorKind::Internal,
            StreamsError::Topic { .. } => ErrorKind::Config,
        }
    }

    pub(crate) fn kafka(op: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        StreamsError::Kafka {
            op: op.into(),
            source,
        }
    }
}

/// How records are processed; see the module documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingGuarantee {
    #[default]
    AtLeastOnce,
    ExactlyOnce,
}

/// The static shape of a topology: what `topology describe` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyShape {
    /// Name, for logs and descriptions.
    pub name: String,
    /// The input topic.
    pub source: String,
    /// Name of the processor.
    pub processor: String,
    /// Names of the state stores each task has; each is backed by the compacted changelog
    /// `<application id>-<store>-changelog`.
    pub stores: Vec<String>,
    /// Topics the processor may send to.
    pub sinks: Vec<String>,
}

/// Which partition a store key belongs to, if the topology can tell from the key.
pub type KeyPartitioner = Box<dyn Fn(&str, &[u8], i32) -> Option<i32> + Send + Sync>;

/// A runnable topology: its shape, and a factory for each task's processor.
pub struct Topology {
    pub shape: TopologyShape,
    /// Creates the processor of one task.
    pub processor: Box<dyn Fn(i32) -> Box<dyn Processor> + Send + Sync>,
    /// Maps `(store, key, partitions)` to the key's partition, for interactive queries.
    pub partition_of: KeyPartitioner,
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

/// What drives a punctuation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PunctuationType {
    /// The machine's clock: fires even when no records arrive (e.g. "an expected file has
    /// not arrived by its cutoff").
    WallClock,
    /// The task's stream time, the largest record timestamp it has seen: fires as data
    /// moves time forward, and deterministically on replay.
    StreamTime,
}

/// A periodic call of [`Processor::punctuate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Punctuation {
    pub kind: PunctuationType,
    pub interval: Duration,
}

/// The processing logic of a topology. One instance per task.
///
/// Errors are classified by [`crate::Error::kind`]: an `External` error makes the runtime
/// retry the record after a backoff (outputs already sent are re-sent under the same keys);
/// any other error stops the runtime loudly. Bad data is not an error here: the processor
/// routes it (to a quarantine topic, say) and returns `Ok`.
#[async_trait::async_trait]
pub trait Processor: Send {
    /// Handles one input record.
    async fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        record: &InputRecord,
    ) -> Result<(), crate::Error>;

    /// Punctuations this processor wants; none by default.
    fn punctuations(&self) -> Vec<Punctuation> {
        Vec::new()
    }

    /// Called when a punctuation is due, with the wall-clock or stream time it is due at.
    /// Its writes and sends are committed like a record's.
    async fn punctuate(
        &mut self,
        _ctx: &mut ProcessorContext<'_>,
        _kind: PunctuationType,
        _time_ms: i64,
    ) -> Result<(), crate::Error> {
        Ok(())
    }
}

/// What a processor can do while handling one record: read and stage writes to its task's
/// stores, and send records to sinks.
pub struct ProcessorContext<'a> {
    pub(crate) partition: i32,
    pub(crate) writes: &'a mut StoreWrites,
    pub(crate) producer: &'a OutputProducer,
    pub(crate) batch: &'a Batch,
    pub(crate) changelog: &'a mut task::UnitChangelog,
}

impl ProcessorContext<'_> {
    /// The task's partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Reads `key` from `store`, seeing this unit's own staged writes first.
    pub fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, crate::Error> {
        Ok(self.writes.get(store, key)?)
    }

    /// Entries of `store` with `prefix`, in key order (staged writes not included).
    pub fn scan(&self, store: &str, prefix: &[u8], limit: usize) -> Result<Entries, crate::Error> {
        self.scan_from(store, prefix, None, limit)
    }

    /// [`Self::scan`] from `start` (inclusive) on, for reading a large range a page at a
    /// time.
    pub fn scan_from(
        &self,
        store: &str,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, crate::Error> {
        Ok(self.writes.applied().scan(store, prefix, start, limit)?)
    }

    /// This unit's staged write of `key`, if it staged one (`Some(None)`: a delete).
    pub fn staged(&self, store: &str, key: &[u8]) -> Option<Option<&[u8]>> {
        self.writes.staged_value(store, key)
    }

    /// Stages a write; it reaches the changelog and the store when the unit commits.
    pub fn put(&mut self, store: &str, key: &[u8], value: &[u8]) {
        self.writes.put(store, key, Some(value));
    }

    /// Stages a delete.
    pub fn delete(&mut self, store: &str, key: &[u8]) {
        self.writes.put(store, key, None);
    }

    /// Writes staged so far.
    pub fn staged_writes(&self) -> usize {
        self.writes.len()
    }

    /// Sends the writes staged so far to their changelogs and applies them to the stores
    /// now, rather than when the unit commits: for a unit too large to hold whole (a
    /// snapshot of millions of accounts). Blocking; call it under `block_in_place`.
    ///
    /// Readers see these writes before the unit commits. If the unit then fails, it is
    /// processed again from the start, and its writes, upserts under the same keys, land
    /// again; a processor that spills must compute the same writes when it runs again
    /// over state that holds some of them already.
    pub fn spill(&mut self) -> Result<(), crate::Error> {
        let writes = self.writes.len();
        self.changelog.send_staged(self.producer, self.writes)?;
        self.writes.apply_now()?;
        crate::metrics::WritesSpilled { writes }.emit();
        Ok(())
    }

    /// Sends a record to `topic`, partitioned by key. Returns once it is queued; the
    /// runtime waits for every acknowledgement before it commits.
    pub async fn send(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), crate::Error> {
        Ok(self
            .producer
            .send(self.batch, outgoing(topic, key, value))
            .await?)
    }

    /// [`Self::send`] for synchronous code running under `tokio::task::block_in_place`,
    /// such as a parser's per-record callback: no await per record.
    pub fn send_blocking(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), crate::Error> {
        Ok(self
            .producer
            .send_blocking(self.batch, outgoing(topic, key, value))?)
    }
}

impl ProcessorContext<'_> {
    /// Sends a tombstone for `key` (a retraction: the record under the key is void) with
    /// one header saying why, from synchronous code like [`Self::send_blocking`].
    pub fn retract_blocking(
        &self,
        topic: &str,
        key: &[u8],
        header: (&str, &[u8]),
    ) -> Result<(), crate::Error> {
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: header.0,
            value: Some(header.1),
        });
        Ok(self.producer.send_blocking(
            self.batch,
            Outgoing {
                topic,
                partition: None,
                key,
                value: None,
                headers: Some(headers),
            },
        )?)
    }
}

fn outgoing<'a>(topic: &'a str, key: &'a [u8], value: &'a [u8]) -> Outgoing<'a> {
    Outgoing {
        topic,
        partition: None,
        key,
        value: Some(value),
        headers: None,
    }
}
