//! State stores: one RocksDB instance per task, a column family per store, and the
//! changelog checkpoint of each store in a `__meta` column family, written in the same
//! atomic batch as the data it describes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch,
};

use super::StreamsError;

const META_CF: &str = "__meta";

/// A store's column family options. Processors ask for keys that are mostly absent (a
/// file's dedup key, a new account): a bloom filter per table (10 bits per key, ~1 %
/// false positives) answers most of those without reading a data block.
fn store_options() -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    let mut options = Options::default();
    options.set_block_based_table_factory(&table);
    // The same for the memtable, where the newest keys are: without it every lookup of an
    // absent key walks the skip list (a third of a check-and-insert's time). Sized at 2 %
    // of the write buffer (1.3 MB, ~10–50 bits per key for 100–500-byte entries), held per
    // memtable of every store of every task: at 10 % the e2e bench's pipeline held 270 MiB
    // more.
    options.set_memtable_whole_key_filtering(true);
    options.set_memtable_prefix_bloom_ratio(0.02);
    options
}

/// Key-value pairs read from a store.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn checkpoint_key(store: &str) -> Vec<u8> {
    format!("checkpoint/{store}").into_bytes()
}

fn owner_key(store: &str) -> Vec<u8> {
    format!("owner/{store}").into_bytes()
}

const STREAM_TIME_KEY: &[u8] = b"stream-time";

fn read_i64(raw: Option<Vec<u8>>) -> Option<i64> {
    raw.and_then(|b| {
        <[u8; 8]>::try_from(b.as_slice())
            .ok()
            .map(i64::from_be_bytes)
    })
}

fn err(store: &str) -> impl FnOnce(rocksdb::Error) -> StreamsError + '_ {
    move |source| StreamsError::Store {
        store: store.to_string(),
        source,
    }
}

/// The stores of one task (one input partition).
pub struct TaskDb {
    partition: i32,
    db: DB,
}

impl std::fmt::Debug for TaskDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskDb")
            .field("partition", &self.partition)
            .finish()
    }
}

impl TaskDb {
    /// Opens (or creates) the task's database at `dir` with a column family per store.
    pub fn open(dir: &Path, partition: i32, stores: &[String]) -> Result<TaskDb, StreamsError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Small stores, many tasks: keep the per-instance footprint modest.
        options.set_max_background_jobs(2);
        let mut cfs: Vec<ColumnFamilyDescriptor> = stores
            .iter()
            .map(|s| ColumnFamilyDescriptor::new(s, store_options()))
            .collect();
        cfs.push(ColumnFamilyDescriptor::new(META_CF, Options::default()));
        std::fs::create_dir_all(dir).map_err(|e| StreamsError::Restore {
            store: "*".into(),
            partition,
            message: format!("cannot create {}: {e}", dir.display()),
        })?;
        let db = DB::open_cf_descriptors(&options, dir, cfs).map_err(err("open"))?;
        Ok(TaskDb { partition, db })
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    fn cf(&self, store: &str) -> Result<&rocksdb::ColumnFamily, StreamsError> {
        self.db.cf_handle(store).ok_or_else(|| StreamsError::Topic {
            topic: store.to_string(),
            message: "no such store in this topology".into(),
        })
    }

    /// The next changelog offset to restore from, if the store has a checkpoint.
    pub fn checkpoint(&self, store: &str) -> Result<Option<i64>, StreamsError> {
        self.meta(&checkpoint_key(store), store)
    }

    /// The owner token whose changelog writes the store last accepted (see `changelog`).
    pub fn owner(&self, store: &str) -> Result<Option<u64>, StreamsError> {
        Ok(self
            .meta(&owner_key(store), store)?
            .map(|v| v as u64)
            .filter(|v| *v != 0))
    }

    /// The task's stream time: the largest input timestamp it has processed.
    pub fn stream_time(&self) -> Result<Option<i64>, StreamsError> {
        self.meta(STREAM_TIME_KEY, "meta")
    }

    fn meta(&self, key: &[u8], what: &str) -> Result<Option<i64>, StreamsError> {
        let meta = self.cf(META_CF)?;
        Ok(read_i64(self.db.get_cf(meta, key).map_err(err(what))?))
    }

    pub fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StreamsError> {
        self.db.get_cf(self.cf(store)?, key).map_err(err(store))
    }

