//! What a poller has emitted, kept in a small JSON file so a restart does not emit an
//! unchanged file again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::PollerError;

/// One emitted file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenFile {
    pub size: u64,
    pub mtime_ms: i64,
    pub sha256: String,
}

/// Emitted files by path, persisted on every change.
#[derive(Debug)]
pub struct PollerState {
    path: PathBuf,
    files: BTreeMap<String, SeenFile>,
}

impl PollerState {
    /// Loads the state at `path`; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<PollerState, PollerError> {
        let err = |error| PollerError::State {
            path: path.to_path_buf(),
            error,
        };
        let files = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(err(e)),
        };
        Ok(PollerState {
            path: path.to_path_buf(),
            files,
        })
    }

    /// Whether this path was emitted with this size and modification time.
    pub fn is_emitted(&self, path: &str, size: u64, mtime_ms: i64) -> bool {
        self.files
            .get(path)
            .is_some_and(|f| f.size == size && f.mtime_ms == mtime_ms)
    }

    /// Records an emitted file and saves atomically (temporary file, then rename).
    pub fn record(&mut self, path: &str, file: SeenFile) -> Result<(), PollerError> {
        self.files.insert(path.to_string(), file);
        self.save()
    }

    /// Forgets a file that is no longer in the landing area (moved to the done folder),
    /// so a later file of the same name is new; saves like [`Self::record`].
    pub fn forget(&mut self, path: &str) -> Result<(), PollerError> {
        if self.files.remove(path).is_none() {
            return Ok(());
        }
        self.save()
    }

    fn save(&self) -> Result<(), PollerError> {
        let err = |error| PollerError::State {
            path: self.path.clone(),
            error,
        };
        let dir = self.path.parent().expect("state file has a directory");
        std::fs::create_dir_all(dir).map_err(err)?;
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&self.files).expect("state serialises");
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }
}
