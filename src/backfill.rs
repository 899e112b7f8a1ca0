//! `credstream backfill`: loads a directory of historical files into the pipeline once, the
//! way the poller would have: names judged by the poller's rules ([`crate::poller`]'s
//! walk), each file read once into a spool while hashed, checked unchanged, put in the raw
//! store, and only then announced by a `FileArrived` record on the arrivals topic, one file
//! at a time in path order.
//!
//! Delivery: a file is emitted only after its bytes are in the raw store, and the backfill
//! stops at the first failure, so no file is announced without its bytes and none is half
//! emitted. Files emitted before a failure stay emitted: running the backfill again emits
//! them again, and the topology's dedup store makes those DUPLICATE ledger entries, as it
//! does for files the poller delivered already. Nothing is counted twice.
//!
//! Unlike the poller, a backfill does not wait for files to settle (they are expected to
//! be complete) and remembers nothing: a file that changes while it is read stops it.
//!
//! Architecture Invariant: like the poller, a backfill only reads the directory (it never
//! moves or writes a file there) and knows nothing of categories; it hands arrivals to the
//! same Kafka sink.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use indicatif::ProgressBar;
use tokio::io::{AsyncRead, ReadBuf};

use crate::Error;
use crate::app::ArrivalSender;
use crate::cli::BackfillArgs;
use crate::config::{Config, ConfigError};
use crate::poller::local::{display_name, display_path, walk};
use crate::poller::{
    Archiver, Arrival, ArrivalSink, Listed, Listing, LocalSource, PollerError, Refused, Source,
    clear_spool, listed,
};
use crate::progress::{self, plural};

/// The source name in the records and logs of a backfill.
const SOURCE: &str = "backfill";

/// What a backfill of `dir` takes: the files, in path order, each with its client id (the
/// first folder under `dir`, or `client` for every file), and the entries refused for their
/// names or types. Dot files and partial uploads are skipped as the poller skips them.
///
/// Without `client`, a file directly under `dir` belongs to no client: an error, before
/// anything is read, rather than a file silently left out.
pub fn plan(dir: &Path, client: Option<&str>) -> Result<Listed, Error> {
    let invalid = |m: String| -> Error { ConfigError::Invalid(m).into() };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(invalid(format!(
                "--dir {} is not a directory",
                dir.display()
            )));
        }
        Err(e) => return Err(invalid(format!("--dir {}: {e}", dir.display()))),
    }
    if let Some(client) = client
        && (client.is_empty()
            || client == "."
            || client == ".."
            || display_name(client.as_bytes()) != client)
    {
        return Err(invalid(format!(
            "--client {client:?} is not a client id: it must be a folder name without `/`, `%` \
             or control characters"
        )));
    }
    let (files, refused) =
        walk(dir, None).map_err(|(path, e)| Error::io(format!("listing {}", path.display()), e))?;
    Ok(match client {
        None => {
            let loose: Vec<String> = files
                .iter()
                .filter(|(path, _, _)| path.components().count() == 1)
                .map(|(path, _, _)| display_path(path))
                .collect();
            if let Some(first) = loose.first() {
                return Err(invalid(format!(
                    "{} directly under {} {} to no client (the first: {first}): pass --client ID \
                     for a directory of one client's files, or put them in a folder named for \
                     their client",
                    plural(loose.len() as u64, "file"),
                    dir.display(),
                    if loose.len() == 1 {
                        "belongs"
                    } else {
                        "belong"
                    },
                )));
            }
            listed(SOURCE, files, refused)
        }
        Some(client) => {
            let mut files: Vec<Listing> = files
                .into_iter()
                .map(|(path, size, mtime_ms)| Listing {
                    client_id: client.to_string(),
                    display: display_path(&path),
                    path,
                    size,
                    mtime_ms,
                })
                .collect();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            let mut refused = refused;
            refused.sort_by(|a, b| a.display.cmp(&b.display));
            Listed { files, refused }
        }
    })
}

