//! The consumer loop: assignment, restore, process, commit. See the module documentation of
//! [`super`] for the delivery guarantee it implements.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::admin::{TopicSpec, ensure_topics, topic_partitions};
use super::producer::{Batch, OutputProducer};
use super::store::{StoreRegistry, StoreWrites, TaskDb};
use super::{InputRecord, Processor, ProcessorContext, StreamsError, Topology};
use crate::ErrorKind;

/// Longest wait between retries of a record that failed on an outside system.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How often restore progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What other components may know of the runtime: whether it is ready, and which
/// partitions it owns.
#[derive(Clone, Debug, Default)]
pub struct RuntimeStatus {
    ready: Arc<AtomicBool>,
    assigned: Arc<Mutex<Vec<i32>>>,
}

impl RuntimeStatus {
    /// In the group, with every assigned partition restored.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Input partitions this replica owns.
    pub fn assigned(&self) -> Vec<i32> {
        self.assigned.lock().expect("status lock").clone()
    }
}

enum RebalanceEvent {
    Assign(Vec<i32>),
    Revoke(Vec<i32>),
}

/// Records rebalance callbacks for the loop to act on. The callbacks run inside the
/// consumer's poll, between two records, so every processed record is committed already.
struct RebalanceListener {
    events: Arc<Mutex<Vec<RebalanceEvent>>>,
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for RebalanceListener {}

impl ConsumerContext for RebalanceListener {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions = partitions_of(tpl);
            tracing::info!(?partitions, "partitions revoked");
            self.events
                .lock()
                .expect("events lock")
                .push(RebalanceEvent::Revoke(partitions));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = partitions_of(tpl);
                tracing::info!(?partitions, "partitions assigned");
                self.events
                    .lock()
                    .expect("events lock")
                    .push(RebalanceEvent::Assign(partitions));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

struct Task {
    db: Arc<TaskDb>,
    processor: Box<dyn Processor>,
}

/// Runs a [`Topology`] as a member of the consumer group `application id`.
pub struct StreamsRuntime {
    app_id: String,
    state_dir: PathBuf,
    client: ClientConfig,
    topology: Topology,
    producer: OutputProducer,
    registry: StoreRegistry,
    status: RuntimeStatus,
    events: Arc<Mutex<Vec<RebalanceEvent>>>,
    /// Tasks this replica owns.
    tasks: BTreeMap<i32, Task>,
    /// Databases of tasks revoked earlier, kept open: a partition that comes back restores
    /// only what changed meanwhile.
    suspended: HashMap<i32, Arc<TaskDb>>,
    settings: RuntimeSettings,
}

/// How a runtime runs.
#[derive(Clone, Debug)]
pub struct RuntimeSettings {
    /// The consumer group, and the prefix of changelog topics.
    pub app_id: String,
    /// Stores live under `<state_dir>/<app_id>/task-<partition>`.
    pub state_dir: PathBuf,
    pub session_timeout_ms: u32,
    pub max_poll_interval_ms: u32,
    /// Create missing changelog topics.
    pub create_topics: bool,
    pub replication_factor: i32,
}

impl StreamsRuntime {
    /// Prepares a runtime: checks the input topic and creates the changelog topics with as
    /// many partitions as it has.
    pub async fn new(
        settings: RuntimeSettings,
        client: ClientConfig,
        topology: Topology,
        producer: OutputProducer,
    ) -> Result<StreamsRuntime, StreamsError> {
        let app_id = settings.app_id.as_str();
        let partitions = *topic_partitions(&client)
            .await?
            .get(&topology.source)
            .ok_or_else(|| StreamsError::Topic {
                topic: topology.source.clone(),
                message: "the input topic does not exist".into(),
            })?;
        let changelogs: Vec<TopicSpec> = topology
            .stores
            .iter()
            .map(|store| TopicSpec {
                name: changelog_topic(app_id, store),
                partitions,
                replication_factor: settings.replication_factor,
                compacted: true,
                exact_partitions: true,
            })
            .collect();
        ensure_topics(&client, &changelogs, settings.create_topics).await?;
        Ok(StreamsRuntime {
            app_id: app_id.to_string(),
            state_dir: settings.state_dir.join(app_id),
            client,
            topology,
            producer,
            registry: StoreRegistry::default(),
            status: RuntimeStatus::default(),
            events: Arc::default(),
            tasks: BTreeMap::new(),
            suspended: HashMap::new(),
            settings,
        })
    }

    /// The stores, for readers.
    pub fn registry(&self) -> StoreRegistry {
        self.registry.clone()
    }

    pub fn status(&self) -> RuntimeStatus {
        self.status.clone()
    }

