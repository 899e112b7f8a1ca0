//! One producer for every output, changelog and ledger record, with acknowledgements
//! counted per [`Batch`] instead of a future per record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::StreamsError;

type Record<'a> = BaseRecord<'a, [u8], [u8], Arc<BatchState>>;

/// How long to wait for room when librdkafka's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(2);

/// Acknowledgements of a group of sends: how many are outstanding, the first failure, and
/// the highest offset written per `(topic, partition)`.
#[derive(Clone, Default)]
pub struct Batch {
    state: Arc<BatchState>,
}

#[derive(Default)]
pub struct BatchState {
    pending: AtomicU64,
    sent: AtomicU64,
    failure: Mutex<Option<KafkaError>>,
    /// `(topic, partition, highest offset)`: a batch writes to a handful of partitions, so
    /// a short list, searched without allocating, for one report per record.
    offsets: Mutex<Vec<(String, i32, i64)>>,
    done: tokio::sync::Notify,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Records sent in this batch so far.
    pub fn sent(&self) -> u64 {
        self.state.sent.load(Ordering::Acquire)
    }

    /// Waits for every send of the batch; fails with the first delivery error.
    pub async fn wait(&self) -> Result<(), StreamsError> {
        loop {
            let notified = self.state.done.notified();
            tokio::pin!(notified);
            // Register before checking, so a completion in between is not missed.
            notified.as_mut().enable();
            if self.state.pending.load(Ordering::Acquire) == 0 {
                break;
            }
            notified.await;
        }
        match self.state.failure.lock().expect("batch lock").take() {
            Some(e) => Err(StreamsError::kafka("delivery", e)),
            None => Ok(()),
        }
    }

    /// The highest acknowledged offset per `(topic, partition)`.
    pub fn offsets(&self) -> HashMap<(String, i32), i64> {
        self.state
            .offsets
            .lock()
            .expect("batch lock")
            .iter()
            .map(|(topic, partition, offset)| ((topic.clone(), *partition), *offset))
            .collect()
    }
}

impl BatchState {
    fn complete(&self, result: &DeliveryResult<'_>) {
        match result {
            Ok(msg) => {
                let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
                let mut offsets = self.offsets.lock().expect("batch lock");
                match offsets
                    .iter_mut()
                    .find(|(t, p, _)| *p == partition && t == topic)
                {
                    Some((_, _, highest)) => *highest = (*highest).max(offset),
                    None => offsets.push((topic.to_string(), partition, offset)),
                }
            }
            Err((e, _)) => {
                self.failure
                    .lock()
                    .expect("batch lock")
                    .get_or_insert_with(|| e.clone());
            }
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_waiters();
        }
    }
}

/// Routes each delivery report to its batch.
pub struct DeliveryRouter;

impl ClientContext for DeliveryRouter {}

impl ProducerContext for DeliveryRouter {
    type DeliveryOpaque = Arc<BatchState>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Self::DeliveryOpaque) {
        batch.complete(result);
    }
}

/// The runtime's producer.
#[derive(Clone)]
pub struct OutputProducer {
    inner: ThreadedProducer<DeliveryRouter>,
    transactional: bool,
}

/// How long a transaction call may take before its outcome counts as unknown.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a record to send consists of, besides its batch.
pub struct Outgoing<'a> {
    pub topic: &'a str,
    /// `None`: by key, with the producer's partitioner.
    pub partition: Option<i32>,
    pub key: &'a [u8],
    /// `None`: a tombstone.
    pub value: Option<&'a [u8]>,
    pub headers: Option<OwnedHeaders>,
}

impl OutputProducer {
    /// A producer with the settings at-least-once needs: every in-sync replica acknowledges,
    /// retries are idempotent (no duplicates or reordering from the producer itself), and
    /// keys are partitioned as the Java client does (murmur2), so downstream Kafka Streams
    /// applications can co-partition with our topics.
    pub fn new(base: &ClientConfig) -> Result<OutputProducer, StreamsError> {
        let inner = Self::config(base)
            .create_with_context(DeliveryRouter)
            .map_err(|e| StreamsError::kafka("create producer", e))?;
        Ok(OutputProducer {
            inner,
            transactional: false,
        })
    }

