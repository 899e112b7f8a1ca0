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
use super::task::restore_config;

/// Records applied per call of [`Standby::poll`], so the runtime loop stays responsive.
const MAX_PER_POLL: usize = 5_000;

struct StandbyTask {
    db: Arc<TaskDb>,
    /// By changelog topic: the store and its applier.
    appliers: BTreeMap<String, ChangelogApplier>,
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
        self.readers.insert(db.clone());
        self.tasks.insert(partition, StandbyTask { db, appliers });
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
        for task in self.tasks.values_mut() {
            for applier in task.appliers.values_mut() {
                applier.flush(&task.db)?;
            }
        }
        Ok(applied)
    }

    /// Records behind the end of its changelogs, per standby partition.
    pub fn lag(&self) -> BTreeMap<i32, i64> {
        let mut lag = BTreeMap::new();
        for (partition, task) in &self.tasks {
            let mut behind = 0;
            for (topic, applier) in &task.appliers {
                if let Ok((_, high)) =
                    self.consumer
                        .fetch_watermarks(topic, *partition, Duration::from_secs(2))
                {
                    behind += (high - applier.next_offset()).max(0);
                }
            }
            lag.insert(*partition, behind);
        }
        lag
    }
}
