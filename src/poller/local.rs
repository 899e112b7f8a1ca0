//! A landing area in a local (or mounted) directory: `<root>/<client id>/…/<file>`.
//!
//! Architecture Invariant: the source lists, stats and reads, and never follows a symbolic
//! link (listed links are refused; a file swapped for a link after its listing fails to
//! open). Its one write is [`Source::move_to`], which the poller calls only with
//! `move_to_done`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{Change, EntryKind, Listed, Listing, PollerError, Refused, Source, Verdict, Watch};

/// Names that mark a file as still being written: upload tools write to these and rename
/// when done, so they are never candidates.
const PARTIAL_SUFFIXES: &[&str] = &[".filepart", ".part", ".partial", ".tmp", ".crdownload"];

/// A local directory source.
pub struct LocalSource {
    name: String,
    root: PathBuf,
}

impl LocalSource {
    pub fn new(name: &str, root: impl Into<PathBuf>) -> LocalSource {
        LocalSource {
            name: name.to_string(),
            root: root.into(),
        }
    }

    fn err(&self, op: &'static str, path: &Path, error: std::io::Error) -> PollerError {
        PollerError::Source {
            source_name: self.name.clone(),
            op,
            path: display_path(path),
            error,
        }
    }
}

/// Is this a name to skip: hidden (dot files, our own temporaries) or a partial upload.
pub(super) fn skipped(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') || PARTIAL_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// A relative path as UTF-8 with `/` separators; control characters and bytes that are
/// not UTF-8 become `%XX`, and `%` itself `%25`, so distinct paths stay distinct and a
/// name cannot forge a log line.
pub(crate) fn display_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for part in path.components() {
        if part == std::path::Component::RootDir {
            out.push('/');
            continue;
        }
        // An escaped name never ends with `/`, so this is a separator only after a name.
        if !out.is_empty() && !out.ends_with('/') {
            out.push('/');
        }
        out.push_str(&display_name(part.as_os_str().as_bytes()));
    }
    out
}

/// One name escaped as in [`display_path`], and a `/` in it (which only a server can send)
/// as `%2F`.
pub(crate) fn display_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if ch == '%' || ch == '/' || ch.is_control() {
                let mut b = [0u8; 4];
                for byte in ch.encode_utf8(&mut b).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            } else {
                out.push(ch);
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[async_trait::async_trait]
impl Source for LocalSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list(&self, skip: Option<&Path>) -> Result<Listed, PollerError> {
        let root = self.root.clone();
        let skip = skip.map(Path::to_path_buf);
        let walked = tokio::task::spawn_blocking(move || walk(&root, skip.as_deref()))
            .await
            .expect("listing does not panic");
        let (files, refused) = walked.map_err(|(path, e)| self.err("list", &path, e))?;
        Ok(super::listed(&self.name, files, refused))
    }

    async fn open(
        &self,
        listing: &Listing,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, PollerError> {
        let path = self.root.join(&listing.path);
        // The listing saw a regular file; if a link has taken its place since, opening
        // fails rather than following it (and a pipe put there cannot block the open).
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .await
            .map_err(|e| self.err("open", &path, e))?;
        let meta = file
            .metadata()
            .await
            .map_err(|e| self.err("open", &path, e))?;
        if !meta.is_file() {
            return Err(self.err(
                "open",
                &path,
                std::io::Error::other("no longer a regular file"),
            ));
        }
        Ok(Box::new(file))
    }

    async fn stat(&self, listing: &Listing) -> Result<(u64, i64), PollerError> {
        let path = self.root.join(&listing.path);
        let meta = tokio::fs::symlink_metadata(&path)
            .await
            .map_err(|e| self.err("stat", &path, e))?;
        Ok((meta.len(), mtime_ms(&meta)))
    }

    async fn move_to(&self, listing: &Listing, dest: &Path) -> Result<PathBuf, PollerError> {
        let root = self.root.clone();
        let from = listing.path.clone();
        let dest = dest.to_path_buf();
        let now_ms = chrono::Utc::now().timestamp_millis();
        tokio::task::spawn_blocking(move || move_file(&root, &from, &dest, now_ms))
            .await
            .expect("moving does not panic")
            .map_err(|(path, e)| self.err("move", &path, e))
    }

    /// inotify through `notify`, on the whole tree (folders made later are added as they
    /// appear). A file written into a folder in the moment before its watch is in place
    /// is not reported; the polls still take it.
    fn watch(&self) -> Result<Option<Watch>, PollerError> {
        use notify::Watcher;
        let watch_err = |e: notify::Error| self.err("watch", &self.root, std::io::Error::other(e));
        let roots = [
            std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone()),
            self.root
                .canonicalize()
                .unwrap_or_else(|_| self.root.clone()),
        ];
        let (tx, changes) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            for change in changes_of(&roots, event) {
                // The receiver is gone only when the poller stopped.
                let _ = tx.send(change);
            }
        })
        .map_err(watch_err)?;
        watcher
            .watch(&self.root, notify::RecursiveMode::Recursive)
            .map_err(watch_err)?;
        Ok(Some(Watch {
            changes,
            _watcher: Box::new(watcher),
        }))
    }
}