/// Runs `credstream backfill`.
pub async fn run(config: &Config, args: &BackfillArgs) -> Result<(), Error> {
    let Listed { files, refused } = plan(&args.dir, args.client.as_deref())?;
    for r in &refused {
        tracing::warn!(path = %r.display, reason = r.reason, "name refused; the file is left in place and not loaded");
    }
    let total = Totals::of(&files);
    let topic = crate::credit::arrivals_topic(&config.kafka);
    if args.dry_run {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        for f in &files {
            let line =
                serde_json::json!({"client_id": f.client_id, "path": f.display, "size": f.size});
            writeln!(out, "{line}").map_err(|e| Error::io("writing the output", e))?;
        }
        out.flush()
            .map_err(|e| Error::io("writing the output", e))?;
        eprintln!(
            "backfill (dry run): {} ({} bytes) would be archived and emitted to {topic} for {}; {}; \
             nothing was read or sent",
            plural(total.files, "file"),
            total.bytes,
            clients(&files),
            refused_summary(&refused),
        );
        return Ok(());
    }

    let sender = ArrivalSender::connect(config).await?;
    let spool = config.app.state_dir.join("backfill").join("spool");
    clear_spool(&spool);
    let bar = progress::bytes("backfill", total.bytes);
    let archiver = Arc::new(Archiver {
        source: Arc::new(CountingSource {
            inner: LocalSource::new(SOURCE, &args.dir),
            bar: bar.clone(),
        }),
        raw: sender.raw_store(),
        spool,
    });
    let began = Instant::now();
    let mut done = Totals::default();
    for (i, listing) in files.iter().enumerate() {
        bar.set_message(format!(
            "file {}/{}: {}",
            i + 1,
            total.files,
            listing.display
        ));
        let arrival = match emit(&archiver, &sender, listing).await {
            Ok(arrival) => arrival,
            Err(e) => {
                bar.abandon();
                eprintln!(
                    "backfill: stopped at {}: {} ({} bytes) emitted before it; it and the {} after \
                     it were not",
                    listing.display,
                    plural(done.files, "file"),
                    done.bytes,
                    plural(total.files - done.files - 1, "file"),
                );
                return Err(e);
            }
        };
        done.files += 1;
        done.bytes += listing.size;
        let line = serde_json::json!({
            "client_id": arrival.client_id,
            "path": arrival.path,
            "size": arrival.size,
            "sha256": arrival.sha256,
        });
        progress::suspend(|| {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}").and_then(|()| out.flush())
        })
        .map_err(|e| Error::io("writing the output", e))?;
    }
    sender.flush()?;
    bar.finish_and_clear();
    eprintln!(
        "backfill: {} ({} bytes) archived and emitted to {topic} for {} in {:.1} s; {}",
        plural(done.files, "file"),
        done.bytes,
        clients(&files),
        began.elapsed().as_secs_f64(),
        refused_summary(&refused),
    );
    Ok(())
}

/// Archives one file (spool while hashing, check unchanged, raw store) and, once its bytes
/// are stored, emits its arrival and waits for the broker's acknowledgement.
async fn emit(
    archiver: &Arc<Archiver>,
    sender: &ArrivalSender,
    listing: &Listing,
) -> Result<Arrival, Error> {
    let Some(archived) = archiver.clone().archive(listing.clone()).await? else {
        return Err(PollerError::Source {
            source_name: SOURCE.into(),
            op: "read",
            path: listing.display.clone(),
            error: std::io::Error::other(
                "the file changed while it was read; a backfill takes complete files only",
            ),
        }
        .into());
    };
    let arrival = Arrival {
        client_id: listing.client_id.clone(),
        source: SOURCE.into(),
        path: listing.display.clone(),
        size: listing.size,
        mtime_ms: listing.mtime_ms,
        sha256: archived.sha256,
        raw_key: archived.raw_key,
        detected_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    sender.sink().emit(&arrival).await?;
    tracing::debug!(client = %arrival.client_id, path = %arrival.path, sha256 = %arrival.sha256, size = arrival.size, "file backfilled");
    Ok(arrival)
}

/// Files and bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    files: u64,
    bytes: u64,
}

impl Totals {
    fn of(files: &[Listing]) -> Totals {
        Totals {
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.size).sum(),
        }
    }
}

/// The clients of `files` for a summary line: `client acme`, `clients a, b and c`.
fn clients(files: &[Listing]) -> String {
    let ids: BTreeSet<&str> = files.iter().map(|f| f.client_id.as_str()).collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    match ids.as_slice() {
        [] => "no client".into(),
        [one] => format!("client {one}"),
        [rest @ .., last] => format!("clients {} and {last}", rest.join(", ")),
    }
}

