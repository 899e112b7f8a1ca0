//! Standby tasks: warm copies of other replicas' stores, kept by tailing their changelogs,
//! so that a failover restores only the last few records instead of everything.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::StreamsError;
use super::changelog::ChangelogApplier;
use super::runtime::changelog_topic;
use super::store::{StoreRegistry, TaskDb};
use super::task::{position, restore_config};

/// Records applied per call of [`Standby::poll`], so the runtime loop stays responsive.
const MAX_PER_POLL: usize = 5_000;

struct StandbyTask {
    db: Arc<TaskDb>,
    /// By changelog topic: the store and its applier.
    appliers: BTreeMap<String, ChangelogApplier>,
    /// By changelog topic: its end when the standby first looked (at its first lag report).
    catch_up_to: BTreeMap<String, i64>,
    /// Reached `catch_up_to` on every changelog: from then on it serves stale reads. Before,
    /// a standby built from nothing would answer "no such key" for keys it has yet to read.
    caught_up: bool,
}

impl StandbyTask {
    /// Moves each applier past offsets no record occupies (transaction markers, compaction
    /// holes), to where the consumer really is.
    fn advance(&mut self, consumer: &BaseConsumer, partition: i32) {
        for (topic, applier) in &mut self.appliers {
            if let Some(p) = position(consumer, topic, partition) {
                applier.skip_to(p);
            }
        }
    }

    /// Whether every changelog has reached the end it had when the standby started.
    fn reached_target(&mut self, consumer: &BaseConsumer, partition: i32) -> bool {
        self.advance(consumer, partition);
        let mut reached = self.catch_up_to.len() == self.appliers.len();
        for (topic, applier) in &self.appliers {
            reached &= self
                .catch_up_to
                .get(topic)
                .is_some_and(|end| applier.next_offset() >= *end);
        }
        reached
    }
}

/// The standby tasks of one replica.
pub(crate) struct Standby {
    app_id: String,
    stores: Vec<String>,
    consumer: BaseConsumer,
    tasks: BTreeMap<i32, StandbyTask>,
    /// The standby databases, for stale reads by the query API.
    readers: StoreRegistry,
}

impl Standby {
    pub fn new(
        client: &ClientConfig,
        app_id: &str,
        stores: &[String],
    ) -> Result<Standby, StreamsError> {
        let consumer = restore_config(client, &format!("{app_id}-standby"))
            .create()
            .map_err(|e| StreamsError::kafka("create standby consumer", e))?;
        Ok(Standby {
            app_id: app_id.to_string(),
            stores: stores.to_vec(),
            consumer,
            tasks: BTreeMap::new(),
            readers: StoreRegistry::default(),
        })
    }

    /// The standby databases, as readers see them (they follow `add` and `take`).
    pub fn readers(&self) -> StoreRegistry {
        self.readers.clone()
    }

    pub fn partitions(&self) -> BTreeSet<i32> {
        self.tasks.keys().copied().collect()
    }

