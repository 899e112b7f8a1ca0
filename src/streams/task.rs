//! An active task: one input partition's stores, processor and producer, how it opens
//! (fence, then restore), and how one unit of work commits under each guarantee.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::changelog::{self, ChangelogApplier};
use super::producer::{Batch, Outgoing, OutputProducer};
use super::runtime::changelog_topic;
use super::store::{StoreWrites, TaskDb};
use super::{
    InputRecord, ProcessingGuarantee, Processor, ProcessorContext, Punctuation, PunctuationType,
    StreamsError,
};

/// How often restore progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// A restore that makes no progress for this long fails (and is retried).
const RESTORE_STALL: Duration = Duration::from_secs(60);

/// What every task of a runtime shares.
pub(crate) struct TaskEnv {
    pub app_id: String,
    pub replica_id: String,
    pub client: ClientConfig,
    pub stores: Vec<String>,
    pub guarantee: ProcessingGuarantee,
    /// The shared idempotent producer (at-least-once outputs, markers, membership).
    pub shared: OutputProducer,
    /// Records applied by restores, for [`super::RuntimeStatus::restored_records`].
    pub restored: Arc<std::sync::atomic::AtomicU64>,
}

/// One unit of work.
#[derive(Clone, Copy)]
pub(crate) enum Work<'a> {
    Record(&'a InputRecord),
    Punctuate(PunctuationType, i64),
}

struct Schedule {
    punctuation: Punctuation,
    next_ms: Option<i64>,
}

/// An active task.
pub(crate) struct Task {
    pub partition: i32,
    pub db: Arc<TaskDb>,
    /// Offset of this incarnation's fence marker in the first store's changelog.
    pub fence_offset: i64,
    owner: u64,
    processor: Box<dyn Processor>,
    producer: OutputProducer,
    stream_time: Option<i64>,
    schedules: Vec<Schedule>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn interval_ms(p: &Punctuation) -> i64 {
    (p.interval.as_millis() as i64).max(1)
}

/// Where one unit of work's store writes go besides the local store: each store's
/// changelog partition, all in one batch whose last offsets become the stores' checkpoints.
pub(crate) struct UnitChangelog {
    app_id: String,
    partition: i32,
    owner: u64,
    batch: Batch,
    /// Changelog topic → store, for the stores written so far.
    topics: HashMap<String, String>,
}

impl UnitChangelog {
    /// Queues every staged write on its store's changelog, marked with the task's owner.
    /// Blocks while the producer's queue is full.
    pub(crate) fn send_staged(
        &mut self,
        producer: &OutputProducer,
        writes: &StoreWrites,
    ) -> Result<(), StreamsError> {
        for (store, entries) in writes.staged() {
            let topic = changelog_topic(&self.app_id, store);
            for (key, value) in entries {
                producer.send_blocking(
                    &self.batch,
                    Outgoing {
                        topic: &topic,
                        partition: Some(self.partition),
                        key,
                        value: value.as_deref(),
                        headers: Some(changelog::owner_headers(self.owner)),
                    },
                )?;
            }
            self.topics.insert(topic, store.to_string());
        }
        Ok(())
    }
}

impl Task {
    /// Opens a task: takes the producer (fencing any zombie in exactly-once), appends fence
    /// markers to every store changelog, restores each store up to its marker.
    pub async fn open(
        env: &TaskEnv,
        partition: i32,
        db: Arc<TaskDb>,
        processor: Box<dyn Processor>,
    ) -> Result<Task, StreamsError> {
        let producer = match env.guarantee {
            ProcessingGuarantee::AtLeastOnce => env.shared.clone(),
            ProcessingGuarantee::ExactlyOnce => {
                let (client, id) = (
                    env.client.clone(),
                    format!("{}-task-{partition}", env.app_id),
                );
                tokio::task::spawn_blocking(move || OutputProducer::transactional(&client, &id))
                    .await
                    .expect("producer creation does not panic")?
            }
        };
        let owner = changelog::new_owner_token();
        let markers = Batch::new();
        let marker = serde_json::json!({"replica": env.replica_id, "at": now_ms()}).to_string();
        let txn = producer.is_transactional();
        if txn {
            block(|| producer.begin()).map_err(|e| StreamsError::kafka("begin fence", e))?;
        }
        for store in &env.stores {
            producer
                .send(
                    &markers,
                    Outgoing {
                        topic: &changelog_topic(&env.app_id, store),
                        partition: Some(partition),
                        key: &changelog::fence_key(owner),
                        value: Some(marker.as_bytes()),
                        headers: Some(changelog::owner_headers(owner)),
                    },
                )
                .await?;
        }
        if txn {
            block(|| producer.commit()).map_err(|e| StreamsError::kafka("commit fence", e))?;
        }
        markers.wait().await?;
        let offsets = markers.offsets();
        let mut fence_offset = -1;
        for (i, store) in env.stores.iter().enumerate() {
            let topic = changelog_topic(&env.app_id, store);
            let marker_at =
                *offsets
                    .get(&(topic.clone(), partition))
                    .ok_or_else(|| StreamsError::Restore {
                        store: store.clone(),
                        partition,
                        message: "the fence marker was not acknowledged".into(),
                    })?;
            if i == 0 {
                fence_offset = marker_at;
            }
            let (client, db, store) = (env.client.clone(), db.clone(), store.clone());
            let applied = tokio::task::spawn_blocking(move || {
                restore(&client, &db, &store, &topic, partition, marker_at + 1)
            })
            .await
            .expect("restore does not panic")?;
            env.restored
                .fetch_add(applied, std::sync::atomic::Ordering::AcqRel);
        }
        let stream_time = db.stream_time()?;
        let schedules = processor
            .punctuations()
            .into_iter()
            .map(|punctuation| {
                let next_ms = match punctuation.kind {
                    PunctuationType::WallClock => Some(now_ms() + interval_ms(&punctuation)),
                    PunctuationType::StreamTime => {
                        stream_time.map(|t| next_boundary(t, &punctuation))
                    }
                };
                Schedule {
                    punctuation,
                    next_ms,
                }
            })
            .collect();
        crate::metrics::TaskOpened {}.emit();
        Ok(Task {
            partition,
            db,
            fence_offset,
            owner,
            processor,
            producer,
            stream_time,
            schedules,
        })
    }

