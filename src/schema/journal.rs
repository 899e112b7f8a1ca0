//! The `_schemas` topic: where the embedded registry keeps its state.
//!
//! A reader thread follows the topic from its beginning and folds every record into the
//! shared [`RegistryState`]; a write produces a record, then waits until the reader has
//! applied it, so a registry answers a write only with what the log decided (read your
//! own writes), and every replica converges on the same state.
//!
//! Architecture Invariant: nothing changes the state except the reader thread applying
//! the log in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::state::RegistryState;
use crate::streams::{StreamsError, TopicSpec, ensure_topics};

/// The topic Confluent's registry uses too.
pub const SCHEMAS_TOPIC: &str = "_schemas";

/// How long a write waits for the log to apply it before answering with an error.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A write that did not reach the log, or was not read back in time.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("writing to {topic} failed: {message}")]
    Write { topic: String, message: String },
    #[error("the registry did not read its own write back within {0:?}")]
    Timeout(Duration),
}

/// The `_schemas` topic, read into a [`RegistryState`].
pub struct Journal {
    topic: String,
    producer: FutureProducer,
    state: Arc<RwLock<RegistryState>>,
    /// The next offset the reader will apply.
    applied: watch::Receiver<i64>,
    stop: Arc<AtomicBool>,
}

impl Journal {
    /// Creates the topic if it is missing (one partition, compacted), then reads it to
    /// its end before returning, so the first answer is already current.
    pub async fn open(
        client: &ClientConfig,
        topic: &str,
        create: bool,
        replication_factor: i32,
    ) -> Result<Journal, StreamsError> {
        ensure_topics(
            client,
            &[TopicSpec {
                name: topic.to_string(),
                partitions: 1,
                replication_factor,
                compacted: true,
                exact_partitions: false,
            }],
            create,
        )
        .await?;
        let producer: FutureProducer = client
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .map_err(|e| StreamsError::kafka("create the _schemas producer", e))?;
        let reader = client.clone();
        let t = topic.to_string();
        let (consumer, end) = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = reader
                .clone()
                .set("group.id", "credstream-registry-reader")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("isolation.level", "read_committed")
                .create()
                .map_err(|e| StreamsError::kafka("create the _schemas reader", e))?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&t, 0, Offset::Beginning)
                .map_err(|e| StreamsError::kafka("_schemas assignment", e))?;
            consumer
                .assign(&tpl)
                .map_err(|e| StreamsError::kafka("assign the _schemas reader", e))?;
            let (_, end) = consumer
                .fetch_watermarks(&t, 0, Duration::from_secs(10))
                .map_err(|e| StreamsError::kafka("read the end of _schemas", e))?;
            Ok::<_, StreamsError>((consumer, end))
        })
        .await
        .expect("the reader set-up does not panic")?;
        let state = Arc::new(RwLock::new(RegistryState::default()));
        let (tx, applied) = watch::channel(0i64);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let state = state.clone();
            let stop = stop.clone();
            let name = topic.to_string();
            std::thread::Builder::new()
                .name("registry-log".into())
                .spawn(move || read_log(consumer, &name, &state, &tx, &stop))
                .map_err(|e| StreamsError::Topic {
                    topic: topic.to_string(),
                    message: format!("starting the reader thread: {e}"),
                })?;
        }
        let journal = Journal {
            topic: topic.to_string(),
            producer,
            state,
            applied,
            stop,
        };
        journal
            .wait_applied(end - 1, Duration::from_secs(120))
            .await
            .map_err(|e| StreamsError::Topic {
                topic: topic.to_string(),
                message: e.to_string(),
            })?;
        tracing::info!(topic, records = end, "schema registry state read");
        Ok(journal)
    }

    pub fn state(&self) -> &Arc<RwLock<RegistryState>> {
        &self.state
    }

    /// Appends a record and waits until the reader has applied it.
    pub async fn write(&self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), JournalError> {
        let mut record = FutureRecord::<Vec<u8>, Vec<u8>>::to(&self.topic)
            .key(&key)
            .partition(0);
        if let Some(v) = value.as_ref() {
            record = record.payload(v);
        }
        let delivery = self
            .producer
            .send(record, WRITE_TIMEOUT)
            .await
            .map_err(|(e, _)| JournalError::Write {
                topic: self.topic.clone(),
                message: e.to_string(),
            })?;
        self.wait_applied(delivery.offset, WRITE_TIMEOUT).await
    }

    /// Waits until everything written to the log so far (by any replica) is applied, so
    /// an answer reflects other replicas' writes too.
    pub async fn sync(&self) -> Result<(), JournalError> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let (_, end) = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        })
        .await
        .expect("fetching watermarks does not panic")
        .map_err(|e| JournalError::Write {
            topic: self.topic.clone(),
            message: format!("reading the end of the log: {e}"),
        })?;
        self.wait_applied(end - 1, WRITE_TIMEOUT).await
    }

    /// Waits until the record at `offset` has been applied (nothing to wait for if < 0).
    async fn wait_applied(&self, offset: i64, within: Duration) -> Result<(), JournalError> {
        let mut applied = self.applied.clone();
        tokio::time::timeout(within, applied.wait_for(|next| *next > offset))
            .await
            .map_err(|_| JournalError::Timeout(within))?
            .map(|_| ())
            .map_err(|_| JournalError::Timeout(within))
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The reader thread: applies records in order and publishes the next offset.
fn read_log(
    consumer: BaseConsumer,
    topic: &str,
    state: &RwLock<RegistryState>,
    applied: &watch::Sender<i64>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if let Some(key) = m.key() {
                    let mut s = state.write().expect("registry state lock");
                    let before = s.unreadable;
                    s.apply(key, m.payload());
                    if s.unreadable > before {
                        tracing::warn!(
                            topic,
                            offset = m.offset(),
                            "unreadable registry record skipped"
                        );
                    }
                }
                applied.send_replace(m.offset() + 1);
            }
            Some(Err(e)) => {
                crate::metrics::KafkaError { op: "registry log" }.emit();
                tracing::warn!(topic, error = %e, "reading the registry log failed; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            None => {}
        }
    }
}
