//! The replica's main loop: group membership and rebalances, task lifecycle, processing
//! with retries, punctuation, standby upkeep and the replica table. See the module
//! documentation of [`super`] for the guarantees it implements.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
use super::membership::{ActiveClaim, HEARTBEAT_MS, ReplicaInfo, StreamsMetadata};
use super::producer::{Batch, Outgoing, OutputProducer};
use super::standby::Standby;
use super::store::{StoreRegistry, TaskDb};
use super::task::{Task, TaskEnv, Work};
use super::{InputRecord, ProcessingGuarantee, Processor, StreamsError, Topology, TopologyShape};

/// Creates the processor of one task.
type ProcessorFactory = Box<dyn Fn(i32) -> Box<dyn Processor> + Send + Sync>;
use crate::ErrorKind;

/// Longest wait between retries of work that failed on an outside system.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long the loop sleeps when no record arrives, to punctuate and keep standbys warm.
const IDLE_TICK: Duration = Duration::from_millis(250);

/// The changelog topic of a store: `<application id>-<store>-changelog`.
pub fn changelog_topic(app_id: &str, store: &str) -> String {
    format!("{app_id}-{store}-changelog")
}

/// The replica table topic: `<application id>-replicas`.
pub fn replicas_topic(app_id: &str) -> String {
    format!("{app_id}-replicas")
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
    pub guarantee: ProcessingGuarantee,
    /// Warm copies of each task to keep on other replicas.
    pub num_standby_replicas: usize,
    /// `host:port` of this replica's query API, published for interactive queries.
    pub endpoint: Option<String>,
}

/// What other components may know of the runtime: whether it is ready, and which
/// partitions it owns.
#[derive(Clone, Debug, Default)]
pub struct RuntimeStatus {
    ready: Arc<AtomicBool>,
    assigned: Arc<Mutex<Vec<i32>>>,
    restored: Arc<AtomicU64>,
    rejoins: Arc<AtomicU64>,
    standby_lag: Arc<Mutex<BTreeMap<i32, i64>>>,
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

    /// Changelog records this replica has applied while opening active tasks: what
    /// standbys and checkpoints save.
    pub fn restored_records(&self) -> u64 {
        self.restored.load(Ordering::Acquire)
    }

    /// Changelog records this replica's standby of `partition` was behind at the last
    /// heartbeat, if it keeps one.
    pub fn standby_lag(&self, partition: i32) -> Option<i64> {
        self.standby_lag
            .lock()
            .expect("status lock")
            .get(&partition)
            .copied()
    }