    /// Wall-clock punctuations due now; each is rescheduled one interval from now.
    pub fn due_wall_clock(&mut self) -> Vec<(PunctuationType, i64)> {
        let now = now_ms();
        let mut due = Vec::new();
        for s in &mut self.schedules {
            if s.punctuation.kind == PunctuationType::WallClock
                && let Some(next) = s.next_ms
                && now >= next
            {
                due.push((PunctuationType::WallClock, next));
                s.next_ms = Some(now + interval_ms(&s.punctuation));
            }
        }
        due
    }

    /// Stream-time punctuations the task's stream time has passed.
    pub fn due_stream_time(&mut self) -> Vec<(PunctuationType, i64)> {
        let Some(time) = self.stream_time else {
            return Vec::new();
        };
        let mut due = Vec::new();
        for s in &mut self.schedules {
            if s.punctuation.kind != PunctuationType::StreamTime {
                continue;
            }
            match s.next_ms {
                None => s.next_ms = Some(next_boundary(time, &s.punctuation)),
                Some(next) if time >= next => {
                    due.push((PunctuationType::StreamTime, next));
                    s.next_ms = Some(next_boundary(time, &s.punctuation));
                }
                Some(_) => {}
            }
        }
        due
    }

    /// Runs one unit of work and commits it under the task's guarantee. The input offset
    /// is committed here in exactly-once (in the transaction); in at-least-once the caller
    /// commits it after this returns.
    pub async fn execute<C: ConsumerContext + 'static>(
        &mut self,
        env: &TaskEnv,
        work: Work<'_>,
        consumer: &StreamConsumer<C>,
    ) -> Result<(), crate::Error> {
        let txn = self.producer.is_transactional();
        let outputs = Batch::new();
        let mut writes = StoreWrites::new(self.db.clone());
        if txn {
            block(|| self.producer.begin()).map_err(|e| self.txn_error("begin", e))?;
        }
        let staged = self.stage(env, work, consumer, &outputs, &mut writes).await;
        let (changelog, topics) = match staged {
            Ok(v) => v,
            Err(e) => {
                if txn {
                    self.abort();
                }
                return Err(e);
            }
        };
        if txn && let Err(e) = block(|| self.producer.commit()) {
            return self
                .after_failed_commit(env, e, work, consumer, &mut writes, &changelog, &topics)
                .await;
        }
        outputs.wait().await?;
        changelog.wait().await?;
        self.apply(work, &mut writes, &changelog, &topics)?;
        if txn {
            crate::metrics::Transaction {
                outcome: "committed",
            }
            .emit();
        }
        Ok(())
    }