    /// Entries of `store` whose key starts with `prefix`, from `start` (inclusive) if given,
    /// in key order, at most `limit`.
    pub fn scan(
        &self,
        store: &str,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StreamsError> {
        let from = match start {
            Some(s) if s > prefix => s,
            _ => prefix,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(store)?,
            IteratorMode::From(from, Direction::Forward),
        ) {
            let (k, v) = item.map_err(err(store))?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// Applies staged writes, the stores' new checkpoints and the stream time in one
    /// atomic batch. The staged writes are moved into the batch, so they are held once,
    /// not twice; `writes` is empty afterwards.
    pub fn apply(
        &self,
        writes: &mut StoreWrites,
        checkpoints: &HashMap<String, i64>,
        stream_time: Option<i64>,
    ) -> Result<(), StreamsError> {
        // Sized up front: a snapshot's unit stages hundreds of MB, and growing the batch by
        // doubling copied it over and over.
        let bytes: usize = writes
            .staged
            .values()
            .flat_map(|entries| entries.iter())
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + BATCH_ENTRY_OVERHEAD)
            .sum();
        let mut batch = WriteBatch::with_capacity_bytes(bytes + BATCH_ENTRY_OVERHEAD * 4);
        for (store, entries) in &mut writes.staged {
            let cf = self.cf(store)?;
            // In key order: the memtable's skip list then finds each insert's place next
            // to the previous one's, instead of searching from the top for every key.
            let mut entries: Vec<_> = entries.drain().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (key, value) in entries {
                match value {
                    Some(v) => batch.put_cf(cf, key, v),
                    None => batch.delete_cf(cf, key),
                }
            }
        }
        let meta = self.cf(META_CF)?;
        for (store, next) in checkpoints {
            batch.put_cf(meta, checkpoint_key(store), next.to_be_bytes());
        }
        if let Some(t) = stream_time {
            batch.put_cf(meta, STREAM_TIME_KEY, t.to_be_bytes());
        }
        self.db.write(batch).map_err(err("apply"))
    }

    /// Applies restored changelog records (`None`: tombstone), the checkpoint and the
    /// owner whose writes are being accepted.
    pub fn apply_restored(
        &self,
        store: &str,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
        next_offset: i64,
        owner: Option<u64>,
    ) -> Result<(), StreamsError> {
        let cf = self.cf(store)?;
        let mut batch = WriteBatch::default();
        for (key, value) in records {
            match value {
                Some(v) => batch.put_cf(cf, key, v),
                None => batch.delete_cf(cf, key),
            }
        }
        let meta = self.cf(META_CF)?;
        batch.put_cf(meta, checkpoint_key(store), next_offset.to_be_bytes());
        batch.put_cf(meta, owner_key(store), owner.unwrap_or(0).to_be_bytes());
        self.db.write(batch).map_err(err(store))
    }

    /// Empties a store and forgets its checkpoint: for a changelog that no longer matches.
    pub fn wipe(&self, store: &str) -> Result<(), StreamsError> {
        let cf = self.cf(store)?;
        let mut batch = WriteBatch::default();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item.map_err(err(store))?;
            batch.delete_cf(cf, k);
        }
        let meta = self.cf(META_CF)?;
        batch.delete_cf(meta, checkpoint_key(store));
        batch.delete_cf(meta, owner_key(store));
        self.db.write(batch).map_err(err(store))
    }
}

/// What a write batch adds to each entry besides its key and value, at most: a type tag,
/// a column family id and two length prefixes (varints).
const BATCH_ENTRY_OVERHEAD: usize = 16;

/// One store's staged writes: key → value (`None`: a delete). Hashed, not ordered: a unit
/// of work can stage millions (a snapshot's accounts and balances), nothing reads them in
/// order, and a B-tree's key comparisons were a sixth of such a unit's CPU.
pub type Staged = HashMap<Vec<u8>, Option<Vec<u8>>, foldhash::fast::RandomState>;

/// Writes staged by one input record, readable before they are applied.
pub struct StoreWrites {
    task: Arc<TaskDb>,
    staged: BTreeMap<String, Staged>,
}

impl StoreWrites {
    pub fn new(task: Arc<TaskDb>) -> StoreWrites {
        StoreWrites {
            task,
            staged: BTreeMap::new(),
        }
    }

    pub fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StreamsError> {
        if let Some(staged) = self.staged.get(store).and_then(|s| s.get(key)) {
            return Ok(staged.clone());
        }
        self.task.get(store, key)
    }

    /// The store as applied (staged writes not included): the task database itself, for
    /// scans (see [`TaskDb::scan`]).
    pub fn applied(&self) -> &TaskDb {
        &self.task
    }

    /// The staged write of `key` (`Some(None)`: a delete), if there is one.
    pub fn staged_value(&self, store: &str, key: &[u8]) -> Option<Option<&[u8]>> {
        self.staged.get(store)?.get(key).map(|v| v.as_deref())
    }

    pub fn put(&mut self, store: &str, key: &[u8], value: Option<&[u8]>) {
        let value = value.map(<[u8]>::to_vec);
        match self.staged.get_mut(store) {
            Some(entries) => {
                entries.insert(key.to_vec(), value);
            }
            None => {
                let mut entries = Staged::default();
                entries.insert(key.to_vec(), value);
                self.staged.insert(store.to_string(), entries);
            }
        }
    }

    /// Staged entries per store.
    pub fn staged(&self) -> impl Iterator<Item = (&str, &Staged)> {
        self.staged.iter().map(|(s, e)| (s.as_str(), e))
    }