    /// Times this replica left and rejoined the group (a lost task, a stuck rebalance).
    pub fn rejoins(&self) -> u64 {
        self.rejoins.load(Ordering::Acquire)
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

/// What the upkeep between records asks for.
enum Upkeep {
    Continue,
    Shutdown,
    Rejoin,
}

/// Why the consume loop ended.
enum End {
    Shutdown,
    /// Leave the group and join again with a new member id.
    Rejoin,
}

/// What became of one unit of work.
enum Outcome {
    Done,
    /// The task is no longer ours; nothing was committed.
    Lost,
    /// Shutdown came first; nothing was committed.
    Interrupted,
}

/// Runs a [`Topology`] as a member of the consumer group `application id`.
pub struct StreamsRuntime {
    settings: RuntimeSettings,
    env: TaskEnv,
    shape: TopologyShape,
    factory: ProcessorFactory,
    source: String,
    state_dir: PathBuf,
    registry: StoreRegistry,
    status: RuntimeStatus,
    metadata: StreamsMetadata,
    events: Arc<Mutex<Vec<RebalanceEvent>>>,
    /// Active tasks.
    tasks: BTreeMap<i32, Task>,
    /// Databases not in use: revoked tasks and dropped standbys. A partition that comes
    /// back restores only what changed meanwhile.
    warm: HashMap<i32, Arc<TaskDb>>,
    standby: Standby,
    membership: BaseConsumer,
    last_publish: Option<Instant>,
    /// Since when this replica has waited for an assignment: set when it subscribes or
    /// partitions are revoked, cleared when an assignment (even an empty one) arrives.
    awaiting_assignment: Option<Instant>,
    /// Since when some partition has had no live owner in the replica table.
    unowned_since: Option<Instant>,
}

impl StreamsRuntime {
    /// Prepares a runtime: checks the input topic, creates the changelog topics (as many
    /// partitions as the input) and the replica table topic.
    pub async fn new(
        settings: RuntimeSettings,
        client: ClientConfig,
        topology: Topology,
        producer: OutputProducer,
    ) -> Result<StreamsRuntime, StreamsError> {
        let Topology {
            shape,
            processor: factory,
            partition_of,
        } = topology;
        let app_id = settings.app_id.clone();
        let source = shape.source.clone();
        let partitions = *topic_partitions(&client)
            .await?
            .get(&source)
            .ok_or_else(|| StreamsError::Topic {
                topic: source.clone(),
                message: "the input topic does not exist".into(),
            })?;
        let mut topics: Vec<TopicSpec> = shape
            .stores
            .iter()
            .map(|store| TopicSpec {
                name: changelog_topic(&app_id, store),
                partitions,
                replication_factor: settings.replication_factor,
                compacted: true,
                exact_partitions: true,
            })
            .collect();
        topics.push(TopicSpec {
            name: replicas_topic(&app_id),
            partitions: 1,
            replication_factor: settings.replication_factor,
            compacted: true,
            exact_partitions: false,
        });
        ensure_topics(&client, &topics, settings.create_topics).await?;

        let state_dir = settings.state_dir.join(&app_id);
        let replica_id = replica_id(&state_dir)?;
        let membership: BaseConsumer =
            super::task::restore_config(&client, &format!("{app_id}-replicas"))
                .create()
                .map_err(|e| StreamsError::kafka("create replica-table reader", e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&replicas_topic(&app_id), 0, Offset::Beginning)
            .map_err(|e| StreamsError::kafka("replica-table assignment", e))?;
        membership
            .assign(&tpl)
            .map_err(|e| StreamsError::kafka("assign replica-table reader", e))?;
        let standby = Standby::new(&client, &app_id, &shape.stores)?;
        let status = RuntimeStatus::default();
        tracing::info!(replica = %replica_id, guarantee = ?settings.guarantee, standbys = settings.num_standby_replicas, partitions, "runtime prepared");
        Ok(StreamsRuntime {
            env: TaskEnv {
                app_id,
                replica_id: replica_id.clone(),
                client,
                stores: shape.stores.clone(),
                guarantee: settings.guarantee,
                shared: producer,
                restored: status.restored.clone(),
            },
            metadata: StreamsMetadata::new(&replica_id, partitions, partition_of),
            settings,
            shape,
            factory,
            source,
            state_dir,
            registry: StoreRegistry::default(),
            status,
            events: Arc::default(),
            tasks: BTreeMap::new(),
            warm: HashMap::new(),
            standby,
            membership,
            last_publish: None,
            awaiting_assignment: None,
            unowned_since: None,
        })
    }

    /// The stores, for readers.
    pub fn registry(&self) -> StoreRegistry {
        self.registry.clone()
    }

    pub fn status(&self) -> RuntimeStatus {
        self.status.clone()
    }

    /// The standby databases of this replica, for stale reads.
    pub fn standby_registry(&self) -> StoreRegistry {
        self.standby.readers()
    }

    /// Which replica owns which partition, for interactive queries.
    pub fn metadata(&self) -> StreamsMetadata {
        self.metadata.clone()
    }

    /// Consumes until `shutdown`, or until work fails in a way retrying cannot fix.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), crate::Error> {
        let mut config = self.env.client.clone();
        config
            .set("group.id", &self.settings.app_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
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
        tracing::info!(topology = %self.shape.name, source = %self.source, group = %self.settings.app_id, "stream task runtime started");
        let result = loop {
            let consumer: StreamConsumer<RebalanceListener> = config
                .create_with_context(RebalanceListener {
                    events: self.events.clone(),
                })
                .map_err(|e| StreamsError::kafka("create consumer", e))?;
            consumer
                .subscribe(&[&self.source])
                .map_err(|e| StreamsError::kafka("subscribe", e))?;
            self.awaiting_assignment = Some(Instant::now());
            let ended = self.consume(&consumer, &shutdown).await;
            // Leave the group now rather than after the session timeout, so partitions
            // move to the other replicas at once.
            consumer.unsubscribe();
            self.park_all_tasks();
            match ended {
                Ok(End::Rejoin) => {
                    self.status.rejoins.fetch_add(1, Ordering::AcqRel);
                    continue;
                }
                Ok(End::Shutdown) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.status.ready.store(false, Ordering::Release);
        // Take this replica out of the table.
        self.publish_leaving().await;
        self.env.shared.flush(Duration::from_secs(10))?;
        tracing::info!("stream task runtime stopped");
        result
    }

    /// Stops every active task, keeping its database warm.
    fn park_all_tasks(&mut self) {
        for (p, task) in std::mem::take(&mut self.tasks) {
            self.registry.remove(p);
            self.warm.insert(p, task.db);
        }
    }

    async fn consume(
        &mut self,
        consumer: &StreamConsumer<RebalanceListener>,
        shutdown: &CancellationToken,
    ) -> Result<End, crate::Error> {
        let mut backoff = Duration::from_millis(100);
        loop {
            self.handle_rebalance(shutdown).await?;
            if let Some(since) = self.awaiting_assignment
                && since.elapsed() > self.rejoin_after()
            {
                // A rebalance that never completes (a coordinator that lost track of a
                // dead member, say) leaves this replica idle for good; a new member id
                // starts a fresh rebalance.
                crate::metrics::KafkaError {
                    op: "stuck rebalance",
                }
                .emit();
                tracing::warn!(
                    waited_s = since.elapsed().as_secs(),
                    "the group's rebalance has not completed; rejoining with a new member id"
                );
                return Ok(End::Rejoin);
            }
            match self.upkeep(consumer, shutdown).await? {
                Upkeep::Continue => {}
                Upkeep::Shutdown => return Ok(End::Shutdown),
                Upkeep::Rejoin => return Ok(End::Rejoin),
            }
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(End::Shutdown),
                m = consumer.recv() => m,
                _ = tokio::time::sleep(IDLE_TICK) => continue,
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
            self.handle_rebalance(shutdown).await?;
            let p = record.partition;
            if !self.tasks.contains_key(&p) {
                // Assigned in the same poll that returned the record.
                self.open_task(p, shutdown).await?;
            }
            match self
                .work(p, Work::Record(&record), consumer, shutdown)
                .await?
            {
                Outcome::Done => {}
                Outcome::Lost => return Ok(End::Rejoin),
                Outcome::Interrupted => return Ok(End::Shutdown),
            }
            if self.settings.guarantee == ProcessingGuarantee::AtLeastOnce {
                commit(consumer, &record);
            }
            let due = self
                .tasks
                .get_mut(&p)
                .map(Task::due_stream_time)
                .unwrap_or_default();
            for (kind, time) in due {
                if !matches!(
                    self.work(p, Work::Punctuate(kind, time), consumer, shutdown)
                        .await?,
                    Outcome::Done
                ) {
                    break;
                }
            }
        }
    }

    /// Runs one unit of work on task `p` until it succeeds, the task is lost, or shutdown.
    async fn work(
        &mut self,
        p: i32,
        work: Work<'_>,
        consumer: &StreamConsumer<RebalanceListener>,
        shutdown: &CancellationToken,
    ) -> Result<Outcome, crate::Error> {
        let mut wait = Duration::from_millis(200);
        loop {
            if self.settings.guarantee == ProcessingGuarantee::AtLeastOnce
                && !still_assigned(consumer, &self.source, p)
            {
                self.lose_task(p, "the partition is no longer in this replica's assignment");
                return Ok(Outcome::Lost);
            }
            let Some(task) = self.tasks.get_mut(&p) else {
                return Ok(Outcome::Lost);
            };
            match task.execute(&self.env, work, consumer).await {
                Ok(()) => return Ok(Outcome::Done),
                Err(crate::Error::Streams(StreamsError::Fenced { reason, .. })) => {
                    self.lose_task(p, &reason);
                    return Ok(Outcome::Lost);
                }
                Err(e) if e.kind() == ErrorKind::External => {
                    crate::metrics::ProcessingRetry {}.emit();
                    tracing::warn!(partition = p, error = %e, retry_in_ms = wait.as_millis() as u64, "work failed on an outside system; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(Outcome::Interrupted),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Err(e) => {
                    tracing::error!(partition = p, kind = %e.kind(), error = %e, "work failed; stopping");
                    return Err(e);
                }
            }
        }
    }

    /// A task was fenced or lost its partition. As Kafka Streams does on a migrated task,
    /// the replica then rejoins the group (the caller returns [`End::Rejoin`]): every task
    /// is closed, and whatever the group assigns next starts from committed offsets with
    /// a new fence.
    fn lose_task(&mut self, p: i32, reason: &str) {
        crate::metrics::TaskFenced {}.emit();
        tracing::warn!(
            partition = p,
            reason,
            "task lost to another replica; its writes are fenced"
        );
        if let Some(task) = self.tasks.remove(&p) {
            self.registry.remove(p);
            self.warm.insert(p, task.db);
        }
        self.status
            .assigned
            .lock()
            .expect("status lock")
            .retain(|x| *x != p);
    }

    /// How long a rebalance may take before this replica rejoins: several session
    /// timeouts, so a healthy group (which settles within one) is never disturbed.
    fn rejoin_after(&self) -> Duration {
        Duration::from_millis(u64::from(self.settings.session_timeout_ms) * 4)
            .max(Duration::from_secs(30))
    }

    /// Wall-clock punctuations, the replica table, standbys. `Ok(false)`: shutdown.
    async fn upkeep(
        &mut self,
        consumer: &StreamConsumer<RebalanceListener>,
        shutdown: &CancellationToken,
    ) -> Result<Upkeep, crate::Error> {
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for p in partitions {
            let due = self
                .tasks
                .get_mut(&p)
                .map(Task::due_wall_clock)
                .unwrap_or_default();
            for (kind, time) in due {
                match self
                    .work(p, Work::Punctuate(kind, time), consumer, shutdown)
                    .await?
                {
                    Outcome::Done => {}
                    Outcome::Lost => return Ok(Upkeep::Rejoin),
                    Outcome::Interrupted => return Ok(Upkeep::Shutdown),
                }
            }
        }
        self.read_replica_table();
        let heartbeat_due = self
            .last_publish
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(HEARTBEAT_MS as u64));
        if heartbeat_due {
            self.publish().await;
            self.report_standby_lag();
            self.report_group(consumer);
            if self.check_group() {
                return Ok(Upkeep::Rejoin);
            }
        }
        self.keep_standbys()?;
        Ok(Upkeep::Continue)
    }

    /// What the replica table says about the group. A task another replica has opened
    /// since (its fence marker is later) is stopped here, without waiting for the group
    /// to revoke it. Partitions that no live replica holds for several session timeouts
    /// mean a rebalance that will not complete (seen with Tansu 0.6.0): the replica with
    /// the lowest id then rejoins, which starts a new one. `true`: rejoin.
    fn check_group(&mut self) -> bool {
        let me = self.env.replica_id.clone();
        tracing::debug!(
            table = ?self
                .metadata
                .replicas()
                .iter()
                .map(|r| (r.replica_id.clone(), r.active.iter().map(|c| (c.partition, c.fence_offset)).collect::<Vec<_>>()))
                .collect::<Vec<_>>(),
            awaiting_assignment = ?self.awaiting_assignment.map(|t| t.elapsed().as_secs()),
            "replica table"
        );
        let taken: Vec<i32> = self
            .tasks
            .values()
            .filter(|t| {
                self.metadata.owner(t.partition).is_some_and(|o| {
                    o.replica_id != me
                        && o.active
                            .iter()
                            .any(|c| c.partition == t.partition && c.fence_offset > t.fence_offset)
                })
            })
            .map(|t| t.partition)
            .collect();
        if let Some(p) = taken.first() {
            self.lose_task(*p, "another replica opened the task after this one");
            return true;
        }
        let unowned: Vec<i32> = (0..self.metadata.partitions())
            .filter(|p| self.metadata.owner(*p).is_none())
            .collect();
        if unowned.is_empty() {
            self.unowned_since = None;
            return false;
        }
        let since = *self.unowned_since.get_or_insert_with(Instant::now);
        let lowest = self
            .metadata
            .replicas()
            .into_iter()
            .map(|r| r.replica_id)
            .min();
        if since.elapsed() > self.rejoin_after() && lowest.as_deref() == Some(me.as_str()) {
            crate::metrics::KafkaError {
                op: "stuck rebalance",
            }
            .emit();
            tracing::warn!(
                ?unowned,
                waited_s = since.elapsed().as_secs(),
                "partitions have had no owner for too long; rejoining the group to start a new rebalance"
            );
            self.unowned_since = None;
            return true;
        }
        false
    }

    /// Acts on rebalance callbacks: parks revoked tasks, fences and restores assigned ones.
    async fn handle_rebalance(&mut self, shutdown: &CancellationToken) -> Result<(), crate::Error> {
        let events: Vec<RebalanceEvent> =
            std::mem::take(&mut *self.events.lock().expect("events lock"));
        if events.is_empty() {
            return Ok(());
        }
        self.status.ready.store(false, Ordering::Release);
        for event in events {
            match event {
                RebalanceEvent::Revoke(partitions) => {
                    self.awaiting_assignment.get_or_insert_with(Instant::now);
                    for p in partitions {
                        self.registry.remove(p);
                        if let Some(task) = self.tasks.remove(&p) {
                            self.warm.insert(p, task.db);
                        }
                    }
                }
                RebalanceEvent::Assign(partitions) => {
                    self.awaiting_assignment = None;
                    for p in partitions {
                        if !self.tasks.contains_key(&p) {
                            self.open_task(p, shutdown).await?;
                        }
                    }
                }
            }
        }
        let assigned: Vec<i32> = self.tasks.keys().copied().collect();
        crate::metrics::Tasks {
            active: assigned.len(),
            standby: self.standby.partitions().len(),
        }
        .emit();
        *self.status.assigned.lock().expect("status lock") = assigned;
        self.status.ready.store(true, Ordering::Release);
        self.publish().await;
        Ok(())
    }

    /// Opens task `p`: its database (warm from a standby or an earlier assignment if there
    /// is one), fence, restore. Retries while outside systems fail.
    async fn open_task(
        &mut self,
        p: i32,
        shutdown: &CancellationToken,
    ) -> Result<(), crate::Error> {
        let began = Instant::now();
        let db = match self.standby.take(p)? {
            Some(db) => db,
            None => self.database(p).await?,
        };
        let mut wait = Duration::from_millis(200);
        let task = loop {
            let processor = (self.factory)(p);
            match Task::open(&self.env, p, db.clone(), processor).await {
                Ok(task) => break task,
                Err(e) if e.kind() == ErrorKind::External && !shutdown.is_cancelled() => {
                    tracing::warn!(partition = p, error = %e, retry_in_ms = wait.as_millis() as u64, "opening task failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Err(e) => return Err(e.into()),
            }
        };
        tracing::info!(
            partition = p,
            fence_offset = task.fence_offset,
            elapsed_ms = began.elapsed().as_millis() as u64,
            "task open"
        );
        self.registry.insert(db);
        self.tasks.insert(p, task);
        Ok(())
    }

    /// Partition `p`'s database: the parked one, or opened from disk.
    async fn database(&mut self, p: i32) -> Result<Arc<TaskDb>, StreamsError> {
        if let Some(db) = self.warm.remove(&p) {
            return Ok(db);
        }
        let dir = self.state_dir.join(format!("task-{p}"));
        let stores = self.env.stores.clone();
        Ok(Arc::new(
            tokio::task::spawn_blocking(move || TaskDb::open(&dir, p, &stores))
                .await
                .expect("open does not panic")?,
        ))
    }

    /// Starts and stops standbys to match this replica's duty in the replica table, and
    /// applies what their changelogs brought.
    fn keep_standbys(&mut self) -> Result<(), crate::Error> {
        if self.settings.num_standby_replicas == 0 {
            return Ok(());
        }
        let mut duty = self.metadata.standby_duty(
            self.metadata.replica_id(),
            self.settings.num_standby_replicas,
        );
        duty.retain(|p| !self.tasks.contains_key(p));
        let current = self.standby.partitions();
        for p in current.difference(&duty) {
            if let Some(db) = self.standby.take(*p)? {
                self.warm.insert(*p, db);
            }
        }
        for p in duty.difference(&current) {
            let db = match self.warm.remove(p) {
                Some(db) => db,
                None => {
                    let dir = self.state_dir.join(format!("task-{p}"));
                    Arc::new(TaskDb::open(&dir, *p, &self.env.stores)?)
                }
            };
            tracing::info!(partition = p, "standby started");
            self.standby.add(*p, db)?;
        }
        self.standby.poll()?;
        Ok(())
    }

    fn report_standby_lag(&mut self) {
        if self.settings.num_standby_replicas == 0 {
            return;
        }
        let lags = tokio::task::block_in_place(|| self.standby.lag());
        for (partition, lag) in &lags {
            crate::metrics::StandbyLag {
                partition: *partition,
                records: *lag,
            }
            .emit();
        }
        *self.status.standby_lag.lock().expect("status lock") = lags;
    }

    /// The replica table and this replica's input lag, as metrics.
    fn report_group(&self, consumer: &StreamConsumer<RebalanceListener>) {
        for (replica, seconds) in self.metadata.heartbeat_ages() {
            crate::metrics::ReplicaHeartbeatAge {
                replica: &replica,
                seconds,
            }
            .emit();
        }
        crate::metrics::PartitionsUnowned {
            count: (0..self.metadata.partitions())
                .filter(|p| self.metadata.owner(*p).is_none())
                .count(),
        }
        .emit();
        let Ok(positions) = consumer.position() else {
            return;
        };
        tokio::task::block_in_place(|| {
            for e in positions.elements_for_topic(&self.source) {
                if !self.tasks.contains_key(&e.partition()) {
                    continue;
                }
                let Ok((low, high)) =
                    consumer.fetch_watermarks(&self.source, e.partition(), Duration::from_secs(1))
                else {
                    continue;
                };
                let next = match e.offset() {
                    Offset::Offset(o) => o,
                    // Nothing consumed yet: everything retained is behind.
                    _ => low,
                };
                crate::metrics::ConsumerLag {
                    partition: e.partition(),
                    records: (high - next).max(0),
                }
                .emit();
            }
        });
    }

    /// Applies new entries of the replica table.
    fn read_replica_table(&mut self) {
        for _ in 0..1000 {
            match self.membership.poll(Duration::ZERO) {
                Some(Ok(m)) => {
                    let Some(id) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                        continue;
                    };
                    let info = match m.payload() {
                        None => None,
                        Some(v) => match serde_json::from_slice::<ReplicaInfo>(v) {
                            Ok(info) => Some(info),
                            Err(e) => {
                                tracing::warn!(replica = id, error = %e, "unreadable replica-table entry");
                                continue;
                            }
                        },
                    };
                    self.metadata.update(id, info);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "replica-table read failed");
                    break;
                }
                None => break,
            }
        }
    }

    fn holdings(&self) -> ReplicaInfo {
        ReplicaInfo {
            replica_id: self.env.replica_id.clone(),
            endpoint: self.settings.endpoint.clone(),
            active: self
                .tasks
                .values()
                .map(|t| ActiveClaim {
                    partition: t.partition,
                    fence_offset: t.fence_offset,
                })
                .collect(),
            standby: self.standby.partitions().into_iter().collect(),
            updated_ms: chrono::Utc::now().timestamp_millis(),
        }
    }

    /// Publishes this replica's holdings to the table (and notes them locally at once).
    async fn publish(&mut self) {
        let info = self.holdings();
        self.metadata.update(&info.replica_id, Some(info.clone()));
        self.last_publish = Some(Instant::now());
        let value = serde_json::to_vec(&info).expect("replica info serialises");
        send_table_entry(&self.env, Some(&value)).await;
    }

    async fn publish_leaving(&mut self) {
        self.metadata.update(&self.env.replica_id.clone(), None);
        send_table_entry(&self.env, None).await;
    }
}

/// Writes this replica's row of the replica table (`None`: it leaves).
async fn send_table_entry(env: &TaskEnv, value: Option<&[u8]>) {
    let batch = Batch::new();
    let topic = replicas_topic(&env.app_id);
    let sent = env
        .shared
        .send(
            &batch,
            Outgoing {
                topic: &topic,
                partition: Some(0),
                key: env.replica_id.as_bytes(),
                value,
                headers: None,
            },
        )
        .await;
    // The table is advisory and republished every heartbeat: a failed send is logged, not
    // fatal, and not waited for.
    if let Err(e) = sent {
        tracing::warn!(error = %e, "publishing to the replica table failed");
    }
}

/// Whether the consumer still holds `p` of `topic`.
fn still_assigned<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    p: i32,
) -> bool {
    consumer
        .assignment()
        .map(|a| a.find_partition(topic, p).is_some())
        .unwrap_or(false)
}

/// Commits `record`'s offset (at-least-once). The coordinator refuses a replica that is no
/// longer in the group's current generation.
fn commit<C: ConsumerContext + 'static>(consumer: &StreamConsumer<C>, record: &InputRecord) {
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

/// This replica's id, kept in the state directory so a restarted replica is the same
/// replica to the table.
fn replica_id(state_dir: &Path) -> Result<String, StreamsError> {
    let path = state_dir.join("replica-id");
    let io = |source: std::io::Error| StreamsError::StateDir {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) | Err(_) => {
            std::fs::create_dir_all(state_dir).map_err(io)?;
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "replica".into());
            let id = format!("{host}-{:08x}", fastrand::u32(..));
            std::fs::write(&path, &id).map_err(io)?;
            Ok(id)
        }
    }
}