    /// Processes, sends outputs and changelog records, and (exactly-once) adds the input
    /// offset to the transaction. Returns the changelog batch and its topics by store.
    async fn stage<C: ConsumerContext + 'static>(
        &mut self,
        env: &TaskEnv,
        work: Work<'_>,
        consumer: &StreamConsumer<C>,
        outputs: &Batch,
        writes: &mut StoreWrites,
    ) -> Result<(Batch, HashMap<String, String>), crate::Error> {
        let txn = self.producer.is_transactional();
        let mut changelog = UnitChangelog {
            app_id: env.app_id.clone(),
            partition: self.partition,
            owner: self.owner,
            batch: Batch::new(),
            topics: HashMap::new(),
        };
        {
            let mut ctx = ProcessorContext {
                partition: self.partition,
                writes,
                producer: &self.producer,
                batch: outputs,
                changelog: &mut changelog,
            };
            match work {
                Work::Record(record) => self.processor.process(&mut ctx, record).await?,
                Work::Punctuate(kind, time) => {
                    self.processor.punctuate(&mut ctx, kind, time).await?
                }
            }
        }
        if !txn {
            // At-least-once: nothing says "done" before every output is acknowledged.
            outputs.wait().await?;
        }
        block(|| changelog.send_staged(&self.producer, writes))?;
        let UnitChangelog {
            batch: changelog,
            topics,
            ..
        } = changelog;
        if !txn {
            changelog.wait().await?;
        } else if let Work::Record(record) = work {
            let group = consumer
                .group_metadata()
                .ok_or_else(|| StreamsError::Fenced {
                    partition: self.partition,
                    reason: "the consumer is not in a group".into(),
                })?;
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset(
                    &record.topic,
                    record.partition,
                    Offset::Offset(record.offset + 1),
                )
                .map_err(|e| StreamsError::kafka("offsets", e))?;
            block(|| self.producer.send_offsets(&offsets, &group))
                .map_err(|e| self.txn_error("send offsets", e))?;
        }
        Ok((changelog, topics))
    }

    /// Applies the unit's writes, checkpoints and stream time to the local store.
    fn apply(
        &mut self,
        work: Work<'_>,
        writes: &mut StoreWrites,
        changelog: &Batch,
        topics: &HashMap<String, String>,
    ) -> Result<(), StreamsError> {
        if let Work::Record(record) = work
            && let Some(ts) = record.timestamp_ms
        {
            self.stream_time = Some(self.stream_time.map_or(ts, |t| t.max(ts)));
        }
        let checkpoints = changelog::checkpoints(changelog.offsets(), topics);
        self.db.apply(writes, &checkpoints, self.stream_time)
    }

    /// A commit failed. Abortable: abort and retry. Fatal: the task was fenced. Otherwise
    /// the outcome is unknown: re-create the producer (which settles the transaction), and
    /// let the committed input offset say whether it landed.
    #[allow(clippy::too_many_arguments)]
    async fn after_failed_commit<C: ConsumerContext + 'static>(
        &mut self,
        env: &TaskEnv,
        error: KafkaError,
        work: Work<'_>,
        consumer: &StreamConsumer<C>,
        writes: &mut StoreWrites,
        changelog: &Batch,
        topics: &HashMap<String, String>,
    ) -> Result<(), crate::Error> {
        match classify(&error) {
            TxnFailure::Abortable => {
                self.abort();
                Err(self.txn_error("commit", error).into())
            }
            TxnFailure::Fenced => Err(self.txn_error("commit", error).into()),
            TxnFailure::Unknown => {
                crate::metrics::Transaction { outcome: "unknown" }.emit();
                tracing::warn!(partition = self.partition, error = %error, "transaction commit outcome unknown; re-creating the producer");
                let (client, id) = (
                    env.client.clone(),
                    format!("{}-task-{}", env.app_id, self.partition),
                );
                self.producer = tokio::task::spawn_blocking(move || {
                    OutputProducer::transactional(&client, &id)
                })
                .await
                .expect("producer creation does not panic")?;
                let Work::Record(record) = work else {
                    // A punctuation has no offset to check: run it again; its writes are
                    // idempotent upserts.
                    return Err(self.txn_error("commit", error).into());
                };
                if committed_offset(consumer, record)? > record.offset {
                    tracing::info!(
                        partition = self.partition,
                        offset = record.offset,
                        "the transaction had committed"
                    );
                    self.apply(work, writes, changelog, topics)?;
                    Ok(())
                } else {
                    Err(self.txn_error("commit", error).into())
                }
            }
        }
    }

    /// Aborts the open transaction, whichever step failed (a send, the offsets, the
    /// commit); the unit of work is then retried from scratch.
    fn abort(&self) {
        match block(|| self.producer.abort()) {
            Ok(()) => crate::metrics::Transaction { outcome: "aborted" }.emit(),
            Err(e) => {
                tracing::warn!(partition = self.partition, error = %e, "abort failed")
            }
        }
    }

    fn txn_error(&self, op: &str, e: KafkaError) -> StreamsError {
        if classify(&e) == TxnFailure::Fenced {
            StreamsError::Fenced {
                partition: self.partition,
                reason: format!("{op}: {e}"),
            }
        } else {
            StreamsError::kafka(format!("transaction {op} for task {}", self.partition), e)
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum TxnFailure {
    /// Abort the transaction and retry the work.
    Abortable,
    /// Another producer with our transactional id exists: the task is someone else's.
    Fenced,
    /// Whether the transaction committed is not known.
    Unknown,
}

fn classify(e: &KafkaError) -> TxnFailure {
    let fenced = matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
    );
    match e {
        _ if fenced => TxnFailure::Fenced,
        KafkaError::Transaction(rde) if rde.txn_requires_abort() => TxnFailure::Abortable,
        KafkaError::Transaction(rde) if rde.is_fatal() => TxnFailure::Fenced,
        _ => TxnFailure::Unknown,
    }
}

/// The group's committed offset of `record`'s partition, or -1.
fn committed_offset<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    record: &InputRecord,
) -> Result<i64, StreamsError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&record.topic, record.partition);
    let committed = block(|| consumer.committed_offsets(tpl, Duration::from_secs(10)))
        .map_err(|e| StreamsError::kafka("committed offsets", e))?;
    Ok(
        match committed
            .find_partition(&record.topic, record.partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        },
    )
}

