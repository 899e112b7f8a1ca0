//! Finds files in landing areas, waits until each is stable, archives its bytes and hands
//! on an [`Arrival`].
//!
//! Delivery: at least once. A file is archived in the raw store, then handed to the
//! [`ArrivalSink`], and only once the sink has acknowledged it is it remembered as emitted.
//! A crash between the two emits it again after restart; the topology's dedup store absorbs
//! that (same bytes → an audit event, nothing else).
//!
//! Names: landing areas are written by outsiders, so every listed name is judged before it
//! is used. Odd names (control characters, `%`, bytes that are not UTF-8) are taken, their
//! paths escaped for records and logs; unsafe ones (`.`, `..`, an empty name, a `/` or NUL
//! inside a name sent by a server, a name over 255 bytes or a path over 1024, a symbolic
//! link) are refused: never opened, left in place, warned about and counted once.
//!
//! Up to `max_concurrent_reads` stable files are read, hashed and archived at once; their
//! arrivals are still emitted one at a time, in path order.
//!
//! Sources that have filesystem events (a local directory) are watched as well as polled:
//! an event that finishes a file lists the area at once, so a file renamed into place is
//! taken within milliseconds rather than after two poll intervals.
//!
//! Architecture Invariant: the poller only reads from landing areas, with one optional
//! exception: with `move_to_done`, an emitted file is renamed into `<client>/<done>/`
//! (never over an existing file, never outside the source's root). It knows nothing of
//! Avro, Kafka or file categories. A file is emitted only once it is whole — two
//! consecutive listings agreed on its size and modification time, or its writer finished
//! it (a filesystem event: closed after writing, or renamed into place, and not written
//! since; or its marker file is there) — and only if it did not change while it was being
//! read.

pub(crate) mod local;
mod sftp;
mod state;

pub use local::LocalSource;
pub use sftp::{SftpSettings, SftpSource};

pub use state::{PollerState, SeenFile};

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ErrorKind;
use crate::rawstore::{ObjectMeta, RawStore};

/// The longest file or directory name taken, in bytes: what common filesystems allow.
pub const MAX_NAME_BYTES: usize = 255;

/// The longest path under a source's root taken, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;

/// How many names a move tries (`dest`, `dest.<ms>`, `dest.<ms>-1`, …) before giving up.
const MOVE_ATTEMPTS: u32 = 100;

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
    /// The same path for records and logs: UTF-8, `/`-separated, control characters, `%`
    /// and non-UTF-8 bytes escaped as `%XX`.
    pub display: String,
    /// Client id: the first path component, escaped like `display`.
    pub client_id: String,
    pub size: u64,
    pub mtime_ms: i64,
}

/// An entry of a landing area that cannot be taken safely. It is never opened and stays
/// where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Its path under the root, escaped like [`Listing::display`] (and a `/` inside a name
    /// as `%2F`).
    pub display: String,
    /// Why: `traversal`, `nul_byte`, `too_long`, `symlink` or `not_utf8`.
    pub reason: &'static str,
}

/// What one listing of a landing area found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listed {
    /// Candidate files, sorted by path.
    pub files: Vec<Listing>,
    /// Entries refused for their names or types, sorted by path. A refused directory is
    /// not walked.
    pub refused: Vec<Refused>,
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

/// The type of a directory entry as its listing reports it: links are not followed.
pub(super) enum EntryKind {
    Dir,
    File {
        size: u64,
        mtime_ms: i64,
    },
    Symlink,
    /// Sockets, pipes, devices.
    Other,
}

/// What a walk does with one directory entry.
pub(super) enum Verdict {
    /// Nothing, silently: `.` and `..`, hidden and partial names, special files, the done
    /// folder.
    Ignore,
    /// Walks this directory (path under the root).
    Walk(PathBuf),
    /// A candidate file: path under the root, size, modification time (ms).
    Take(PathBuf, u64, i64),
    Refuse(Refused),
}

/// Judges the entry `name` found in `dir` (a directory under the root that was judged
/// already). `skip` is the folder under each client that is never walked (the done
/// folder).
///
/// Both sources judge with this one function, so they take and refuse the same names.
pub(super) fn judge(dir: &Path, name: &[u8], kind: EntryKind, skip: Option<&Path>) -> Verdict {
    use std::os::unix::ffi::OsStrExt;
    // A directory's links to itself and its parent: SFTP servers list them.
    if name == b"." || name == b".." {
        return Verdict::Ignore;
    }
    let refuse = |reason| {
        Verdict::Refuse(Refused {
            display: display_entry(dir, name),
            reason,
        })
    };
    // No local directory lists such names; a server can send anything.
    if name.is_empty() || name.contains(&b'/') {
        return refuse("traversal");
    }
    if name.contains(&0) {
        return refuse("nul_byte");
    }
    let name_os = std::ffi::OsStr::from_bytes(name);
    if local::skipped(name_os) {
        return Verdict::Ignore;
    }
    let path = dir.join(name_os);
    if name.len() > MAX_NAME_BYTES || path.as_os_str().len() > MAX_PATH_BYTES {
        return refuse("too_long");
    }
    match kind {
        // A link may lead anywhere, out of the landing area included: never followed,
        // whether it names a file or a directory.
        EntryKind::Symlink => refuse("symlink"),
        EntryKind::Dir if skip.is_some_and(|done| in_client_folder(&path, done)) => Verdict::Ignore,
        EntryKind::Dir => Verdict::Walk(path),
        EntryKind::File { size, mtime_ms } => Verdict::Take(path, size, mtime_ms),
        EntryKind::Other => Verdict::Ignore,
    }
}

