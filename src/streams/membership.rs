//! Who owns which partition, for interactive queries and standby placement.
//!
//! Every replica publishes what it holds — its active tasks with the offset of their fence
//! marker, its standby tasks, and its query endpoint — to the compacted topic
//! `<application id>-replicas`, keyed by replica id, on every rebalance and every few
//! seconds as a heartbeat. Every replica reads the topic. The owner of a partition is the
//! live replica whose claim has the highest fence-marker offset: a new owner always writes
//! its marker after the previous owner's, so the answer follows takeovers without waiting
//! for the previous owner to notice it lost the partition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::KeyPartitioner;
use super::partitioner::partition_for_key;

/// A replica that has not published for this long is considered gone.
pub const LIVENESS_MS: i64 = 15_000;
/// How often a replica republishes its holdings.
pub const HEARTBEAT_MS: i64 = 3_000;

/// An active task a replica holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveClaim {
    pub partition: i32,
    /// Offset of the task's fence marker in its first store's changelog.
    pub fence_offset: i64,
}

/// What one replica holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    pub replica_id: String,
    /// `host:port` of its query API, if it serves one.
    pub endpoint: Option<String>,
    pub active: Vec<ActiveClaim>,
    pub standby: Vec<i32>,
    pub updated_ms: i64,
}

/// The replica table, shared with readers such as the query API.
#[derive(Clone)]
pub struct StreamsMetadata {
    replica_id: String,
    partitions: i32,
    table: Arc<RwLock<BTreeMap<String, ReplicaInfo>>>,
    partition_of: Arc<KeyPartitioner>,
}

impl std::fmt::Debug for StreamsMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsMetadata")
            .field("replica_id", &self.replica_id)
            .field("partitions", &self.partitions)
            .finish()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl StreamsMetadata {
    pub fn new(replica_id: &str, partitions: i32, partition_of: KeyPartitioner) -> StreamsMetadata {
        StreamsMetadata {
            replica_id: replica_id.to_string(),
            partitions,
            table: Arc::default(),
            partition_of: Arc::new(partition_of),
        }
    }

    /// This replica's id.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// Partitions of the input topic (and so of every store).
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// The partition a key of the input topic goes to.
    pub fn partition_for_key(&self, key: &[u8]) -> i32 {
        partition_for_key(key, self.partitions)
    }

    /// The partition holding `key` of `store`, if the topology can tell.
    pub fn partition_of(&self, store: &str, key: &[u8]) -> Option<i32> {
        (self.partition_of)(store, key, self.partitions)
    }

    /// Records a replica's publication (`None`: it left).
    pub(crate) fn update(&self, replica_id: &str, info: Option<ReplicaInfo>) {
        let mut table = self.table.write().expect("metadata lock");
        match info {
            Some(info) => {
                table.insert(replica_id.to_string(), info);
            }
            None => {
                table.remove(replica_id);
            }
        }
    }

    /// Replicas heard from recently, by id.
    pub fn replicas(&self) -> Vec<ReplicaInfo> {
        let now = now_ms();
        self.table
            .read()
            .expect("metadata lock")
            .values()
            .filter(|r| now - r.updated_ms <= LIVENESS_MS)
            .cloned()
            .collect()
    }

    /// Seconds since each known replica last published, the departed excepted.
    pub fn heartbeat_ages(&self) -> Vec<(String, f64)> {
        let now = now_ms();
        self.table
            .read()
            .expect("metadata lock")
            .values()
            .map(|r| {
                (
                    r.replica_id.clone(),
                    (now - r.updated_ms).max(0) as f64 / 1000.0,
                )
            })
            .collect()
    }

    /// The replica that owns `partition` now, if one is known and alive.
    pub fn owner(&self, partition: i32) -> Option<ReplicaInfo> {
        self.replicas()
            .into_iter()
            .filter_map(|r| {
                let claim = r.active.iter().find(|c| c.partition == partition)?;
                Some((claim.fence_offset, r))
            })
            .max_by_key(|(offset, _)| *offset)
            .map(|(_, r)| r)
    }

    /// Replicas keeping a warm copy of `partition`.
    pub fn standbys(&self, partition: i32) -> Vec<ReplicaInfo> {
        self.replicas()
            .into_iter()
            .filter(|r| r.standby.contains(&partition))
            .collect()
    }

    /// The partitions `replica_id` should keep standby copies of: for each partition with a
    /// known owner, the `count` live replicas after the owner in id order.
    pub fn standby_duty(&self, replica_id: &str, count: usize) -> BTreeSet<i32> {
        let mut duty = BTreeSet::new();
        if count == 0 {
            return duty;
        }
        let ring: Vec<String> = self.replicas().into_iter().map(|r| r.replica_id).collect();
        for p in 0..self.partitions {
            let Some(owner) = self.owner(p) else { continue };
            let Some(at) = ring.iter().position(|id| *id == owner.replica_id) else {
                continue;
            };
            let chosen = (1..ring.len())
                .map(|step| &ring[(at + step) % ring.len()])
                .take(count);
            if chosen.into_iter().any(|id| id == replica_id) {
                duty.insert(p);
            }
        }
        duty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(id: &str, active: &[(i32, i64)], updated_ms: i64) -> ReplicaInfo {
        ReplicaInfo {
            replica_id: id.into(),
            endpoint: Some(format!("{id}:8080")),
            active: active
                .iter()
                .map(|&(partition, fence_offset)| ActiveClaim {
                    partition,
                    fence_offset,
                })
                .collect(),
            standby: vec![],
            updated_ms,
        }
    }

    #[test]
    fn the_latest_fence_wins_and_silent_replicas_drop_out() {
        let m = StreamsMetadata::new("a", 3, Box::new(|_, _, _| None));
        let now = now_ms();
        m.update("a", Some(replica("a", &[(0, 5), (1, 2)], now)));
        // b took partition 1 over: its marker is later than a's.
        m.update("b", Some(replica("b", &[(1, 9), (2, 1)], now)));
        assert_eq!(m.owner(0).unwrap().replica_id, "a");
        assert_eq!(m.owner(1).unwrap().replica_id, "b");
        assert_eq!(m.owner(2).unwrap().replica_id, "b");
        // c's claim is later still, but c has not been heard from for too long.
        m.update("c", Some(replica("c", &[(0, 50)], now - LIVENESS_MS - 1)));
        assert_eq!(m.owner(0).unwrap().replica_id, "a");
        m.update("b", None);
        assert_eq!(m.owner(1).unwrap().replica_id, "a");
        assert!(m.owner(2).is_none());
    }

    #[test]
    fn standbys_go_to_the_next_replicas_after_the_owner() {
        let m = StreamsMetadata::new("a", 3, Box::new(|_, _, _| None));
        let now = now_ms();
        m.update("a", Some(replica("a", &[(0, 1)], now)));
        m.update("b", Some(replica("b", &[(1, 1)], now)));
        m.update("c", Some(replica("c", &[(2, 1)], now)));
        assert_eq!(m.standby_duty("a", 1), BTreeSet::from([2]));
        assert_eq!(m.standby_duty("b", 1), BTreeSet::from([0]));
        assert_eq!(m.standby_duty("a", 2), BTreeSet::from([1, 2]));
        assert!(m.standby_duty("a", 0).is_empty());
    }
}