    pub fn is_empty(&self) -> bool {
        self.staged.values().all(Staged::is_empty)
    }

    /// Writes staged, over all stores.
    pub fn len(&self) -> usize {
        self.staged.values().map(Staged::len).sum()
    }

    /// Applies the staged writes to the store now, without moving any checkpoint (the
    /// unit's commit does that), and empties them.
    pub fn apply_now(&mut self) -> Result<(), StreamsError> {
        let task = Arc::clone(&self.task);
        task.apply(self, &HashMap::new(), None)
    }
}

/// The task databases open in this process, for readers such as the query API.
#[derive(Clone, Debug, Default)]
pub struct StoreRegistry {
    tasks: Arc<RwLock<BTreeMap<i32, Arc<TaskDb>>>>,
}

impl StoreRegistry {
    pub(crate) fn insert(&self, task: Arc<TaskDb>) {
        self.tasks
            .write()
            .expect("registry lock")
            .insert(task.partition(), task);
    }

    pub(crate) fn remove(&self, partition: i32) {
        self.tasks
            .write()
            .expect("registry lock")
            .remove(&partition);
    }

    /// Partitions whose stores are open here.
    pub fn partitions(&self) -> Vec<i32> {
        self.tasks
            .read()
            .expect("registry lock")
            .keys()
            .copied()
            .collect()
    }

    /// The database of `partition`, if it is open here.
    pub fn task(&self, partition: i32) -> Option<Arc<TaskDb>> {
        self.tasks
            .read()
            .expect("registry lock")
            .get(&partition)
            .cloned()
    }

    /// Reads `key` from `store` in whichever local partition has it.
    pub fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StreamsError> {
        for task in self.snapshot() {
            if let Some(v) = task.get(store, key)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Entries of `store` with `prefix` across local partitions, merged in key order,
    /// starting at `start` (inclusive), at most `limit`.
    pub fn scan(
        &self,
        store: &str,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StreamsError> {
        let mut all = Vec::new();
        for task in self.snapshot() {
            all.extend(task.scan(store, prefix, start, limit)?);
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.truncate(limit);
        Ok(all)
    }

    fn snapshot(&self) -> Vec<Arc<TaskDb>> {
        self.tasks
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_checkpoints_land_together_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let stores = vec!["dedup".to_string(), "ledger".to_string()];
        let task = Arc::new(TaskDb::open(dir.path(), 3, &stores).unwrap());
        let mut writes = StoreWrites::new(task.clone());
        writes.put("dedup", b"k", Some(b"v"));
        assert_eq!(writes.get("dedup", b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            task.get("dedup", b"k").unwrap(),
            None,
            "staged, not applied"
        );
        task.apply(
            &mut writes,
            &HashMap::from([("dedup".to_string(), 42)]),
            Some(7),
        )
        .unwrap();
        drop(writes);
        drop(task);
        let task = TaskDb::open(dir.path(), 3, &stores).unwrap();
        assert_eq!(task.get("dedup", b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(task.checkpoint("dedup").unwrap(), Some(42));
        assert_eq!(task.checkpoint("ledger").unwrap(), None);
        assert_eq!(task.stream_time().unwrap(), Some(7));
        task.apply_restored(
            "ledger",
            &[(b"a".to_vec(), Some(b"b".to_vec()))],
            9,
            Some(5),
        )
        .unwrap();
        assert_eq!(task.owner("ledger").unwrap(), Some(5));
        assert_eq!(task.checkpoint("ledger").unwrap(), Some(9));
        task.wipe("dedup").unwrap();
        assert_eq!(task.get("dedup", b"k").unwrap(), None);
        assert_eq!(task.checkpoint("dedup").unwrap(), None);
    }

    #[test]
    fn scans_merge_partitions_in_key_order_with_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let stores = vec!["ledger".to_string()];
        let registry = StoreRegistry::default();
        for (p, keys) in [(0, ["a/1", "b/1"]), (1, ["a/2", "c/1"])] {
            let task = Arc::new(TaskDb::open(&dir.path().join(p.to_string()), p, &stores).unwrap());
            let mut writes = StoreWrites::new(task.clone());
            for k in keys {
                writes.put("ledger", k.as_bytes(), Some(b"x"));
            }
            task.apply(&mut writes, &HashMap::new(), None).unwrap();
            registry.insert(task);
        }
        let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| {
            v.into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(registry.scan("ledger", b"", None, 10).unwrap()),
            ["a/1", "a/2", "b/1", "c/1"]
        );
        assert_eq!(
            keys(registry.scan("ledger", b"a/", None, 10).unwrap()),
            ["a/1", "a/2"]
        );
        assert_eq!(
            keys(registry.scan("ledger", b"", Some(b"a/2"), 2).unwrap()),
            ["a/2", "b/1"]
        );
        assert_eq!(registry.get("ledger", b"c/1").unwrap(), Some(b"x".to_vec()));
    }
}
