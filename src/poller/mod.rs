//! Finds files in landing areas, waits until each is stable, archives its bytes and hands
//! on an [`Arrival`].
//!
//! Delivery: at least once. A file is archived in the raw store, then handed to the
//! [`ArrivalSink`], and only once the sink has acknowledged it is it remembered as emitted.
//! A crash between the two emits it again after restart; the topology's dedup store absorbs
//! that (same bytes → an audit event, nothing else).
//!
//! Architecture Invariant: the poller only reads from landing areas (they stay stateless)
//! and knows nothing of Avro, Kafka or file categories. A file is emitted only after two
//! consecutive listings agreed on its size and modification time, and only if it did not
//! change while it was being read.

mod local;
mod sftp;
mod state;

pub use local::LocalSource;
pub use sftp::{SftpSettings, SftpSource};

pub use state::{PollerState, SeenFile};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ErrorKind;
use crate::rawstore::{ObjectMeta, RawStore};

/// Poller errors.
#[derive(Debug, thiserror::Error)]
pub enum PollerError {
    #[error("source {source_name}: {op} {path}: {error}")]
    Source {
        source_name: String,
        op: &'static str,
        path: String,
        #[source]
        error: std::io::Error,
    },
    #[error("poller state {path}: {error}")]
    State {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("emitting arrival of {path}: {message}")]
    Sink { path: String, message: String },
}

impl PollerError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::External
    }
}

/// A file as listed by a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Path relative to the source root, to open it with.
    pub path: PathBuf,
    /// The same path for records and logs: UTF-8, `/`-separated, non-UTF-8 bytes escaped.
    pub display: String,
    /// Client id: the first path component.
    pub client_id: String,
    pub size: u64,
    pub mtime_ms: i64,
}

/// A stable file whose bytes are in the raw store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub client_id: String,
    pub source: String,
    pub path: String,
    pub size: u64,
    pub mtime_ms: i64,
    pub sha256: String,
    pub raw_key: String,
    pub detected_at_ms: i64,
}

/// Listings of files found under a source's root, `(path relative to the root, size,
/// mtime ms)`: the first path component is the client; a file directly under the root
/// belongs to no client and is left in place, with a warning. Sorted by path.
fn client_listings(source: &str, files: Vec<(PathBuf, u64, i64)>) -> Vec<Listing> {
    use std::path::Component;
    let mut listings = Vec::with_capacity(files.len());
    for (path, size, mtime_ms) in files {
        let mut parts = path.components();
        let client = match (parts.next(), parts.next()) {
            (Some(Component::Normal(client)), Some(_)) => client,
            _ => {
                tracing::warn!(source, path = %local::display_path(&path), "file is not under a client directory; left in place");
                continue;
            }
        };
        listings.push(Listing {
            client_id: local::display_path(Path::new(client)),
            display: local::display_path(&path),
            path,
            size,
            mtime_ms,
        });
    }
    listings.sort_by(|a, b| a.path.cmp(&b.path));
    listings
}

/// A landing area.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// The configured name, used in records and metrics.
    fn name(&self) -> &str;
    /// Every candidate file now in the landing area.
    async fn list(&self) -> Result<Vec<Listing>, PollerError>;
    /// Opens a listed file for reading.
    async fn open(
        &self,
        listing: &Listing,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, PollerError>;
    /// Size and modification time now, to detect a change while reading.
    async fn stat(&self, listing: &Listing) -> Result<(u64, i64), PollerError>;
}

/// Where arrivals go (in practice: Avro records on the `file-arrivals` topic).
#[async_trait::async_trait]
pub trait ArrivalSink: Send + Sync {
    /// Returns once the arrival is durably accepted.
    async fn emit(&self, arrival: &Arrival) -> Result<(), PollerError>;
}

/// Polls one source.
pub struct Poller {
    source: Box<dyn Source>,
    raw: Arc<dyn RawStore>,
    sink: Arc<dyn ArrivalSink>,
    state: PollerState,
    spool: PathBuf,
    interval: Duration,
    /// How long a file's size and modification time must stay the same before it is read.
    quiet: Duration,
    /// `(size, mtime)` of each file at the previous listing, and since when it has had them.
    previous: std::collections::HashMap<PathBuf, ((u64, i64), std::time::Instant)>,
    /// Which listed files are candidates at all.
    filter: PathFilter,
    /// When set, a file is a candidate only once `<file><suffix>` exists beside it (the
    /// uploader's "done" marker); marker files themselves are never candidates.
    marker_suffix: Option<String>,
}