/// Whether `path` (under the root) is in or is the folder `<client>/<folder>`.
fn in_client_folder(path: &Path, folder: &Path) -> bool {
    let mut parts = path.components();
    parts.next().is_some() && parts.as_path().starts_with(folder)
}

/// The escaped path of `name` in `dir`, for an entry that is not taken.
fn display_entry(dir: &Path, name: &[u8]) -> String {
    let name = local::display_name(name);
    if dir.as_os_str().is_empty() {
        name
    } else {
        format!("{}/{name}", local::display_path(dir))
    }
}

/// A walk's outcome, `(path under the root, size, mtime ms)` for each file taken, as a
/// [`Listed`]: the first path component is the client; a file directly under the root
/// belongs to no client and is left in place, with a warning.
pub(crate) fn listed(
    source: &str,
    files: Vec<(PathBuf, u64, i64)>,
    mut refused: Vec<Refused>,
) -> Listed {
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
    refused.sort_by(|a, b| a.display.cmp(&b.display));
    Listed {
        files: listings,
        refused,
    }
}

/// The `attempt`th name a move to `dest` tries: `dest` itself, then `dest.<now_ms>`, then
/// `dest.<now_ms>-<n>`, so an earlier file of the same name is never replaced.
pub(super) fn move_candidate(dest: &Path, now_ms: i64, attempt: u32) -> PathBuf {
    let Some(name) = dest.file_name() else {
        return dest.to_path_buf();
    };
    let mut name = name.to_os_string();
    match attempt {
        0 => return dest.to_path_buf(),
        1 => name.push(format!(".{now_ms}")),
        n => name.push(format!(".{now_ms}-{}", n - 1)),
    }
    dest.with_file_name(name)
}

/// The watch's next change; never, without a watch.
async fn next_change(watch: &mut Option<Watch>) -> Option<Change> {
    match watch {
        Some(w) => w.changes.recv().await,
        None => std::future::pending().await,
    }
}

/// A landing area.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// The configured name, used in records and metrics.
    fn name(&self) -> &str;
    /// Every candidate file now in the landing area, and the entries refused for their
    /// names or types (judged by [`judge`]). `skip`, a folder under each client (the done
    /// folder), is not walked.
    async fn list(&self, skip: Option<&Path>) -> Result<Listed, PollerError>;
    /// Opens a listed file for reading.
    async fn open(
        &self,
        listing: &Listing,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, PollerError>;
    /// Size and modification time now, of the entry itself (a link is not followed), to
    /// detect a change while reading.
    async fn stat(&self, listing: &Listing) -> Result<(u64, i64), PollerError>;
    /// Moves a listed file to `dest` (a path under the root), creating the folders it
    /// needs: the only write a source ever makes. An existing `dest` is never replaced;
    /// the name gets a suffix instead ([`move_candidate`]). A folder on the way that is a
    /// link or not a folder is an error. Returns where the file went.
    async fn move_to(&self, listing: &Listing, dest: &Path) -> Result<PathBuf, PollerError>;
    /// Starts watching the landing area for changes, when the source can (a local
    /// directory: inotify). `Ok(None)`: it cannot, and is only polled.
    fn watch(&self) -> Result<Option<Watch>, PollerError> {
        Ok(None)
    }
}

/// What a source's filesystem events say about a path under its root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A writer finished this file: closed it after writing, or renamed it into place. It
    /// needs no second listing to be taken as whole.
    Finished(PathBuf),
    /// This file was created, written, re-timed, moved away or removed: whatever was
    /// known of it being finished no longer holds.
    Touched(PathBuf),
    /// Events were lost (the kernel's queue overflowed) or cannot be placed: trust no
    /// earlier `Finished`, and list again.
    Rescan,
}

/// A live watch on a landing area: the changes it reports, in the order they happened,
/// and the watcher that keeps them coming (dropping the `Watch` stops it).
pub struct Watch {
    pub changes: tokio::sync::mpsc::UnboundedReceiver<Change>,
    pub(crate) _watcher: Box<dyn Send>,
}

/// Where arrivals go (in practice: Avro records on the `file-arrivals` topic).
#[async_trait::async_trait]
pub trait ArrivalSink: Send + Sync {
    /// Returns once the arrival is durably accepted.
    async fn emit(&self, arrival: &Arrival) -> Result<(), PollerError>;
}

/// Polls one source.
pub struct Poller {
    /// The source, raw store and spool, shared with the tasks that read files.
    archiver: Arc<Archiver>,
    sink: Arc<dyn ArrivalSink>,
    state: PollerState,
    interval: Duration,
    /// How long a file's size and modification time must stay the same before it is read.
    quiet: Duration,
    /// `(size, mtime)` of each file at the previous listing, and since when it has had them.
    previous: HashMap<PathBuf, ((u64, i64), Instant)>,
    /// Which listed files are candidates at all.
    filter: PathFilter,
    /// When set, a file is a candidate only once `<file><suffix>` exists beside it (the
    /// uploader's "done" marker); marker files themselves are never candidates.
    marker_suffix: Option<String>,
    /// When set, an emitted file is moved to `<client>/<this folder>/<rest of its path>`.
    move_to_done: Option<PathBuf>,
    /// How many stable files are read and archived at once.
    max_concurrent_reads: usize,
    /// Entries refused at the previous listing: each is warned about and counted once,
    /// not at every poll.
    refused: HashSet<String>,
    /// Whether to react to the source's filesystem events, when it has them.
    events: bool,
    /// Files the source's events reported finished (closed after writing, or renamed into
    /// place) and nothing since, with when: they need no second listing.
    finished: HashMap<PathBuf, Instant>,
}