/// `no name refused`, or `2 names refused (symlink: 1, too_long: 1)`.
fn refused_summary(refused: &[Refused]) -> String {
    if refused.is_empty() {
        return "no name refused".into();
    }
    let mut reasons = std::collections::BTreeMap::<&str, usize>::new();
    for r in refused {
        *reasons.entry(r.reason).or_default() += 1;
    }
    let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{r}: {n}")).collect();
    format!(
        "{} refused ({}; left in place, see the warnings)",
        plural(refused.len() as u64, "name"),
        reasons.join(", ")
    )
}

/// The directory as a [`Source`] whose reads move the progress bar, byte by byte.
struct CountingSource {
    inner: LocalSource,
    bar: ProgressBar,
}

#[async_trait::async_trait]
impl Source for CountingSource {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn list(&self, skip: Option<&Path>) -> Result<Listed, PollerError> {
        self.inner.list(skip).await
    }

    async fn open(
        &self,
        listing: &Listing,
    ) -> Result<Box<dyn AsyncRead + Send + Unpin>, PollerError> {
        let inner = self.inner.open(listing).await?;
        Ok(Box::new(CountingReader {
            inner,
            bar: self.bar.clone(),
        }))
    }

    async fn stat(&self, listing: &Listing) -> Result<(u64, i64), PollerError> {
        self.inner.stat(listing).await
    }

    async fn move_to(&self, listing: &Listing, _dest: &Path) -> Result<PathBuf, PollerError> {
        // Never called: a backfill has no done folder.
        Err(PollerError::Source {
            source_name: SOURCE.into(),
            op: "move",
            path: listing.display.clone(),
            error: std::io::Error::other("a backfill never moves files"),
        })
    }
}

/// A reader that adds the bytes it reads to a progress bar.
struct CountingReader {
    inner: Box<dyn AsyncRead + Send + Unpin>,
    bar: ProgressBar,
}

impl AsyncRead for CountingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            self.bar.inc((buf.filled().len() - before) as u64);
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, bytes: &[u8]) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn paths(listed: &Listed) -> Vec<(String, String)> {
        listed
            .files
            .iter()
            .map(|f| (f.client_id.clone(), f.display.clone()))
            .collect()
    }

    #[test]
    fn clients_are_first_folders_and_names_are_judged_as_the_poller_judges_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "beta/b.csv", b"b");
        write(root, "acme/2026/z.dat", b"z");
        write(root, "acme/a.csv", b"a");
        write(root, "acme/upload.csv.filepart", b"partial");
        write(root, "acme/.hidden", b"hidden");
        std::os::unix::fs::symlink("/etc/passwd", root.join("acme/passwd.csv")).unwrap();
        let listed = plan(root, None).unwrap();
        assert_eq!(
            paths(&listed),
            [
                ("acme".to_string(), "acme/2026/z.dat".to_string()),
                ("acme".into(), "acme/a.csv".into()),
                ("beta".into(), "beta/b.csv".into()),
            ]
        );
        assert_eq!(
            listed.refused,
            [Refused {
                display: "acme/passwd.csv".into(),
                reason: "symlink"
            }]
        );
        assert_eq!(clients(&listed.files), "clients acme and beta");
        assert_eq!(
            refused_summary(&listed.refused),
            "1 name refused (symlink: 1; left in place, see the warnings)"
        );
    }

    #[test]
    fn a_flat_directory_needs_a_client_and_takes_it_for_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "b.csv", b"b");
        write(root, "a.csv", b"a");
        write(root, "sub/c.csv", b"c");
        let e = plan(root, None).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(e.to_string().contains("2 files directly under"), "{e}");
        assert!(e.to_string().contains("--client"), "{e}");
        let listed = plan(root, Some("acme")).unwrap();
        assert_eq!(
            paths(&listed),
            [
                ("acme".to_string(), "a.csv".to_string()),
                ("acme".into(), "b.csv".into()),
                ("acme".into(), "sub/c.csv".into()),
            ]
        );
        for bad in ["", "..", "a/b", "100%", "line\nbreak"] {
            assert_eq!(
                plan(root, Some(bad)).unwrap_err().kind(),
                crate::ErrorKind::Config,
                "{bad:?}"
            );
        }
        assert_eq!(
            plan(&root.join("missing"), None).unwrap_err().kind(),
            crate::ErrorKind::Config
        );
    }
}