/// Include and exclude globs on a file's path under the source root (`acme/in/a.csv`):
/// a file is a candidate if it matches an include (or there are none) and no exclude.
#[derive(Clone, Debug, Default)]
pub struct PathFilter {
    include: Option<globset::GlobSet>,
    exclude: Option<globset::GlobSet>,
}

impl PathFilter {
    /// The filter of `include` and `exclude` globs; an error names the bad glob.
    pub fn new(include: &[String], exclude: &[String]) -> Result<PathFilter, String> {
        let set = |globs: &[String]| -> Result<Option<globset::GlobSet>, String> {
            if globs.is_empty() {
                return Ok(None);
            }
            let mut builder = globset::GlobSetBuilder::new();
            for g in globs {
                builder.add(
                    globset::GlobBuilder::new(g)
                        .literal_separator(false)
                        .build()
                        .map_err(|e| format!("glob {g:?}: {e}"))?,
                );
            }
            builder.build().map(Some).map_err(|e| e.to_string())
        };
        Ok(PathFilter {
            include: set(include)?,
            exclude: set(exclude)?,
        })
    }

    /// Whether the file at `path` (under the source root) is a candidate.
    pub fn admits(&self, path: &str) -> bool {
        self.include.as_ref().is_none_or(|s| s.is_match(path))
            && !self.exclude.as_ref().is_some_and(|s| s.is_match(path))
    }
}

impl Poller {
    /// A poller of `source`, keeping its state and spool under `state_dir`.
    pub fn new(
        source: Box<dyn Source>,
        raw: Arc<dyn RawStore>,
        sink: Arc<dyn ArrivalSink>,
        state_dir: &Path,
        interval: Duration,
    ) -> Result<Poller, PollerError> {
        let dir = state_dir.join("poller").join(source.name());
        let state = PollerState::load(&dir.join("seen.json"))?;
        Ok(Poller {
            source,
            raw,
            sink,
            state,
            spool: dir.join("spool"),
            interval,
            quiet: Duration::ZERO,
            previous: Default::default(),
            filter: PathFilter::default(),
            marker_suffix: None,
        })
    }

    /// Waits for a marker file `<file><suffix>` (e.g. `.done`) before taking a file.
    pub fn with_marker_suffix(mut self, suffix: Option<String>) -> Poller {
        self.marker_suffix = suffix.filter(|s| !s.is_empty());
        self
    }

    /// Only files `filter` admits are candidates.
    pub fn with_filter(mut self, filter: PathFilter) -> Poller {
        self.filter = filter;
        self
    }

    /// Besides two agreeing listings, waits until a file has kept its size and
    /// modification time for `quiet` before reading it: longer than an uploader's longest
    /// pause, so a slow or stalled upload is not taken for a finished one.
    pub fn with_quiet_period(mut self, quiet: Duration) -> Poller {
        self.quiet = quiet;
        self
    }