/// After a filesystem event, how long to gather more before listing: a batch of files
/// renamed into place together is taken in one listing.
const EVENT_GATHER: Duration = Duration::from_millis(10);

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
        clear_spool(&dir.join("spool"));
        Ok(Poller {
            archiver: Arc::new(Archiver {
                source: Arc::from(source),
                raw,
                spool: dir.join("spool"),
            }),
            sink,
            state,
            interval,
            quiet: Duration::ZERO,
            previous: Default::default(),
            filter: PathFilter::default(),
            marker_suffix: None,
            move_to_done: None,
            max_concurrent_reads: 4,
            refused: Default::default(),
            events: true,
            finished: Default::default(),
        })
    }

    /// Waits for a marker file `<file><suffix>` (e.g. `.done`) before taking a file. The
    /// uploader writes the marker once the file is whole, so a marked file needs no second
    /// listing (only the quiet period, if one is set).
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

    /// Once emitted (and recorded), moves each file to
    /// `<client>/<folder>/<rest of its path>` (its marker too, with `marker_suffix`);
    /// files in that folder are never candidates. `None`: files stay where they are and
    /// the source is only read.
    ///
    /// # Panics
    /// If `folder` is not a relative folder path without `.` or `..` (the configuration
    /// checks it).
    pub fn with_move_to_done(mut self, folder: Option<String>) -> Poller {
        self.move_to_done = folder.filter(|f| !f.is_empty()).map(|f| {
            let path = PathBuf::from(f.trim_end_matches('/'));
            assert!(
                path.components().next().is_some()
                    && path.components().all(|c| matches!(c, Component::Normal(_))),
                "move_to_done {f:?} must be a folder name such as \"done\""
            );
            path
        });
        self
    }

    /// Whether [`Poller::run`] also reacts to the source's filesystem events (default:
    /// yes, when the source has them). A file a writer closed or renamed into place is then
    /// listed at once and needs no second listing; the quiet period still applies, and the
    /// polls go on for everything events miss.
    pub fn with_events(mut self, on: bool) -> Poller {
        self.events = on;
        self
    }

    /// Reads (and hashes and archives) up to `n` stable files at once; at least one.
    pub fn with_max_concurrent_reads(mut self, n: usize) -> Poller {
        self.max_concurrent_reads = n.max(1);
        self
    }

    fn source(&self) -> &dyn Source {
        self.archiver.source.as_ref()
    }

    /// Polls until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: tokio_util::sync::CancellationToken) {
        tracing::info!(
            source = self.source().name(),
            interval_ms = self.interval.as_millis() as u64,
            "poller started"
        );
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch = None;
        let mut watch_failed = false;
        loop {
            if self.events && watch.is_none() {
                watch = self.start_watch(&mut watch_failed);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
                change = next_change(&mut watch) => {
                    // Gather what comes with it, then list only if a file may be ready.
                    let mut ready = self.note_change(change, &mut watch);
                    tokio::time::sleep(EVENT_GATHER).await;
                    while let Some(w) = &mut watch
                        && let Ok(change) = w.changes.try_recv()
                    {
                        ready |= self.note_change(Some(change), &mut watch);
                    }
                    if !ready {
                        continue;
                    }
                }
            }
            if let Err(e) = self.poll_once().await {
                crate::metrics::PollError {
                    source: self.source().name(),
                }
                .emit();
                tracing::warn!(source = self.source().name(), error = %e, "poll failed; retrying at the next interval");
            }
        }
        tracing::info!(source = self.source().name(), "poller stopped");
    }

    /// Starts the source's watch; a failure is warned about once (until a watch starts
    /// again) and retried at the next poll.
    fn start_watch(&mut self, failed_before: &mut bool) -> Option<Watch> {
        match self.source().watch() {
            Ok(Some(watch)) => {
                tracing::info!(
                    source = self.source().name(),
                    "watching for filesystem events"
                );
                *failed_before = false;
                Some(watch)
            }
            Ok(None) => {
                self.events = false; // the source has none
                None
            }
            Err(e) => {
                if !std::mem::replace(failed_before, true) {
                    tracing::warn!(source = self.source().name(), error = %e, "cannot watch for filesystem events; polling only, and trying again at each poll");
                }
                None
            }
        }
    }

    /// Takes in one change (`None`: the watch ended). Returns whether a listing may find
    /// a file ready because of it.
    fn note_change(&mut self, change: Option<Change>, watch: &mut Option<Watch>) -> bool {
        match change {
            Some(Change::Finished(path)) => {
                let in_done = self
                    .move_to_done
                    .as_deref()
                    .is_some_and(|done| in_client_folder(&path, done));
                if !in_done {
                    self.finished.insert(path, Instant::now());
                }
                !in_done
            }
            Some(Change::Touched(path)) => {
                self.finished.remove(&path);
                false
            }
            Some(Change::Rescan) => {
                self.finished.clear();
                true
            }
            None => {
                tracing::warn!(
                    source = self.source().name(),
                    "the filesystem watch ended; polling only until it starts again"
                );
                self.finished.clear();
                *watch = None;
                false
            }
        }
    }

    /// One listing: emits every file that is stable since the previous listing and not
    /// yet emitted with this size and modification time, and (with `move_to_done`) moves
    /// emitted files that are still in place.
    ///
    /// A file that fails to be read does not hold up the others: the poll goes on, and
    /// returns the first such error at the end.
    pub async fn poll_once(&mut self) -> Result<usize, PollerError> {
        let Listed {
            files: listings,
            refused,
        } = self.source().list(self.move_to_done.as_deref()).await?;
        self.note_refused(refused);
        // Marker listings by the display path of the file each one marks.
        let markers: HashMap<String, Listing> = match &self.marker_suffix {
            Some(suffix) => listings
                .iter()
                .filter_map(|l| {
                    let marked = l.display.strip_suffix(suffix.as_str())?;
                    Some((marked.to_string(), l.clone()))
                })
                .collect(),
            None => Default::default(),
        };
        let mut current = HashMap::with_capacity(listings.len());
        // Stable files to read, in path order.
        let mut ready = Vec::new();
        // Emitted files still in place: their move to the done folder failed (or the
        // process stopped before it).
        let mut unmoved = Vec::new();
        for listing in listings {
            if self
                .move_to_done
                .as_deref()
                .is_some_and(|done| in_client_folder(&listing.path, done))
            {
                continue; // the source skips it already; never a candidate regardless
            }
            if !self.filter.admits(&listing.display) {
                continue;
            }
            if let Some(suffix) = &self.marker_suffix
                && (listing.display.ends_with(suffix.as_str())
                    || !markers.contains_key(&listing.display))
            {
                continue; // a marker, or a file whose marker has not arrived yet
            }
            let now = (listing.size, listing.mtime_ms);
            let emitted_before =
                self.state
                    .is_emitted(&listing.display, listing.size, listing.mtime_ms);
            // Since when the file has had this size and mtime, if the previous listing
            // agrees, or since its writer finished it (an event said so, or its marker is
            // there: the uploader writes the marker after the file); `None` when it is new
            // or still changing.
            let finished = if emitted_before {
                None
            } else if self.marker_suffix.is_some() {
                Some(
                    *self
                        .finished
                        .entry(listing.path.clone())
                        .or_insert_with(Instant::now),
                )
            } else {
                self.finished.get(&listing.path).copied()
            };
            let unchanged_since = match self.previous.get(&listing.path) {
                Some((before, since)) if *before == now => Some(*since),
                Some(_) => None,
                None => {
                    if !emitted_before {
                        crate::metrics::FileSeen {
                            source: self.source().name(),
                        }
                        .emit();
                    }
                    None
                }
            };
            let unchanged_since = unchanged_since.or(finished);
            current.insert(
                listing.path.clone(),
                (now, unchanged_since.unwrap_or_else(Instant::now)),
            );
            if emitted_before {
                self.finished.remove(&listing.path);
                if self.move_to_done.is_some() {
                    unmoved.push(listing);
                }
                continue;
            }
            match unchanged_since {
                Some(since) if since.elapsed() >= self.quiet => ready.push(listing),
                // New, still changing, or not quiet for long enough: wait.
                _ => {}
            }
        }
        self.finished.retain(|path, _| current.contains_key(path));
        self.previous = current;
        for listing in &unmoved {
            self.move_to_done(listing, &markers).await;
        }
        self.emit_ready(ready, &markers).await
    }

    /// Warns about and counts each refused entry the previous listing did not have.
    fn note_refused(&mut self, refused: Vec<Refused>) {
        let mut now = HashSet::with_capacity(refused.len());
        for r in refused {
            if !self.refused.contains(&r.display) {
                let source = self.source().name();
                tracing::warn!(source, path = %r.display, reason = r.reason, "name refused; the file is left in place and not read");
                crate::metrics::FileNameRefused {
                    source,
                    reason: r.reason,
                }
                .emit();
            }
            now.insert(r.display);
        }
        // Forgetting what is gone keeps the set small, and warns again about a refused
        // name that comes back.
        self.refused = now;
    }

    /// Reads and archives `ready` files, up to `max_concurrent_reads` at once, and emits
    /// each archived one in path order, while the reads of the next ones go on.
    async fn emit_ready(
        &mut self,
        ready: Vec<Listing>,
        markers: &HashMap<String, Listing>,
    ) -> Result<usize, PollerError> {
        let archiver = self.archiver.clone();
        // Each read runs in its own task, so reads go on while an arrival is emitted;
        // `buffered` starts a task only when fewer than `max_concurrent_reads` are pending
        // and yields results in path order. Dropping the stream (an emit failed) aborts
        // the tasks left, and their spool files go with them.
        let mut archived = futures::stream::iter(ready)
            .map(move |listing| AbortOnDrop(tokio::spawn(archiver.clone().archive(listing))))
            .buffered(self.max_concurrent_reads);
        let mut emitted = 0;
        let mut first_error = None;
        while let Some(result) = archived.next().await {
            match result {
                Ok(Some(file)) => {
                    self.emit(&file).await?;
                    emitted += 1;
                    self.move_to_done(&file.listing, markers).await;
                }
                Ok(None) => {} // changed while read: taken once it settles
                Err(e) if first_error.is_none() => first_error = Some(e),
                Err(e) => {
                    tracing::warn!(source = self.source().name(), error = %e, "reading a file failed; retrying at the next poll");
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(emitted),
        }
    }

    /// Emits one archived file and records it once the sink has acknowledged it.
    async fn emit(&mut self, file: &Archived) -> Result<(), PollerError> {
        let listing = &file.listing;
        let arrival = Arrival {
            client_id: listing.client_id.clone(),
            source: self.source().name().to_string(),
            path: listing.display.clone(),
            size: listing.size,
            mtime_ms: listing.mtime_ms,
            sha256: file.sha256.clone(),
            raw_key: file.raw_key.clone(),
            detected_at_ms: chrono::Utc::now().timestamp_millis(),
        };
        // Only an acknowledged arrival is remembered: a failure here retries next poll.
        self.sink.emit(&arrival).await?;
        self.state.record(
            &listing.display,
            SeenFile {
                size: listing.size,
                mtime_ms: listing.mtime_ms,
                sha256: file.sha256.clone(),
            },
        )?;
        crate::metrics::FileEmitted {
            source: self.source().name(),
            client: &listing.client_id,
        }
        .emit();
        tracing::info!(source = self.source().name(), client = %listing.client_id, path = %listing.display, sha256 = %arrival.sha256, size = listing.size, "file emitted");
        Ok(())
    }

    /// With `move_to_done`, moves an emitted file (and its marker) to the done folder and
    /// forgets it: a file of the same name that comes later is a new file. A failed move
    /// is logged and counted as a poll error, and retried at the next poll; the file is
    /// not emitted again.
    async fn move_to_done(&mut self, listing: &Listing, markers: &HashMap<String, Listing>) {
        let Some(done) = self.move_to_done.clone() else {
            return;
        };
        if !self.move_one(listing, &done).await {
            return;
        }
        if let Err(e) = self.state.forget(&listing.display) {
            tracing::warn!(source = self.source().name(), path = %listing.display, error = %e, "cannot forget a moved file; it stays in the poller state");
        }
        if let Some(marker) = markers.get(&listing.display) {
            self.move_one(marker, &done).await;
        }
    }

    /// Moves one listed file to `<client>/<done>/<rest of its path>`; `false` on failure.
    async fn move_one(&self, listing: &Listing, done: &Path) -> bool {
        let source = self.source().name();
        let mut parts = listing.path.components();
        let Some(client) = parts.next() else {
            return false;
        };
        let dest = Path::new(&client).join(done).join(parts.as_path());
        match self.source().move_to(listing, &dest).await {
            Ok(moved) => {
                crate::metrics::FileMovedToDone { source }.emit();
                tracing::info!(source, path = %listing.display, to = %local::display_path(&moved), "file moved to the done folder");
                true
            }
            Err(e) => {
                crate::metrics::PollError { source }.emit();
                tracing::warn!(source, path = %listing.display, error = %e, "moving a file to the done folder failed; retrying at the next poll");
                false
            }
        }
    }
}

/// What reads, hashes and archives files: the parts of a poller its read tasks share.
pub(crate) struct Archiver {
    pub(crate) source: Arc<dyn Source>,
    pub(crate) raw: Arc<dyn RawStore>,
    pub(crate) spool: PathBuf,
}

/// A file whose bytes are in the raw store, to be emitted.
pub(crate) struct Archived {
    pub(crate) listing: Listing,
    pub(crate) sha256: String,
    pub(crate) raw_key: String,
}

impl Archiver {
    /// Reads a stable file into the spool while hashing it, checks it did not change
    /// meanwhile and puts it in the raw store. `None` when it changed while being read.
    pub(crate) async fn archive(
        self: Arc<Self>,
        listing: Listing,
    ) -> Result<Option<Archived>, PollerError> {
        let (staged, sha256) = self.stage(&listing).await?;
        if self.source.stat(&listing).await? != (listing.size, listing.mtime_ms) {
            tracing::info!(source = self.source.name(), path = %listing.display, "file changed while being read; waiting for it to settle");
            return Ok(None);
        }
        let meta = ObjectMeta {
            client_id: listing.client_id.clone(),
            original_path: listing.display.clone(),
            mtime_ms: listing.mtime_ms,
            size: listing.size,
            received_ms: chrono::Utc::now().timestamp_millis(),
        };
        let raw_key =
            self.raw
                .put(&sha256, &staged.0, &meta)
                .await
                .map_err(|e| PollerError::Sink {
                    path: listing.display.clone(),
                    message: format!("raw store: {e}"),
                })?;
        Ok(Some(Archived {
            listing,
            sha256,
            raw_key,
        }))
    }

    /// Copies the file into the spool while hashing it: one read of the source. The spool
    /// file has a random name, so no listed name ever becomes a local path.
    async fn stage(&self, listing: &Listing) -> Result<(Spooled, String), PollerError> {
        let spool_err = |error| PollerError::State {
            path: self.spool.clone(),
            error,
        };
        tokio::fs::create_dir_all(&self.spool)
            .await
            .map_err(spool_err)?;
        let path = self.spool.join(format!("{}.part", uuid_like()));
        let mut out = tokio::fs::File::create(&path).await.map_err(spool_err)?;
        let staged = Spooled(path);
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

/// A spool file, deleted when dropped: once archived, after an error, or when its read is
/// abandoned.
struct Spooled(PathBuf);

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A spawned task, aborted when this handle is dropped so an abandoned poll stops its
/// reads. A panic in the task is resumed here: a bug stops the poller loudly.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        Pin::new(&mut self.0).poll(cx).map(|joined| match joined {
            Ok(value) => value,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("a read task was cancelled while awaited: {e}"),
            },
        })
    }
}