    /// Consumes until `shutdown`, or until a record fails in a way retrying cannot fix.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), crate::Error> {
        let mut config = self.client.clone();
        config
            .set("group.id", &self.app_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "session.timeout.ms",
                self.settings.session_timeout_ms.to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (self.settings.session_timeout_ms / 4).max(100).to_string(),
            )
            .set(
                "max.poll.interval.ms",
                self.settings.max_poll_interval_ms.to_string(),
            );
        let consumer: StreamConsumer<RebalanceListener> = config
            .create_with_context(RebalanceListener {
                events: self.events.clone(),
            })
            .map_err(|e| StreamsError::kafka("create consumer", e))?;
        consumer
            .subscribe(&[&self.topology.source])
            .map_err(|e| StreamsError::kafka("subscribe", e))?;
        tracing::info!(topology = %self.topology.name, source = %self.topology.source, group = %self.app_id, "stream task runtime started");

        let result = self.consume(&consumer, &shutdown).await;
        self.status.ready.store(false, Ordering::Release);
        // Leave the group now rather than after the session timeout, so partitions move
        // to the other replicas at once.
        consumer.unsubscribe();
        self.producer.flush(Duration::from_secs(10))?;
        self.tasks.clear();
        tracing::info!("stream task runtime stopped");
        result
    }