    /// Polls until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: tokio_util::sync::CancellationToken) {
        tracing::info!(
            source = self.source.name(),
            interval_ms = self.interval.as_millis() as u64,
            "poller started"
        );
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            if let Err(e) = self.poll_once().await {
                crate::metrics::PollError {
                    source: self.source.name(),
                }
                .emit();
                tracing::warn!(source = self.source.name(), error = %e, "poll failed; retrying at the next interval");
            }
        }
        tracing::info!(source = self.source.name(), "poller stopped");
    }

    /// One listing: emits every file that is stable since the previous listing and not
    /// yet emitted with this size and modification time.
    pub async fn poll_once(&mut self) -> Result<usize, PollerError> {
        let listings = self.source.list().await?;
        let markers: std::collections::HashSet<String> = match &self.marker_suffix {
            Some(suffix) => listings
                .iter()
                .filter(|l| l.display.ends_with(suffix.as_str()))
                .map(|l| l.display[..l.display.len() - suffix.len()].to_string())
                .collect(),
            None => Default::default(),
        };
        let mut current = std::collections::HashMap::with_capacity(listings.len());
        let mut emitted = 0;
        for listing in listings {
            if !self.filter.admits(&listing.display) {
                continue;
            }
            if let Some(suffix) = &self.marker_suffix
                && (listing.display.ends_with(suffix.as_str())
                    || !markers.contains(&listing.display))
            {
                continue; // a marker, or a file whose marker has not arrived yet
            }
            let now = (listing.size, listing.mtime_ms);
            let emitted_before =
                self.state
                    .is_emitted(&listing.display, listing.size, listing.mtime_ms);
            // Since when the file has had this size and mtime, if the previous listing
            // agrees; `None` when it is new or still changing.
            let unchanged_since = match self.previous.get(&listing.path) {
                Some((before, since)) if *before == now => Some(*since),
                Some(_) => None,
                None => {
                    if !emitted_before {
                        crate::metrics::FileSeen {
                            source: self.source.name(),
                        }
                        .emit();
                    }
                    None
                }
            };
            current.insert(
                listing.path.clone(),
                (now, unchanged_since.unwrap_or_else(std::time::Instant::now)),
            );
            if emitted_before {
                continue;
            }
            match unchanged_since {
                Some(since) if since.elapsed() >= self.quiet => {}
                // New, still changing, or not quiet for long enough: wait.
                _ => continue,
            }
            if self.emit(&listing).await? {
                emitted += 1;
            }
        }
        self.previous = current;
        Ok(emitted)
    }

    /// Archives and emits one stable file. `false` when it changed while being read.
    async fn emit(&mut self, listing: &Listing) -> Result<bool, PollerError> {
        let (staged, sha256) = self.stage(listing).await?;
        if self.source.stat(listing).await? != (listing.size, listing.mtime_ms) {
            let _ = tokio::fs::remove_file(&staged).await;
            tracing::info!(path = %listing.display, "file changed while being read; waiting for it to settle");
            return Ok(false);
        }
        let meta = ObjectMeta {
            client_id: listing.client_id.clone(),
            original_path: listing.display.clone(),
            mtime_ms: listing.mtime_ms,
            size: listing.size,
        };
        let stored = self.raw.put(&sha256, &staged, &meta).await;
        let _ = tokio::fs::remove_file(&staged).await;
        let raw_key = stored.map_err(|e| PollerError::Sink {
            path: listing.display.clone(),
            message: format!("raw store: {e}"),
        })?;
        let arrival = Arrival {
            client_id: listing.client_id.clone(),
            source: self.source.name().to_string(),
            path: listing.display.clone(),
            size: listing.size,
            mtime_ms: listing.mtime_ms,
            sha256: sha256.clone(),
            raw_key,
            detected_at_ms: chrono::Utc::now().timestamp_millis(),
        };
        // Only an acknowledged arrival is remembered: a failure here retries next poll.
        self.sink.emit(&arrival).await?;
        self.state.record(
            &listing.display,
            SeenFile {
                size: listing.size,
                mtime_ms: listing.mtime_ms,
                sha256,
            },
        )?;
        crate::metrics::FileEmitted {
            source: self.source.name(),
            client: &listing.client_id,
        }
        .emit();
        tracing::info!(source = self.source.name(), client = %listing.client_id, path = %listing.display, sha256 = %arrival.sha256, size = listing.size, "file emitted");
        Ok(true)
    }

    /// Copies the file into the spool while hashing it: one read of the source.
    async fn stage(&self, listing: &Listing) -> Result<(PathBuf, String), PollerError> {
        let spool_err = |error| PollerError::State {
            path: self.spool.clone(),
            error,
        };
        tokio::fs::create_dir_all(&self.spool)
            .await
            .map_err(spool_err)?;
        let staged = self.spool.join(format!("{}.part", uuid_like()));
        let mut out = tokio::fs::File::create(&staged).await.map_err(spool_err)?;
        let mut input = self.source.open(listing).await?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input
                .read(&mut buf)
                .await
                .map_err(|error| PollerError::Source {
                    source_name: self.source.name().to_string(),
                    op: "read",
                    path: listing.display.clone(),
                    error,
                })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).await.map_err(spool_err)?;
        }
        out.flush().await.map_err(spool_err)?;
        Ok((staged, hex::encode(hasher.finalize())))
    }
}

