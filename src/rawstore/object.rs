//! A raw object as a local file, and its bytes mapped into memory without holding them.
//!
//! Parsers take a file's bytes as one slice. A memory map gives them that slice for a file
//! of any size; the pages a parser has left behind are handed back to the kernel as it goes
//! ([`MappedRaw::release_before`]), so a multi-GB file costs a bounded window of resident
//! memory, not its size.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A verified local copy of a raw object (or the object itself, for a local store).
#[derive(Debug)]
pub struct RawObject {
    path: PathBuf,
    /// Removed on drop: a temporary copy of a remote object.
    temporary: bool,
}

impl RawObject {
    /// The object file of a local store, left in place on drop.
    pub fn in_place(path: PathBuf) -> RawObject {
        RawObject {
            path,
            temporary: false,
        }
    }

    /// A temporary copy, removed when dropped.
    pub fn temporary(path: PathBuf) -> RawObject {
        RawObject {
            path,
            temporary: true,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Maps the bytes read-only.
    pub fn map(&self) -> std::io::Result<MappedRaw> {
        let file = std::fs::File::open(&self.path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            // An empty file cannot be mapped; it is an empty slice.
            return Ok(MappedRaw {
                map: None,
                released: AtomicUsize::new(0),
            });
        }
        // SAFETY: raw objects are written once under a temporary name and renamed into
        // place; nothing writes to them afterwards (content addressing: a key's bytes never
        // change), so the mapped bytes cannot change under the parser.
        let map = unsafe { memmap2::MmapOptions::new().map(&file)? };
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(MappedRaw {
            map: Some(map),
            released: AtomicUsize::new(0),
        })
    }
}

impl Drop for RawObject {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A raw object's bytes, memory-mapped. Dereferences to the whole file.
#[derive(Debug)]
pub struct MappedRaw {
    map: Option<memmap2::Mmap>,
    /// Bytes before this offset have been handed back to the kernel.
    released: AtomicUsize,
}

/// Pages are handed back in steps of this much, so the calls stay rare.
const RELEASE_STEP: usize = 16 << 20;

impl MappedRaw {
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }

    /// Tells the kernel the bytes before `offset` are not needed for now: their pages leave
    /// this process's resident memory (they stay in the page cache). Reading them again is
    /// still correct — it faults them back in from the file — so a second pass over the
    /// file, or a look back, costs time, never correctness. Cheap to call per record.
    pub fn release_before(&self, offset: u64) {
        let Some(map) = &self.map else { return };
        let page = page_size();
        let upto = (offset as usize).min(map.len()) / page * page;
        let from = self.released.load(Ordering::Relaxed);
        if upto < from + RELEASE_STEP {
            return;
        }
        // SAFETY: a read-only shared file mapping: after MADV_DONTNEED the range reads the
        // file's bytes again, which never change (see `RawObject::map`); no slice into it
        // is invalidated.
        let advised = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, upto - from)
        };
        if advised.is_ok() {
            self.released.store(upto, Ordering::Relaxed);
        }
    }

    /// Starts a new pass over the bytes (e.g. routing after validating).
    pub fn rewind(&self) {
        self.released.store(0, Ordering::Relaxed);
    }
}

impl std::ops::Deref for MappedRaw {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

fn page_size() -> usize {
    // The kernel's page size; 4 KiB on every platform this runs on, asked once.
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if n > 0 { n as usize } else { 4096 }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_object_reads_the_same_bytes_after_its_pages_are_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obj");
        let bytes: Vec<u8> = (0..(40u32 << 20) / 4)
            .flat_map(|i| i.to_le_bytes())
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let object = RawObject::temporary(path.clone());
        let mapped = object.map().unwrap();
        assert_eq!(mapped.len(), bytes.len());
        mapped.release_before(bytes.len() as u64 - 1);
        assert!(mapped.released.load(Ordering::Relaxed) >= 32 << 20);
        // Released pages are read back from the file.
        assert_eq!(&mapped[..], &bytes[..]);
        drop(mapped);
        drop(object);
        assert!(!path.exists(), "a temporary copy is removed when dropped");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let object = RawObject::in_place(empty.clone());
        assert!(object.map().unwrap().is_empty());
        drop(object);
        assert!(empty.exists(), "an object in place stays");
    }
}