    /// A transactional producer for one task (exactly-once). Initialising it fences any
    /// earlier producer with the same id (a zombie owner of the task) and aborts its open
    /// transaction. Blocks: call it off the async threads.
    pub fn transactional(
        base: &ClientConfig,
        transactional_id: &str,
    ) -> Result<OutputProducer, StreamsError> {
        let mut config = Self::config(base);
        config
            .set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", "60000");
        let inner: ThreadedProducer<DeliveryRouter> = config
            .create_with_context(DeliveryRouter)
            .map_err(|e| StreamsError::kafka("create transactional producer", e))?;
        inner.init_transactions(TXN_TIMEOUT).map_err(|e| {
            StreamsError::kafka(format!("init transactions of {transactional_id}"), e)
        })?;
        Ok(OutputProducer {
            inner,
            transactional: true,
        })
    }

    fn config(base: &ClientConfig) -> ClientConfig {
        let mut config = base.clone();
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("compression.type", "none");
        config
    }

    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    /// Starts a transaction.
    pub fn begin(&self) -> Result<(), KafkaError> {
        self.inner.begin_transaction()
    }

    /// Adds the consumer offsets to the open transaction.
    pub fn send_offsets(
        &self,
        offsets: &rdkafka::TopicPartitionList,
        group: &rdkafka::consumer::ConsumerGroupMetadata,
    ) -> Result<(), KafkaError> {
        self.inner
            .send_offsets_to_transaction(offsets, group, TXN_TIMEOUT)
    }

    /// Commits the open transaction (flushing it first). Blocks.
    pub fn commit(&self) -> Result<(), KafkaError> {
        self.inner.commit_transaction(TXN_TIMEOUT)
    }

    /// Aborts the open transaction. Blocks.
    pub fn abort(&self) -> Result<(), KafkaError> {
        self.inner.abort_transaction(TXN_TIMEOUT)
    }

    /// Queues one record in `batch`; waits only while librdkafka's queue is full.
    pub async fn send(&self, batch: &Batch, out: Outgoing<'_>) -> Result<(), StreamsError> {
        let topic = out.topic;
        let mut record = Some(self.record(batch, out));
        loop {
            match self.try_send(batch, topic, record.take().expect("a record to send"))? {
                None => return Ok(()),
                Some(back) => {
                    record = Some(back);
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
            }
        }
    }

    /// [`Self::send`] for synchronous code (a parser's record callback, run under
    /// `block_in_place`): blocks the thread while the queue is full instead of awaiting.
    pub fn send_blocking(&self, batch: &Batch, out: Outgoing<'_>) -> Result<(), StreamsError> {
        let topic = out.topic;
        let mut record = Some(self.record(batch, out));
        loop {
            match self.try_send(batch, topic, record.take().expect("a record to send"))? {
                None => return Ok(()),
                Some(back) => {
                    record = Some(back);
                    std::thread::sleep(QUEUE_FULL_WAIT);
                }
            }
        }
    }

    fn record<'a>(&self, batch: &Batch, out: Outgoing<'a>) -> Record<'a> {
        let mut record: Record<'a> =
            BaseRecord::with_opaque_to(out.topic, Arc::clone(&batch.state)).key(out.key);
        if let Some(value) = out.value {
            record = record.payload(value);
        }
        if let Some(p) = out.partition {
            record = record.partition(p);
        }
        if let Some(h) = out.headers {
            record = record.headers(h);
        }
        record
    }

    /// Queues `record`; gives it back when the queue is full.
    fn try_send<'a>(
        &self,
        batch: &Batch,
        topic: &str,
        record: Record<'a>,
    ) -> Result<Option<Record<'a>>, StreamsError> {
        // Counted before the send: its delivery report may come before `send` returns.
        batch.state.pending.fetch_add(1, Ordering::AcqRel);
        match self.inner.send(record) {
            Ok(()) => {
                batch.state.sent.fetch_add(1, Ordering::AcqRel);
                Ok(None)
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                batch.state.pending.fetch_sub(1, Ordering::AcqRel);
                Ok(Some(back))
            }
            Err((e, _)) => {
                batch.state.pending.fetch_sub(1, Ordering::AcqRel);
                Err(StreamsError::kafka(format!("send to {topic}"), e))
            }
        }
    }

    /// Sends everything queued (for shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), StreamsError> {
        self.inner
            .flush(timeout)
            .map_err(|e| StreamsError::kafka("flush", e))
    }
}