    async fn consume(
        &mut self,
        consumer: &StreamConsumer<RebalanceListener>,
        shutdown: &CancellationToken,
    ) -> Result<(), crate::Error> {
        let mut backoff = Duration::from_millis(100);
        loop {
            self.handle_rebalance().await?;
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                m = consumer.recv() => m,
                // Wake up now and then to act on rebalances while idle.
                _ = tokio::time::sleep(Duration::from_millis(250)) => continue,
            };
            let record = match message {
                Ok(m) => InputRecord {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: m.timestamp().to_millis(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                },
                Err(e) => {
                    crate::metrics::KafkaError { op: "consume" }.emit();
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "consume failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            self.handle_rebalance().await?;
            if !self.tasks.contains_key(&record.partition) {
                // Assigned in the same poll that returned the record.
                self.open_task(record.partition).await?;
            }
            if !self.process_with_retry(&record, shutdown).await? {
                return Ok(()); // shutting down mid-record: it is replayed after restart
            }
            self.commit(consumer, &record);
        }
    }

    /// Processes one record until it succeeds. `Ok(false)`: shutdown came first.
    async fn process_with_retry(
        &mut self,
        record: &InputRecord,
        shutdown: &CancellationToken,
    ) -> Result<bool, crate::Error> {
        let mut wait = Duration::from_millis(200);
        loop {
            let attempt = self.process(record).await;
            match attempt {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == ErrorKind::External => {
                    crate::metrics::ProcessingRetry {}.emit();
                    tracing::warn!(partition = record.partition, offset = record.offset, error = %e, retry_in_ms = wait.as_millis() as u64, "processing failed on an outside system; retrying the record");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(false),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Err(e) => {
                    tracing::error!(partition = record.partition, offset = record.offset, kind = %e.kind(), error = %e, "processing failed; stopping");
                    return Err(e);
                }
            }
        }
    }

    /// One record, through all five steps of the delivery protocol.
    async fn process(&mut self, record: &InputRecord) -> Result<(), crate::Error> {
        let partition = record.partition;
        let task = self
            .tasks
            .get_mut(&partition)
            .expect("a task exists for every processed partition");
        let outputs = Batch::new();
        let mut writes = StoreWrites::new(task.db.clone());
        {
            let mut ctx = ProcessorContext {
                partition,
                writes: &mut writes,
                producer: &self.producer,
                batch: &outputs,
            };
            task.processor.process(&mut ctx, record).await?;
        }
        outputs.wait().await?;
        if writes.is_empty() {
            return Ok(());
        }
        let changelog = Batch::new();
        let mut topics = HashMap::new();
        for (store, entries) in writes.staged() {
            let topic = changelog_topic(&self.app_id, store);
            for (key, value) in entries {
                self.producer
                    .send(&changelog, &topic, Some(partition), key, value.as_deref())
                    .await?;
            }
            topics.insert(topic, store.to_string());
        }
        changelog.wait().await?;
        let checkpoints: HashMap<String, i64> = changelog
            .offsets()
            .into_iter()
            .filter_map(|((topic, _), offset)| topics.get(&topic).map(|s| (s.clone(), offset + 1)))
            .collect();
        task.db.apply(&writes, &checkpoints)?;
        Ok(())
    }

    fn commit(&self, consumer: &StreamConsumer<RebalanceListener>, record: &InputRecord) {
        let mut tpl = TopicPartitionList::new();
        if let Err(e) = tpl.add_partition_offset(
            &record.topic,
            record.partition,
            Offset::Offset(record.offset + 1),
        ) {
            tracing::error!(error = %e, "cannot build commit");
            return;
        }
        // A failed commit replays the record on the partition's next owner; its outputs and
        // state are already durable, so the replay finds its work done.
        if let Err(e) = tokio::task::block_in_place(|| consumer.commit(&tpl, CommitMode::Sync)) {
            crate::metrics::KafkaError { op: "commit" }.emit();
            tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "offset commit failed; the record will be replayed");
        }
    }

    /// Acts on rebalance callbacks: closes revoked tasks, restores and opens assigned ones.
    async fn handle_rebalance(&mut self) -> Result<(), crate::Error> {
        let events: Vec<RebalanceEvent> =
            std::mem::take(&mut *self.events.lock().expect("events lock"));
        if events.is_empty() {
            return Ok(());
        }
        for event in events {
            match event {
                RebalanceEvent::Revoke(partitions) => {
                    for p in partitions {
                        self.registry.remove(p);
                        if let Some(task) = self.tasks.remove(&p) {
                            self.suspended.insert(p, task.db);
                        }
                    }
                }
                RebalanceEvent::Assign(partitions) => {
                    for p in partitions {
                        if !self.tasks.contains_key(&p) {
                            self.open_task(p).await?;
                        }
                    }
                }
            }
        }
        let assigned: Vec<i32> = self.tasks.keys().copied().collect();
        *self.status.assigned.lock().expect("status lock") = assigned;
        self.status.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Opens a task's stores, restores them from their changelogs, and registers them.
    async fn open_task(&mut self, partition: i32) -> Result<(), crate::Error> {
        let db = match self.suspended.remove(&partition) {
            Some(db) => db,
            None => {
                let dir = self.state_dir.join(format!("task-{partition}"));
                let stores = self.topology.stores.clone();
                Arc::new(
                    tokio::task::spawn_blocking(move || TaskDb::open(&dir, partition, &stores))
                        .await
                        .expect("open does not panic")?,
                )
            }
        };
        for store in &self.topology.stores {
            let topic = changelog_topic(&self.app_id, store);
            let (db, client, store) = (db.clone(), self.client.clone(), store.clone());
            tokio::task::spawn_blocking(move || restore(&client, &db, &store, &topic, partition))
                .await
                .expect("restore does not panic")?;
        }
        let processor = (self.topology.processor)(partition);
        self.registry.insert(db.clone());
        self.tasks.insert(partition, Task { db, processor });
        Ok(())
    }
}

/// The changelog topic of a store: `<application id>-<store>-changelog`.
pub fn changelog_topic(app_id: &str, store: &str) -> String {
    format!("{app_id}-{store}-changelog")
}

/// Brings one store partition up to the end of its changelog, from its checkpoint.
fn restore(
    client: &ClientConfig,
    db: &TaskDb,
    store: &str,
    topic: &str,
    partition: i32,
) -> Result<u64, StreamsError> {
    let fail = |message: String| StreamsError::Restore {
        store: store.to_string(),
        partition,
        message,
    };
    let mut config = client.clone();
    config
        .set("group.id", format!("{topic}-restore"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = config
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
    if start >= high {
        return Ok(0);
    }
    let total = (high - start) as u64;
    tracing::info!(
        store,
        partition,
        from = start,
        to = high,
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
    let mut restored = 0u64;
    let mut next = start;
    let mut chunk: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(10_000);
    let mut idle_since = Instant::now();
    while next < high {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                idle_since = Instant::now();
                if let Some(key) = m.key() {
                    chunk.push((key.to_vec(), m.payload().map(<[u8]>::to_vec)));
                }
                next = m.offset() + 1;
                restored += 1;
            }
            Some(Err(e)) => return Err(StreamsError::kafka(format!("restore from {topic}"), e)),
            None => {
                // Compaction or transaction markers can leave the end offset unreachable by
                // records; the consumer's position tells where it really is.
                if let Ok(positions) = consumer.position()
                    && let Some(Offset::Offset(p)) = positions
                        .find_partition(topic, partition)
                        .map(|e| e.offset())
                {
                    next = next.max(p);
                }
                if idle_since.elapsed() > Duration::from_secs(60) {
                    return Err(fail(format!(
                        "no progress for 60 s at offset {next} of {high}"
                    )));
                }
            }
        }
        if chunk.len() >= 10_000 || next >= high {
            db.apply_restored(store, &chunk, next)?;
            crate::metrics::RestoreProgress {
                store,
                records: chunk.len() as u64,
            }
            .emit();
            chunk.clear();
        }
        if last_log.elapsed() >= PROGRESS_EVERY {
            last_log = Instant::now();
            let rate = restored as f64 / began.elapsed().as_secs_f64();
            let eta = (high - next) as f64 / rate.max(1.0);
            tracing::info!(
                store,
                partition,
                restored,
                remaining = high - next,
                rate_per_s = rate as u64,
                eta_s = eta as u64,
                "restoring"
            );
        }
    }
    let elapsed = began.elapsed();
    tracing::info!(
        store,
        partition,
        records = restored,
        elapsed_ms = elapsed.as_millis() as u64,
        rate_per_s = (restored as f64 / elapsed.as_secs_f64().max(1e-3)) as u64,
        "store restored"
    );
    Ok(restored)
}