/// The first multiple of the interval after `time`.
fn next_boundary(time: i64, p: &Punctuation) -> i64 {
    let interval = interval_ms(p);
    (time.div_euclid(interval) + 1) * interval
}

/// Runs a blocking librdkafka call without stalling the async threads.
fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Brings one store partition up to `until` (exclusive) from its checkpoint, honouring
/// fence markers. Logs progress with rate and ETA. Returns the records applied. Public for
/// the restore benchmark and offline rebuilds of a store.
pub fn restore(
    client: &ClientConfig,
    db: &TaskDb,
    store: &str,
    topic: &str,
    partition: i32,
    until: i64,
) -> Result<u64, StreamsError> {
    let fail = |message: String| StreamsError::Restore {
        store: store.to_string(),
        partition,
        message,
    };
    let consumer: BaseConsumer = restore_config(client, topic)
        .create()
        .map_err(|e| StreamsError::kafka("create restore consumer", e))?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .map_err(|e| StreamsError::kafka(format!("watermarks of {topic}"), e))?;
    let mut start = db.checkpoint(store)?.unwrap_or(low);
    if start > high {
        // The changelog is behind our checkpoint: it was recreated or truncated, so the
        // local copy describes another history. Start over from the changelog.
        tracing::warn!(
            store,
            partition,
            checkpoint = start,
            end = high,
            "checkpoint is past the changelog's end; rebuilding the store"
        );
        db.wipe(store)?;
        start = low;
    }
    let start = start.max(low);
    let mut applier = ChangelogApplier::resume(db, store, start)?;
    if start >= until {
        return Ok(0);
    }
    let total = (until - start) as u64;
    tracing::info!(
        store,
        partition,
        from = start,
        to = until,
        records = total,
        "restoring store from changelog"
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))
        .map_err(|e| fail(e.to_string()))?;
    consumer
        .assign(&tpl)
        .map_err(|e| StreamsError::kafka("assign restore consumer", e))?;

    let began = Instant::now();
    let mut last_log = began;
    let mut last_progress = began;
    while applier.next_offset() < until {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                applier.offer(db, &m)?;
            }
            Some(Err(e)) => return Err(StreamsError::kafka(format!("restore from {topic}"), e)),
            None => {
                // Transaction markers and compaction leave offsets no record occupies; the
                // consumer's position says how far it really is.
                if let Some(p) = position(&consumer, topic, partition)
                    && p > applier.next_offset()
                {
                    applier.skip_to(p);
                    last_progress = Instant::now();
                }
                if last_progress.elapsed() > RESTORE_STALL {
                    return Err(fail(format!(
                        "no progress for {} s at offset {} of {until}",
                        RESTORE_STALL.as_secs(),
                        applier.next_offset()
                    )));
                }
            }
        }
        if last_log.elapsed() >= PROGRESS_EVERY {
            last_log = Instant::now();
            let done = (applier.next_offset() - start) as f64;
            let rate = done / began.elapsed().as_secs_f64();
            let remaining = until - applier.next_offset();
            crate::metrics::RestoreRemaining {
                store,
                partition,
                records: remaining,
            }
            .emit();
            tracing::info!(
                store,
                partition,
                done = done as u64,
                remaining,
                rate_per_s = rate as u64,
                eta_s = (remaining as f64 / rate.max(1.0)) as u64,
                "restoring"
            );
        }
    }
    applier.flush(db)?;
    crate::metrics::RestoreRemaining {
        store,
        partition,
        records: 0,
    }
    .emit();
    let elapsed = began.elapsed();
    tracing::info!(
        store,
        partition,
        records = applier.applied,
        ignored_zombie_writes = applier.ignored,
        elapsed_ms = elapsed.as_millis() as u64,
        rate_per_s = (total as f64 / elapsed.as_secs_f64().max(1e-3)) as u64,
        "store restored"
    );
    Ok(applier.applied)
}

/// Settings of a consumer that reads changelogs by assignment (restore, standby).
pub(crate) fn restore_config(client: &ClientConfig, group: &str) -> ClientConfig {
    let mut config = client.clone();
    config
        .set("group.id", format!("{group}-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    config
}

/// The consumer's position on one partition, if known.
pub(crate) fn position(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    let positions = consumer.position().ok()?;
    match positions.find_partition(topic, partition)?.offset() {
        Offset::Offset(p) => Some(p),
        _ => None,
    }
}
