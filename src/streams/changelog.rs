//! Changelog records, and the fence that keeps a replica that lost a partition (a zombie)
//! from changing anyone's view of it.
//!
//! Every changelog record carries the writing task's owner token in a header. When a task
//! opens, it first appends a fence marker (key `\0fence\0<token>`) to each of its store
//! changelog partitions, then restores up to and including its marker. Whoever reads a
//! changelog (a restore, a standby) follows one rule: after a marker, only records carrying
//! that marker's token are applied. A zombie's writes that land after the new owner's
//! marker are therefore ignored by every reader, now and later; writes that landed before
//! it are applied by the new owner too, so all readers agree.
//!
//! Markers have unique keys, so compaction never removes one and the order between a
//! marker and the records around it survives compaction. Keys starting with a zero byte are
//! reserved for the runtime.

use std::collections::HashMap;

use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};

use super::StreamsError;
use super::store::TaskDb;

/// Header with the writing task's owner token.
pub const OWNER_HEADER: &str = "credstream.owner";
const FENCE_PREFIX: &[u8] = b"\0fence\0";

/// Records applied per store write while restoring.
const CHUNK: usize = 10_000;

/// A task incarnation's identity: random, so two incarnations never share one.
pub fn new_owner_token() -> u64 {
    // Zero means "no owner known" in the store's metadata.
    fastrand::u64(1..)
}

pub fn fence_key(token: u64) -> Vec<u8> {
    let mut key = FENCE_PREFIX.to_vec();
    key.extend_from_slice(format!("{token:016x}").as_bytes());
    key
}

pub fn owner_headers(token: u64) -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: OWNER_HEADER,
        value: Some(&token.to_be_bytes()),
    })
}

fn owner_of(message: &BorrowedMessage<'_>) -> Option<u64> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == OWNER_HEADER)
        .and_then(|h| {
            h.value
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map(u64::from_be_bytes)
        })
}

/// Applies one store partition's changelog records in order, honouring fence markers.
pub struct ChangelogApplier {
    store: String,
    /// The owner whose writes are applied; `None` before any marker was seen.
    owner: Option<u64>,
    /// Offset after the last record offered.
    next: i64,
    chunk: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Records taken into the store so far.
    pub applied: u64,
    /// Zombie writes skipped so far.
    pub ignored: u64,
}

impl ChangelogApplier {
    /// Continues from the store's checkpoint and recorded owner.
    pub fn resume(db: &TaskDb, store: &str, start: i64) -> Result<ChangelogApplier, StreamsError> {
        Ok(ChangelogApplier {
            store: store.to_string(),
            owner: db.owner(store)?,
            next: start,
            chunk: Vec::new(),
            applied: 0,
            ignored: 0,
        })
    }

    /// Offset after the last record offered.
    pub fn next_offset(&self) -> i64 {
        self.next
    }

    /// Moves the position on without a record (compaction holes, transaction markers).
    pub fn skip_to(&mut self, next: i64) {
        self.next = self.next.max(next);
    }

    /// Takes one record; writes to `db` when a chunk is full.
    pub fn offer(
        &mut self,
        db: &TaskDb,
        message: &BorrowedMessage<'_>,
    ) -> Result<(), StreamsError> {
        self.next = message.offset() + 1;
        let Some(key) = message.key() else {
            return Ok(());
        };
        if key.starts_with(FENCE_PREFIX) {
            // Everything before the marker belongs to the previous owner and is applied.
            self.flush(db)?;
            self.owner = owner_of(message);
            return Ok(());
        }
        match (self.owner, owner_of(message)) {
            (Some(current), Some(writer)) if current != writer => {
                self.ignored += 1;
                crate::metrics::FencedWriteIgnored { store: &self.store }.emit();
            }
            _ => {
                self.chunk
                    .push((key.to_vec(), message.payload().map(<[u8]>::to_vec)));
                self.applied += 1;
                if self.chunk.len() >= CHUNK {
                    self.flush(db)?;
                }
            }
        }
        Ok(())
    }

    /// Writes what is pending, with the checkpoint and owner, in one batch.
    pub fn flush(&mut self, db: &TaskDb) -> Result<(), StreamsError> {
        let records = self.chunk.len() as u64;
        db.apply_restored(&self.store, &self.chunk, self.next, self.owner)?;
        self.chunk.clear();
        if records > 0 {
            crate::metrics::RestoreProgress {
                store: &self.store,
                records,
            }
            .emit();
        }
        Ok(())
    }
}

/// The highest acknowledged offset per changelog partition, mapped to its store.
pub fn checkpoints(
    offsets: HashMap<(String, i32), i64>,
    topics: &HashMap<String, String>,
) -> HashMap<String, i64> {
    offsets
        .into_iter()
        .filter_map(|((topic, _), offset)| topics.get(&topic).map(|s| (s.clone(), offset + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    use super::*;
    use crate::streams::task::restore;

    /// A zombie (owner A) writes after the new owner's (B's) marker: every reader ignores
    /// that write, and takes everything else in log order.
    #[test]
    fn writes_after_a_newer_owners_marker_are_ignored() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("app-s-changelog", 1, 1).unwrap();
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", mock.bootstrap_servers());
        let producer: ThreadedProducer<DefaultProducerContext> = client.create().unwrap();
        let (a, b) = (11u64, 22u64);
        let log: Vec<(Vec<u8>, &[u8], u64)> = vec![
            (fence_key(a), b"{}", a),
            (b"k1".to_vec(), b"a1", a),
            (b"k9".to_vec(), b"a9", a),
            (fence_key(b), b"{}", b),
            (b"k2".to_vec(), b"b2", b),
            (b"k3".to_vec(), b"zombie", a),
            (b"k1".to_vec(), b"b1", b),
        ];
        for (key, value, owner) in &log {
            producer
                .send(
                    BaseRecord::<[u8], [u8]>::to("app-s-changelog")
                        .partition(0)
                        .key(key.as_slice())
                        .payload(*value)
                        .headers(owner_headers(*owner)),
                )
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer.flush(Duration::from_secs(5)).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let db = TaskDb::open(dir.path(), 0, &["s".to_string()]).unwrap();
        let applied = restore(&client, &db, "s", "app-s-changelog", 0, log.len() as i64).unwrap();
        assert_eq!(applied, 4);
        assert_eq!(db.get("s", b"k1").unwrap(), Some(b"b1".to_vec()));
        assert_eq!(db.get("s", b"k2").unwrap(), Some(b"b2".to_vec()));
        assert_eq!(
            db.get("s", b"k9").unwrap(),
            Some(b"a9".to_vec()),
            "written before the takeover"
        );
        assert_eq!(
            db.get("s", b"k3").unwrap(),
            None,
            "the zombie's write was applied"
        );
        assert_eq!(db.owner("s").unwrap(), Some(b));
        assert_eq!(db.checkpoint("s").unwrap(), Some(log.len() as i64));
    }
}