/// Removes spool files a dead process left (a crash mid-read): a spool file is named
/// `<pid>-<random>.part`, and one whose process no longer runs is no one's.
pub(crate) fn clear_spool(spool: &Path) {
    let Ok(entries) = std::fs::read_dir(spool) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".part"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed a spool file an earlier run left")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover spool file")
                }
            }
        }
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

    /// A temporary landing area with a client folder `acme`, and a poller of it.
    fn acme_landing() -> (tempfile::TempDir, PathBuf, Arc<Collect>, Poller) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("landing");
        std::fs::create_dir_all(root.join("acme")).unwrap();
        let sink = Arc::new(Collect::default());
        let p = poller(&root, &dir.path().join("state"), sink.clone());
        (dir, root, sink, p)
    }

    fn poller(root: &Path, state: &Path, sink: Arc<Collect>) -> Poller {
        poller_of(
            Box::new(LocalSource::new("landing", root)),
            root,
            state,
            sink,
        )
    }

    fn poller_of(source: Box<dyn Source>, root: &Path, state: &Path, sink: Arc<Collect>) -> Poller {
        Poller::new(
            source,
            Arc::new(FsRawStore::new(root.parent().unwrap().join("raw"))),
            sink,
            state,
            Duration::from_millis(10),
        )
        .unwrap()
    }

    /// The sum of a counter's series whose labels include `labels`, as `/metrics` shows it.
    fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
        let text = crate::metrics::install().render();
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
            .sum()
    }

    /// Every entry under `dir` (links not followed): its path, and `dir`, the content's
    /// digest or the link's target.
    fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, String> {
        let mut out = std::collections::BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let what = if meta.is_symlink() {
                    format!("link {}", std::fs::read_link(&path).unwrap().display())
                } else if meta.is_dir() {
                    stack.push(path.clone());
                    "dir".to_string()
                } else {
                    crate::rawstore::sha256_hex(&std::fs::read(&path).unwrap())
                };
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), what);
            }
        }
        out
    }

    fn arrivals(sink: &Collect) -> Vec<(String, String)> {
        let mut all: Vec<_> = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|a| (a.path.clone(), a.sha256.clone()))
            .collect();
        all.sort();
        all
    }

    #[tokio::test]
    async fn a_file_is_emitted_once_after_two_agreeing_listings() {
        let (dir, root, sink, mut p) = acme_landing();

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

    /// Feeds the poller the watch's changes until one satisfies `last`.
    async fn take_changes_until(p: &mut Poller, watch: &mut Watch, last: impl Fn(&Change) -> bool) {
        loop {
            let change = tokio::time::timeout(Duration::from_secs(10), watch.changes.recv())
                .await
                .expect("the watch reports the change within 10 s")
                .expect("the watch is alive");
            let done = last(&change);
            p.note_change(Some(change), &mut None);
            if done {
                return;
            }
        }
    }

    #[tokio::test]
    async fn a_file_its_writer_finished_is_taken_at_the_first_listing_after_the_event() {
        let (_dir, root, sink, mut p) = acme_landing();
        let mut watch = p
            .source()
            .watch()
            .unwrap()
            .expect("a local source has events");

        // Renamed into place (the upload's partial name is never a candidate) ...
        std::fs::write(root.join("acme/a.csv.part"), b"whole").unwrap();
        std::fs::rename(root.join("acme/a.csv.part"), root.join("acme/a.csv")).unwrap();
        // ... and written in place, then closed.
        std::fs::write(root.join("acme/b.csv"), b"also whole").unwrap();
        take_changes_until(&mut p, &mut watch, |c| {
            *c == Change::Finished(PathBuf::from("acme/b.csv"))
        })
        .await;
        assert_eq!(
            p.poll_once().await.unwrap(),
            2,
            "finished files need no second listing"
        );
        assert_eq!(
            arrivals(&sink),
            vec![
                (
                    "acme/a.csv".to_string(),
                    crate::rawstore::sha256_hex(b"whole")
                ),
                (
                    "acme/b.csv".to_string(),
                    crate::rawstore::sha256_hex(b"also whole")
                ),
            ]
        );

        // A file written again after its close is not finished any more: it waits for two
        // agreeing listings, like any file events say nothing of.
        use std::io::Write;
        std::fs::write(root.join("acme/c.csv"), b"first part").unwrap();
        let mut reopened = std::fs::OpenOptions::new()
            .append(true)
            .open(root.join("acme/c.csv"))
            .unwrap();
        reopened.write_all(b", more").unwrap();
        take_changes_until(&mut p, &mut watch, |c| {
            *c == Change::Touched(PathBuf::from("acme/c.csv"))
        })
        .await;
        assert_eq!(p.poll_once().await.unwrap(), 0, "being written: not taken");
        drop(reopened);
        assert_eq!(p.poll_once().await.unwrap(), 1, "two listings agree");
        assert_eq!(sink.0.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn after_an_overflow_no_earlier_event_counts() {
        let (_dir, root, _sink, mut p) = acme_landing();
        std::fs::write(root.join("acme/a.csv"), b"whole").unwrap();
        p.note_change(Some(Change::Finished("acme/a.csv".into())), &mut None);
        p.note_change(Some(Change::Rescan), &mut None);
        assert_eq!(p.poll_once().await.unwrap(), 0, "first sighting again");
        assert_eq!(p.poll_once().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn running_with_events_takes_a_dropped_file_without_waiting_for_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("landing");
        std::fs::create_dir_all(root.join("acme")).unwrap();
        let sink = Arc::new(Collect::default());
        // One listing at start, the next an hour later: only events can take a file.
        let p = Poller::new(
            Box::new(LocalSource::new("landing", &root)),
            Arc::new(FsRawStore::new(dir.path().join("raw"))),
            sink.clone(),
            &dir.path().join("state"),
            Duration::from_secs(3600),
        )
        .unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(p.run(stop.clone()));
        // The watch starts with the poller; files dropped before it are only listed once,
        // so keep dropping until one is taken.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut dropped = 0;
        while sink.0.lock().unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "no dropped file was taken in 10 s"
            );
            std::fs::write(root.join(format!("acme/{dropped}.tmp")), b"x").unwrap();
            std::fs::rename(
                root.join(format!("acme/{dropped}.tmp")),
                root.join(format!("acme/{dropped}.csv")),
            )
            .unwrap();
            dropped += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.cancel();
        running.await.unwrap();
        assert!(
            arrivals(&sink)
                .iter()
                .all(|(path, _)| path.starts_with("acme/") && path.ends_with(".csv"))
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
        assert_eq!(
            p.poll_once().await.unwrap(),
            1,
            "the marker says the file is whole: no second listing needed"
        );
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

    #[test]
    fn names_over_the_limits_are_refused_and_names_at_them_taken() {
        let file = || EntryKind::File {
            size: 1,
            mtime_ms: 2,
        };
        let reason = |v: Verdict| match v {
            Verdict::Refuse(r) => r.reason,
            Verdict::Take(..) => "taken",
            _ => "other",
        };
        // A 300-byte name cannot be made on common local filesystems (NAME_MAX is 255),
        // so it is judged here; a server could send one.
        assert_eq!(
            reason(judge(Path::new("acme"), &[b'n'; 300], file(), None)),
            "too_long"
        );
        assert_eq!(
            reason(judge(Path::new("acme"), &[b'n'; 255], file(), None)),
            "taken"
        );
        // `acme` and four 250-byte folders: 1008 bytes with the separators.
        let d = "d".repeat(250);
        let deep: PathBuf = ["acme", &d, &d, &d, &d].iter().collect();
        assert_eq!(deep.as_os_str().len(), 1008);
        assert_eq!(reason(judge(&deep, &[b'f'; 200], file(), None)), "too_long");
        assert_eq!(reason(judge(&deep, &[b'f'; 10], file(), None)), "taken");
        assert_eq!(
            reason(judge(Path::new("acme"), b"a\0b", file(), None)),
            "nul_byte"
        );
        assert_eq!(
            reason(judge(Path::new("acme"), b"../x", file(), None)),
            "traversal"
        );
    }

    #[tokio::test]
    async fn odd_names_are_taken_escaped_and_unsafe_ones_refused_once() {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::symlink;
        crate::metrics::install();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("landing");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("acme")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.csv"), b"outside the root").unwrap();
        // Odd names: taken, with the path escaped. Each file holds its own name.
        let odd: [(&[u8], &str); 5] = [
            (b"line\nbreak.csv", "acme/line%0Abreak.csv"),
            (b"esc\x1b[31m.csv", "acme/esc%1B[31m.csv"),
            (b"%41.csv", "acme/%2541.csv"),
            (b"bad\xff\xfe.csv", "acme/bad%FF%FE.csv"),
            (
                "sp ace \u{fc}n\u{ef}.csv".as_bytes(),
                "acme/sp ace \u{fc}n\u{ef}.csv",
            ),
        ];
        for (name, _) in odd {
            std::fs::write(
                root.join("acme").join(std::ffi::OsStr::from_bytes(name)),
                name,
            )
            .unwrap();
        }
        // Unsafe: links to a file and a directory outside the root, a client directory
        // that is a link, and a path over 1024 bytes made of names short enough.
        symlink("/etc/passwd", root.join("acme/passwd.csv")).unwrap();
        symlink(outside.join("secret.csv"), root.join("acme/secret.csv")).unwrap();
        symlink(&outside, root.join("acme/linked")).unwrap();
        symlink(&outside, root.join("evil")).unwrap();
        let mut deep = root.join("acme");
        let mut deep_display = "acme".to_string();
        for i in 0..5 {
            let name = format!("{i}{}", "d".repeat(240));
            deep.push(&name);
            deep_display = format!("{deep_display}/{name}");
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("deep.csv"), b"deep").unwrap();
        let before = tree(dir.path());

        let sink = Arc::new(Collect::default());
        let source = Box::new(LocalSource::new("hostile-local", &root));
        let mut p = poller_of(source, &root, &dir.path().join("state"), sink.clone());
        assert_eq!(p.poll_once().await.unwrap(), 0);
        assert_eq!(p.poll_once().await.unwrap(), 5);
        assert_eq!(p.poll_once().await.unwrap(), 0);

        let mut expected: Vec<(String, String)> = odd
            .iter()
            .map(|(name, display)| (display.to_string(), crate::rawstore::sha256_hex(name)))
            .collect();
        expected.sort();
        assert_eq!(arrivals(&sink), expected);
        for a in sink.0.lock().unwrap().iter() {
            assert_eq!(a.client_id, "acme");
        }
        // Refused once each, although three polls saw them.
        let refused = |reason| {
            counter(
                "credstream_file_names_refused_total",
                &[("source", "hostile-local"), ("reason", reason)],
            )
        };
        assert_eq!(refused("symlink"), 4);
        assert_eq!(refused("too_long"), 1);
        let mut seen: Vec<_> = p.refused.iter().cloned().collect();
        seen.sort();
        let mut expected_refused = vec![
            "acme/linked".to_string(),
            "acme/passwd.csv".into(),
            "acme/secret.csv".into(),
            deep_display,
            "evil".into(),
        ];
        expected_refused.sort();
        assert_eq!(seen, expected_refused);
        // Nothing moved, nothing written outside the raw store and the poller's state,
        // and no spool file left behind.
        let mut after = tree(dir.path());
        after.retain(|path, _| !path.starts_with("raw") && !path.starts_with("state"));
        assert_eq!(after, before);
        let spool = dir.path().join("state/poller/hostile-local/spool");
        assert_eq!(std::fs::read_dir(spool).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn move_to_done_moves_emitted_files_once_and_never_replaces_one() {
        crate::metrics::install();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("landing");
        std::fs::create_dir_all(root.join("acme/in")).unwrap();
        std::fs::write(root.join("acme/a.csv"), b"first").unwrap();
        std::fs::write(root.join("acme/in/b.csv"), b"bee").unwrap();
        let sink = Arc::new(Collect::default());
        let source = Box::new(LocalSource::new("moving-local", &root));
        let mut p = poller_of(source, &root, &dir.path().join("state"), sink.clone())
            .with_move_to_done(Some("done".into()));
        assert_eq!(p.poll_once().await.unwrap(), 0);
        assert_eq!(p.poll_once().await.unwrap(), 2);
        assert!(!root.join("acme/a.csv").exists() && !root.join("acme/in/b.csv").exists());
        assert_eq!(
            std::fs::read(root.join("acme/done/a.csv")).unwrap(),
            b"first"
        );
        assert_eq!(
            std::fs::read(root.join("acme/done/in/b.csv")).unwrap(),
            b"bee"
        );
        // Files in the done folder are never candidates.
        assert_eq!(p.poll_once().await.unwrap(), 0);
        assert_eq!(p.poll_once().await.unwrap(), 0);

        // The same name sent again later: a new file, moved beside the first one.
        std::fs::write(root.join("acme/a.csv"), b"second version").unwrap();
        assert_eq!(p.poll_once().await.unwrap(), 0);
        assert_eq!(p.poll_once().await.unwrap(), 1);
        assert_eq!(p.poll_once().await.unwrap(), 0);
        assert_eq!(
            std::fs::read(root.join("acme/done/a.csv")).unwrap(),
            b"first"
        );
        let mut done: Vec<String> = std::fs::read_dir(root.join("acme/done"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        done.sort();
        assert_eq!(done.len(), 3, "{done:?}");
        assert_eq!((done[0].as_str(), done[2].as_str()), ("a.csv", "in"));
        let ms = done[1].strip_prefix("a.csv.").expect("a .<unix ms> suffix");
        assert!(ms.parse::<i64>().unwrap() > 1_600_000_000_000, "{ms}");
        assert_eq!(
            std::fs::read(root.join("acme/done").join(&done[1])).unwrap(),
            b"second version"
        );

        let sha = crate::rawstore::sha256_hex;
        assert_eq!(
            arrivals(&sink),
            [
                ("acme/a.csv".to_string(), sha(b"first")),
                ("acme/a.csv".to_string(), sha(b"second version")),
                ("acme/in/b.csv".to_string(), sha(b"bee")),
            ]
        );
        assert_eq!(
            counter(
                "credstream_files_moved_to_done_total",
                &[("source", "moving-local")]
            ),
            3
        );
        // Moved files are forgotten: the state holds nothing that is gone.
        let state = dir.path().join("state/poller/moving-local/seen.json");
        assert_eq!(std::fs::read_to_string(state).unwrap(), "{}");
    }

    #[tokio::test]
    async fn without_move_to_done_files_stay_where_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("landing");
        std::fs::create_dir_all(root.join("acme")).unwrap();
        std::fs::write(root.join("acme/a.csv"), b"x").unwrap();
        let before = tree(&root);
        let sink = Arc::new(Collect::default());
        let mut p = poller(&root, &dir.path().join("state"), sink.clone());
        p.poll_once().await.unwrap();
        assert_eq!(p.poll_once().await.unwrap(), 1);
        assert_eq!(tree(&root), before);
    }

    #[tokio::test]
    async fn a_move_through_a_link_fails_and_is_retried_without_a_second_emit() {
        crate::metrics::install();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("landing");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("acme")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // The uploader made the done folder a link out of the root.
        std::os::unix::fs::symlink(&outside, root.join("acme/done")).unwrap();
        std::fs::write(root.join("acme/a.csv"), b"x").unwrap();
        let sink = Arc::new(Collect::default());
        let source = Box::new(LocalSource::new("move-fails", &root));
        let mut p = poller_of(source, &root, &dir.path().join("state"), sink.clone())
            .with_move_to_done(Some("done".into()));
        let errors = || counter("credstream_poll_errors_total", &[("source", "move-fails")]);
        p.poll_once().await.unwrap();
        assert_eq!(p.poll_once().await.unwrap(), 1);
        assert!(root.join("acme/a.csv").exists());
        assert_eq!(errors(), 1);
        // Retried at the next poll, and not emitted again.
        assert_eq!(p.poll_once().await.unwrap(), 0);
        assert_eq!(errors(), 2);
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

        std::fs::remove_file(root.join("acme/done")).unwrap();
        assert_eq!(p.poll_once().await.unwrap(), 0);
        assert_eq!(std::fs::read(root.join("acme/done/a.csv")).unwrap(), b"x");
        assert!(!root.join("acme/a.csv").exists());
        assert_eq!(sink.0.lock().unwrap().len(), 1);
        assert_eq!(errors(), 2);
        assert_eq!(
            counter(
                "credstream_files_moved_to_done_total",
                &[("source", "move-fails")]
            ),
            1
        );
    }

    #[tokio::test]
    async fn with_a_marker_and_move_to_done_the_marker_moves_too() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("landing");
        std::fs::create_dir_all(root.join("acme")).unwrap();
        std::fs::write(root.join("acme/a.csv"), b"complete").unwrap();
        std::fs::write(root.join("acme/a.csv.ok"), b"").unwrap();
        let sink = Arc::new(Collect::default());
        let mut p = poller(&root, &dir.path().join("state"), sink.clone())
            .with_marker_suffix(Some(".ok".into()))
            .with_move_to_done(Some("done".into()));
        assert_eq!(p.poll_once().await.unwrap(), 1, "marked: taken at once");
        assert_eq!(p.poll_once().await.unwrap(), 0);
        // A stale marker left behind would let the next `a.csv` be taken before its
        // own marker arrives.
        let mut left: Vec<_> = tree(&root).into_keys().collect();
        left.sort();
        let expected: Vec<PathBuf> = ["acme", "acme/done", "acme/done/a.csv", "acme/done/a.csv.ok"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(left, expected);
    }

    #[test]
    fn spool_files_of_dead_processes_are_removed_at_start_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        // No process has pid 4194304 + 1 (above Linux's pid_max), ours runs.
        let dead = spool.join("4194305-00000000000000ab.part");
        let ours = spool.join(format!("{}-00000000000000cd.part", std::process::id()));
        let other = spool.join("notes.txt");
        for f in [&dead, &ours, &other] {
            std::fs::write(f, b"x").unwrap();
        }
        clear_spool(&spool);
        assert!(!dead.exists(), "a dead process's spool file stays");
        assert!(ours.exists() && other.exists());
    }
}