/// What one `notify` event says, as [`Change`]s on paths under the root (`roots`: its
/// absolute and canonical forms). A close after writing and a rename into place finish a
/// file; creating, writing, moving away and removing touch it; opening, reading, a close
/// without writing and metadata changes (`cp -p` sets times after its close) say nothing
/// of its contents. An event that cannot be placed under the root is a rescan.
fn changes_of(roots: &[PathBuf], event: notify::Result<notify::Event>) -> Vec<Change> {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    let event = match event {
        Ok(event) if !event.need_rescan() => event,
        _ => return vec![Change::Rescan],
    };
    let finished = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => true,
        EventKind::Access(_)
        | EventKind::Modify(ModifyKind::Metadata(_))
        // Reported after its `From` and `To` halves, which say it all.
        | EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => return Vec::new(),
        _ => false,
    };
    event
        .paths
        .iter()
        .map(|path| {
            let under = roots.iter().find_map(|root| path.strip_prefix(root).ok());
            match under {
                Some(rel) if finished => Change::Finished(rel.to_path_buf()),
                Some(rel) => Change::Touched(rel.to_path_buf()),
                None => Change::Rescan,
            }
        })
        .collect()
}

/// Moves `from` to `dest` (both under `root`), creating `dest`'s folders one at a time and
/// refusing any that is a link, so the move cannot leave the root. An existing `dest` is
/// kept: the file takes the first free [`super::move_candidate`] instead.
fn move_file(
    root: &Path,
    from: &Path,
    dest: &Path,
    now_ms: i64,
) -> Result<PathBuf, (PathBuf, std::io::Error)> {
    let mut dir = root.to_path_buf();
    for part in dest.parent().into_iter().flat_map(Path::components) {
        dir.push(part);
        let meta = match std::fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                match std::fs::create_dir(&dir) {
                    Ok(()) => continue,
                    // Made by someone else meanwhile: checked below like any other.
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        std::fs::symlink_metadata(&dir).map_err(|e| (dir.clone(), e))?
                    }
                    Err(e) => return Err((dir, e)),
                }
            }
            other => other.map_err(|e| (dir.clone(), e))?,
        };
        if !meta.is_dir() {
            return Err((
                dir,
                std::io::Error::other("on the way to the done folder but not a folder (or a link)"),
            ));
        }
    }
    for attempt in 0..super::MOVE_ATTEMPTS {
        let candidate = super::move_candidate(dest, now_ms, attempt);
        let target = root.join(&candidate);
        match std::fs::symlink_metadata(&target) {
            Ok(_) => continue, // taken: never replaced
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err((target, e)),
        }
        std::fs::rename(root.join(from), &target).map_err(|e| (root.join(from), e))?;
        return Ok(candidate);
    }
    Err((
        root.join(dest),
        std::io::Error::other(format!("{} names tried, all taken", super::MOVE_ATTEMPTS)),
    ))
}

fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000
}

pub(crate) type Walked = (Vec<(PathBuf, u64, i64)>, Vec<Refused>);

/// Regular files under `root`, relative to it, and the entries refused on the way
/// ([`super::judge`]). Symbolic links are never followed: a link could lead out of the
/// landing area.
pub(crate) fn walk(root: &Path, skip: Option<&Path>) -> Result<Walked, (PathBuf, std::io::Error)> {
    use std::os::unix::ffi::OsStrExt;
    let mut files = Vec::new();
    let mut refused = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = std::fs::read_dir(&dir).map_err(|e| (dir.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| (dir.clone(), e))?;
            // The entry itself: `file_type` and `metadata` do not follow links.
            let file_type = entry.file_type().map_err(|e| (entry.path(), e))?;
            let kind = if file_type.is_symlink() {
                EntryKind::Symlink
            } else if file_type.is_dir() {
                EntryKind::Dir
            } else if file_type.is_file() {
                // A file deleted between listing and stat is simply not listed.
                match entry.metadata() {
                    Ok(meta) => EntryKind::File {
                        size: meta.len(),
                        mtime_ms: mtime_ms(&meta),
                    },
                    Err(_) => continue,
                }
            } else {
                EntryKind::Other
            };
            match super::judge(&rel, entry.file_name().as_bytes(), kind, skip) {
                Verdict::Ignore => {}
                Verdict::Walk(path) => stack.push(path),
                Verdict::Take(path, size, mtime_ms) => files.push((path, size, mtime_ms)),
                Verdict::Refuse(r) => refused.push(r),
            }
        }
    }
    Ok((files, refused))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[tokio::test]
    async fn lists_client_files_and_skips_partials_and_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("acme/2026/10")).unwrap();
        std::fs::write(root.join("acme/2026/10/accounts.csv"), b"a").unwrap();
        std::fs::write(root.join("acme/b.csv.filepart"), b"a").unwrap();
        std::fs::write(root.join("acme/.hidden"), b"a").unwrap();
        std::fs::write(root.join("stray.csv"), b"a").unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"bad\xffname%.csv");
        std::fs::write(root.join("acme").join(odd), b"a").unwrap();

        let source = LocalSource::new("landing", root);
        let listed: Vec<_> = source
            .list(None)
            .await
            .unwrap()
            .files
            .into_iter()
            .map(|l| (l.client_id, l.display))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("acme".to_string(), "acme/2026/10/accounts.csv".to_string()),
                ("acme".to_string(), "acme/bad%FFname%25.csv".to_string()),
            ]
        );
    }
}