/// A name unique enough for a spool file of this process.
fn uuid_like() -> String {
    format!("{}-{:016x}", std::process::id(), fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rawstore::FsRawStore;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Arrival>>);

    #[async_trait::async_trait]
    impl ArrivalSink for Collect {
        async fn emit(&self, arrival: &Arrival) -> Result<(), PollerError> {
            self.0.lock().unwrap().push(arrival.clone());
            Ok(())
        }
    }

    fn poller(root: &Path, state: &Path, sink: Arc<Collect>) -> Poller {
        Poller::new(
            Box::new(LocalSource::new("landing", root)),
            Arc::new(FsRawStore::new(root.parent().unwrap().join("raw"))),
            sink,
            state,
            Duration::from_millis(10),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_file_is_emitted_once_after_two_agreeing_listings() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("landing");
        std::fs::create_dir_all(root.join("acme")).unwrap();
        let sink = Arc::new(Collect::default());
        let mut p = poller(&root, &dir.path().join("state"), sink.clone());

        std::fs::write(root.join("acme/a.csv"), b"part").unwrap();
        assert_eq!(
            p.poll_once().await.unwrap(),
            0,
            "first sighting is never stable"
        );
        // Still growing: the second listing disagrees, so nothing is emitted.
        std::fs::write(root.join("acme/a.csv"), b"part and more").unwrap();
        assert_eq!(p.poll_once().await.unwrap(), 0);
        assert_eq!(p.poll_once().await.unwrap(), 1);
        assert_eq!(p.poll_once().await.unwrap(), 0, "emitted once only");

        let arrivals = sink.0.lock().unwrap().clone();
        assert_eq!(arrivals.len(), 1);
        let a = &arrivals[0];
        assert_eq!(
            (a.client_id.as_str(), a.path.as_str()),
            ("acme", "acme/a.csv")
        );
        assert_eq!(a.sha256, crate::rawstore::sha256_hex(b"part and more"));
        assert_eq!(a.size, 13);
        // The raw store holds the bytes before the arrival exists.
        let raw = FsRawStore::new(dir.path().join("raw"));
        assert_eq!(raw.get(&a.raw_key).await.unwrap(), b"part and more");
    }

    #[tokio::test]
    async fn only_files_the_globs_admit_are_candidates() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("landing");
        for f in [
            "acme/a.csv",
            "acme/in/b.dat",
            "acme/notes.txt",
            "acme/old/c.csv",
        ] {
            let path = root.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, f).unwrap();
        }
        let sink = Arc::new(Collect::default());
        let filter =
            PathFilter::new(&["*.csv".into(), "**/*.dat".into()], &["*/old/*".into()]).unwrap();
        let mut p = poller(&root, &dir.path().join("state"), sink.clone()).with_filter(filter);
        p.poll_once().await.unwrap();
        assert_eq!(p.poll_once().await.unwrap(), 2);
        let mut paths: Vec<String> = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.path.clone())
            .collect();
        paths.sort();
        assert_eq!(paths, ["acme/a.csv", "acme/in/b.dat"]);
        assert!(
            PathFilter::new(&["[".into()], &[])
                .unwrap_err()
                .contains("glob \"[\"")
        );
    }

    #[tokio::test]
    async fn with_a_marker_suffix_a_file_waits_for_its_marker() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("landing");
        std::fs::create_dir_all(root.join("acme")).unwrap();
        std::fs::write(root.join("acme/a.csv"), b"complete").unwrap();
        let sink = Arc::new(Collect::default());
        let mut p = poller(&root, &dir.path().join("state"), sink.clone())
            .with_marker_suffix(Some(".done".into()));
        p.poll_once().await.unwrap();
        assert_eq!(p.poll_once().await.unwrap(), 0, "no marker yet");
        std::fs::write(root.join("acme/a.csv.done"), b"").unwrap();
        p.poll_once().await.unwrap();
        assert_eq!(p.poll_once().await.unwrap(), 1);
        assert_eq!(p.poll_once().await.unwrap(), 0);
        let arrivals = sink.0.lock().unwrap().clone();
        assert_eq!(arrivals.len(), 1, "the marker itself is never emitted");
        assert_eq!(arrivals[0].path, "acme/a.csv");
    }

    #[tokio::test]
    async fn emitted_files_are_remembered_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("landing");
        std::fs::create_dir_all(root.join("acme")).unwrap();
        std::fs::write(root.join("acme/a.csv"), b"x").unwrap();
        let state = dir.path().join("state");
        let sink = Arc::new(Collect::default());
        let mut p = poller(&root, &state, sink.clone());
        p.poll_once().await.unwrap();
        p.poll_once().await.unwrap();
        drop(p);
        let mut p = poller(&root, &state, sink.clone());
        p.poll_once().await.unwrap();
        p.poll_once().await.unwrap();
        assert_eq!(sink.0.lock().unwrap().len(), 1);
    }
}