    /// Adds a standby for `partition` on `db`, continuing from its checkpoints.
    pub fn add(&mut self, partition: i32, db: Arc<TaskDb>) -> Result<(), StreamsError> {
        let mut appliers = BTreeMap::new();
        for store in &self.stores {
            let start = db.checkpoint(store)?.unwrap_or(0);
            appliers.insert(
                changelog_topic(&self.app_id, store),
                ChangelogApplier::resume(&db, store, start)?,
            );
        }
        let tpl = Self::partition_list(partition, &appliers)?;
        self.tasks.insert(
            partition,
            StandbyTask {
                db,
                appliers,
                catch_up_to: BTreeMap::new(),
                caught_up: false,
            },
        );
        // Incremental: replacing the whole assignment while librdkafka is still stopping
        // the previous one's partitions trips an assertion in librdkafka 2.12.
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| StreamsError::kafka("assign standby partition", e))
    }

    /// Stops the standby of `partition` and hands its database back, flushed.
    pub fn take(&mut self, partition: i32) -> Result<Option<Arc<TaskDb>>, StreamsError> {
        let Some(mut task) = self.tasks.remove(&partition) else {
            return Ok(None);
        };
        self.readers.remove(partition);
        for applier in task.appliers.values_mut() {
            applier.flush(&task.db)?;
        }
        let tpl = Self::partition_list(partition, &task.appliers)?;
        self.consumer
            .incremental_unassign(&tpl)
            .map_err(|e| StreamsError::kafka("unassign standby partition", e))?;
        Ok(Some(task.db))
    }

    /// The changelog partitions of one standby, at the offsets its appliers continue from.
    fn partition_list(
        partition: i32,
        appliers: &BTreeMap<String, ChangelogApplier>,
    ) -> Result<TopicPartitionList, StreamsError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, applier) in appliers {
            tpl.add_partition_offset(topic, partition, Offset::Offset(applier.next_offset()))
                .map_err(|e| StreamsError::kafka("standby assignment", e))?;
        }
        Ok(tpl)
    }

    /// Applies what has arrived on the standby changelogs, without waiting.
    pub fn poll(&mut self) -> Result<usize, StreamsError> {
        if self.tasks.is_empty() {
            return Ok(0);
        }
        let mut applied = 0;
        while applied < MAX_PER_POLL {
            match self.consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => {
                    if let Some(task) = self.tasks.get_mut(&m.partition())
                        && let Some(applier) = task.appliers.get_mut(m.topic())
                    {
                        applier.offer(&task.db, &m)?;
                        applied += 1;
                    }
                }
                Some(Err(e)) => {
                    crate::metrics::KafkaError { op: "standby" }.emit();
                    tracing::warn!(error = %e, "standby read failed");
                    break;
                }
                None => break,
            }
        }
        for (partition, task) in &mut self.tasks {
            for applier in task.appliers.values_mut() {
                applier.flush(&task.db)?;
            }
            if !task.caught_up && task.reached_target(&self.consumer, *partition) {
                task.caught_up = true;
                self.readers.insert(task.db.clone());
                tracing::info!(
                    partition,
                    "standby caught up with its changelogs; it serves stale reads"
                );
            }
        }
        Ok(applied)
    }

    /// Records behind the end of its changelogs, per standby partition. The first ends
    /// seen are what a new standby must reach before it serves stale reads.
    pub fn lag(&mut self) -> BTreeMap<i32, i64> {
        let mut lag = BTreeMap::new();
        for (partition, task) in &mut self.tasks {
            let mut behind = 0;
            task.advance(&self.consumer, *partition);
            for (topic, applier) in &task.appliers {
                if let Ok((_, high)) =
                    self.consumer
                        .fetch_watermarks(topic, *partition, Duration::from_secs(2))
                {
                    behind += (high - applier.next_offset()).max(0);
                    task.catch_up_to.entry(topic.clone()).or_insert(high);
                }
            }
            lag.insert(*partition, behind);
        }
        lag
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    use super::*;

    /// A standby built from nothing serves no reads until it holds everything its
    /// changelog held when it started; then it does, and it keeps following.
    #[test]
    fn a_new_standby_serves_reads_only_once_it_has_caught_up() {
        const KEYS: usize = 20_000;
        let mock = MockCluster::new(1).unwrap();
        let topic = changelog_topic("app", "s");
        mock.create_topic(&topic, 1, 1).unwrap();
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", mock.bootstrap_servers());
        let producer: ThreadedProducer<DefaultProducerContext> = client.create().unwrap();
        let send = |i: usize| {
            let key = format!("k{i:06}");
            producer
                .send(
                    BaseRecord::<str, str>::to(&topic)
                        .partition(0)
                        .key(&key)
                        .payload("v"),
                )
                .map_err(|(e, _)| e)
                .unwrap();
        };
        (0..KEYS).for_each(send);
        producer.flush(Duration::from_secs(10)).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(TaskDb::open(dir.path(), 0, &["s".to_string()]).unwrap());
        let mut standby = Standby::new(&client, "app", &["s".to_string()]).unwrap();
        let readers = standby.readers();
        standby.add(0, db.clone()).unwrap();
        assert!(
            readers.task(0).is_none(),
            "served reads before reading a thing"
        );

        // Polls as the runtime loop does, with a lag report (which learns the end) now and
        // then; more records arrive meanwhile. Reads are refused until every key written
        // before the first report is in the store.
        let began = Instant::now();
        let mut polls = 0;
        while readers.task(0).is_none() {
            assert!(began.elapsed() < Duration::from_secs(30), "never caught up");
            if polls % 3 == 0 {
                let lag = standby.lag();
                assert!(lag.contains_key(&0), "no lag reported: {lag:?}");
            }
            if polls == 1 {
                (KEYS..KEYS + 100).for_each(send);
                producer.flush(Duration::from_secs(10)).unwrap();
            }
            standby.poll().unwrap();
            let held = db.scan("s", b"k", None, usize::MAX).unwrap().len();
            if readers.task(0).is_none() {
                assert!(held < KEYS, "all {KEYS} keys held, yet no reads served");
            }
            polls += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        let held = db.scan("s", b"k", None, usize::MAX).unwrap().len();
        assert!(held >= KEYS, "serves reads holding {held} of {KEYS} keys");
        assert!(polls > 1, "caught up in one poll; the test proves nothing");

        // Caught up, it keeps following and keeps serving.
        (KEYS + 100..KEYS + 200).for_each(send);
        producer.flush(Duration::from_secs(10)).unwrap();
        while db
            .get("s", format!("k{:06}", KEYS + 199).as_bytes())
            .unwrap()
            .is_none()
        {
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "stopped following"
            );
            standby.poll().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(readers.task(0).is_some());
        assert_eq!(standby.lag().get(&0), Some(&0));
    }
}
