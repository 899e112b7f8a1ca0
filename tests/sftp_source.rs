//! The SFTP source against Debian's OpenSSH sshd on loopback: listing, reading, the
//! pinned host key, a slow upload emitted exactly once, after it completes, hostile names
//! and links, the move to the done folder, and concurrent reads over one session.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use credstream::poller::{
    Arrival, ArrivalSink, Listed, Listing, LocalSource, Poller, PollerError, Refused, SftpSettings,
    SftpSource, Source,
};
use credstream::rawstore::{FsRawStore, RawStore};
use support::sftp::Sftpd;
use tokio::io::AsyncReadExt;

fn settings(sftpd: &Sftpd) -> SftpSettings {
    SftpSettings {
        host: sftpd.host().to_string(),
        port: sftpd.port(),
        user: sftpd.user().to_string(),
        root: sftpd.remote_dir(),
        known_hosts: sftpd.known_hosts_path(),
        key_file: Some(sftpd.client_key_path()),
        password: None,
    }
}

fn write(root: &Path, rel: &str, bytes: &[u8]) -> Result<()> {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(path, bytes)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_reads_and_stats_client_files_skipping_partials() -> Result<()> {
    let sftpd = Sftpd::start()?;
    let drop = sftpd.drop_dir();
    write(&drop, "acme-bank/accounts_2026-10.csv", b"a,b\n1,2\n")?;
    write(
        &drop,
        "acme-bank/in/postings_2026-10-15_01.dat",
        &[7u8; 70_000],
    )?;
    write(&drop, "acme-bank/accounts_2026-11.csv.filepart", b"half")?;
    write(&drop, "acme-bank/.hidden", b"x")?;
    write(&drop, "stray.csv", b"not under a client")?;

    let source = SftpSource::new("sftp", settings(&sftpd));
    let listed = source.list(None).await?.files;
    let paths: Vec<&str> = listed.iter().map(|l| l.display.as_str()).collect();
    ensure!(
        paths
            == [
                "acme-bank/accounts_2026-10.csv",
                "acme-bank/in/postings_2026-10-15_01.dat"
            ],
        "{paths:?}"
    );
    let big = &listed[1];
    ensure!(big.client_id == "acme-bank" && big.size == 70_000);
    let local = std::fs::metadata(drop.join("acme-bank/in/postings_2026-10-15_01.dat"))?;
    let mtime_s = local
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    ensure!(
        big.mtime_ms == mtime_s * 1000,
        "{} vs {mtime_s}",
        big.mtime_ms
    );
    ensure!(source.stat(big).await? == (70_000, mtime_s * 1000));
    let mut bytes = Vec::new();
    source.open(big).await?.read_to_end(&mut bytes).await?;
    ensure!(bytes == vec![7u8; 70_000]);
    // Read only: nothing on the server changed.
    ensure!(
        drop.join("acme-bank/accounts_2026-11.csv.filepart")
            .exists()
    );
    ensure!(
        drop.join("acme-bank/in/postings_2026-10-15_01.dat")
            .exists()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_host_key_is_refused_with_a_clear_error() -> Result<()> {
    let mut sftpd = Sftpd::start()?;
    write(&sftpd.drop_dir(), "acme-bank/a.csv", b"x")?;
    ensure!(
        SftpSource::new("sftp", settings(&sftpd))
            .list(None)
            .await?
            .files
            .len()
            == 1
    );

    sftpd.swap_host_key()?;
    let err = SftpSource::new("sftp", settings(&sftpd))
        .list(None)
        .await
        .err()
        .context("a server with another host key was trusted")?
        .to_string();
    ensure!(
        err.contains("HOST KEY MISMATCH") && err.contains("line 1"),
        "{err}"
    );

    // A host that is not pinned at all is refused too: no trust on first use.
    let mut unpinned = settings(&sftpd);
    let empty = sftpd.client_dir().join("empty_known_hosts");
    std::fs::write(&empty, "")?;
    unpinned.known_hosts = empty;
    let err = SftpSource::new("sftp", unpinned)
        .list(None)
        .await
        .err()
        .context("an unpinned server was trusted")?
        .to_string();
    ensure!(
        err.contains("is not in") && err.contains("no key is trusted on first use"),
        "{err}"
    );
    Ok(())
}

#[derive(Default)]
struct Collect(Mutex<Vec<Arrival>>);

#[async_trait::async_trait]
impl ArrivalSink for Collect {
    async fn emit(&self, arrival: &Arrival) -> Result<(), PollerError> {
        self.0.lock().unwrap().push(arrival.clone());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_emitted_once_after_it_completes_with_its_hash() -> Result<()> {
    let sftpd = Sftpd::start()?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(sftpd.drop_dir().join("acme-bank"))?;
    let raw = Arc::new(FsRawStore::new(dir.path().join("raw")));
    let sink = Arc::new(Collect::default());
    // Polls every 200 ms; a file must stay unchanged for 3 s, longer than the uploader's
    // 1 s pauses (SFTP mtimes have one-second resolution).
    let poller = Poller::new(
        Box::new(SftpSource::new("sftp", settings(&sftpd))),
        raw.clone(),
        sink.clone(),
        &dir.path().join("state"),
        Duration::from_millis(200),
    )?
    .with_quiet_period(Duration::from_secs(3));
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(poller.run(stop.clone()));

    let content: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    // The upload blocks this worker; the poller runs on the other.
    tokio::task::block_in_place(|| {
        sftpd.upload_slowly(
            &content,
            "acme-bank/postings_2026-10-15_01.dat",
            10_000,
            Duration::from_secs(1),
        )
    })?;
    // Nothing may have been emitted while the file was growing.
    ensure!(
        sink.0.lock().unwrap().is_empty(),
        "a partial upload was emitted: {:?}",
        sink.0.lock().unwrap()
    );

    let arrived = support::wait_for(Duration::from_secs(30), "the arrival", || {
        let sink = sink.clone();
        async move { (!sink.0.lock().unwrap().is_empty()).then_some(()) }
    })
    .await;
    // A few more polls: still one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    running.await?;
    arrived?;
    let arrivals = sink.0.lock().unwrap().clone();
    ensure!(arrivals.len() == 1, "{arrivals:?}");
    let a = &arrivals[0];
    ensure!(a.size == 40_000 && a.client_id == "acme-bank" && a.source == "sftp");
    ensure!(a.path == "acme-bank/postings_2026-10-15_01.dat");
    ensure!(a.sha256 == credstream::rawstore::sha256_hex(&content));
    ensure!(raw.get(&a.raw_key).await? == content);
    Ok(())
}

/// The sum of a counter's series whose labels include `labels`, as `/metrics` shows it.
fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    let text = credstream::metrics::install().render();
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

/// Every entry under `dir`, links not followed: its path, and `dir`, the content's digest
/// or the link's target.
fn tree(dir: &Path) -> Result<std::collections::BTreeMap<PathBuf, String>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let what = if meta.is_symlink() {
                format!("link {}", std::fs::read_link(&path)?.display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else {
                credstream::rawstore::sha256_hex(&std::fs::read(&path)?)
            };
            out.insert(path.strip_prefix(dir)?.to_path_buf(), what);
        }
    }
    Ok(out)
}

fn sftp_poller(
    sftpd: &Sftpd,
    name: &str,
    state: &Path,
    raw: Arc<FsRawStore>,
    sink: Arc<Collect>,
) -> Result<Poller> {
    Ok(Poller::new(
        Box::new(SftpSource::new(name, settings(sftpd))),
        raw,
        sink,
        state,
        Duration::from_millis(200),
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_over_sftp_are_taken_escaped_or_refused_once() -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;
    credstream::metrics::install();
    let sftpd = Sftpd::start()?;
    let drop = sftpd.drop_dir();
    let dir = tempfile::tempdir()?;
    let outside = dir.path().join("outside");
    write(&outside, "secret.csv", b"outside the root")?;
    // Odd names: taken, the path escaped exactly as the local source does. Each file
    // holds its own name.
    let odd: [(&[u8], &str); 4] = [
        (b"line\nbreak.csv", "acme/line%0Abreak.csv"),
        (b"esc\x1b[31m.csv", "acme/esc%1B[31m.csv"),
        (b"%41.csv", "acme/%2541.csv"),
        (
            "sp ace \u{fc}n\u{ef}.csv".as_bytes(),
            "acme/sp ace \u{fc}n\u{ef}.csv",
        ),
    ];
    std::fs::create_dir_all(drop.join("acme"))?;
    for (name, _) in odd {
        std::fs::write(
            drop.join("acme").join(std::ffi::OsStr::from_bytes(name)),
            name,
        )?;
    }
    // russh-sftp decodes names lossily, so this one cannot be addressed: refused.
    std::fs::write(
        drop.join("acme")
            .join(std::ffi::OsStr::from_bytes(b"bad\xff.csv")),
        b"x",
    )?;
    // Links (sshd would follow them on open) and a path over 1024 bytes.
    symlink("/etc/passwd", drop.join("acme/passwd.csv"))?;
    symlink(outside.join("secret.csv"), drop.join("acme/secret.csv"))?;
    symlink(&outside, drop.join("acme/linked"))?;
    symlink(&outside, drop.join("evil"))?;
    let mut deep = drop.join("acme");
    let mut deep_display = "acme".to_string();
    for i in 0..5 {
        let name = format!("{i}{}", "d".repeat(240));
        deep.push(&name);
        deep_display = format!("{deep_display}/{name}");
    }
    write(&deep, "deep.csv", b"deep")?;
    let before = (tree(&drop)?, tree(&outside)?);

    // What the source reports.
    let Listed { files, refused } = SftpSource::new("sftp", settings(&sftpd)).list(None).await?;
    let mut taken: Vec<&str> = files.iter().map(|l| l.display.as_str()).collect();
    taken.sort();
    let mut expected_taken: Vec<&str> = odd.iter().map(|(_, display)| *display).collect();
    expected_taken.sort();
    ensure!(taken == expected_taken, "{taken:?}");
    let refused: Vec<(&str, &str)> = refused
        .iter()
        .map(|Refused { display, reason }| (display.as_str(), *reason))
        .collect();
    let mut expected_refused = vec![
        ("acme/bad\u{FFFD}.csv", "not_utf8"),
        ("acme/linked", "symlink"),
        ("acme/passwd.csv", "symlink"),
        ("acme/secret.csv", "symlink"),
        (deep_display.as_str(), "too_long"),
        ("evil", "symlink"),
    ];
    expected_refused.sort();
    ensure!(refused == expected_refused, "{refused:?}");

    // What a poller makes of it: the odd files emitted, each refusal counted once.
    let raw = Arc::new(FsRawStore::new(dir.path().join("raw")));
    let sink = Arc::new(Collect::default());
    let mut poller = sftp_poller(
        &sftpd,
        "hostile-sftp",
        &dir.path().join("state"),
        raw.clone(),
        sink.clone(),
    )?;
    ensure!(poller.poll_once().await? == 0);
    ensure!(poller.poll_once().await? == 4);
    ensure!(poller.poll_once().await? == 0);
    let mut arrivals: Vec<(String, String)> = sink
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|a| (a.path.clone(), a.sha256.clone()))
        .collect();
    arrivals.sort();
    let mut expected: Vec<(String, String)> = odd
        .iter()
        .map(|(name, display)| (display.to_string(), credstream::rawstore::sha256_hex(name)))
        .collect();
    expected.sort();
    ensure!(arrivals == expected, "{arrivals:?}");
    let all = sink.0.lock().unwrap().clone();
    for a in &all {
        let bytes = raw.get(&a.raw_key).await?;
        ensure!(
            credstream::rawstore::sha256_hex(&bytes) == a.sha256,
            "{a:?}"
        );
    }
    let refusals = |reason| {
        counter(
            "credstream_file_names_refused_total",
            &[("source", "hostile-sftp"), ("reason", reason)],
        )
    };
    ensure!(refusals("symlink") == 4, "{}", refusals("symlink"));
    ensure!(refusals("too_long") == 1 && refusals("not_utf8") == 1);
    // The server's disk and the linked-to folder are as they were: read only.
    ensure!((tree(&drop)?, tree(&outside)?) == before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_to_done_over_sftp_renames_into_the_client_done_folder() -> Result<()> {
    credstream::metrics::install();
    let sftpd = Sftpd::start()?;
    let drop = sftpd.drop_dir();
    write(&drop, "acme-bank/a.csv", b"first")?;
    write(&drop, "acme-bank/in/b.dat", b"bee")?;
    // Sent and moved before: never replaced, and never a candidate.
    write(&drop, "acme-bank/done/a.csv", b"earlier")?;
    let dir = tempfile::tempdir()?;
    let raw = Arc::new(FsRawStore::new(dir.path().join("raw")));
    let sink = Arc::new(Collect::default());
    let mut poller = sftp_poller(
        &sftpd,
        "moving-sftp",
        &dir.path().join("state"),
        raw,
        sink.clone(),
    )?
    .with_move_to_done(Some("done".into()));
    ensure!(poller.poll_once().await? == 0);
    ensure!(poller.poll_once().await? == 2);
    ensure!(poller.poll_once().await? == 0);
    ensure!(poller.poll_once().await? == 0);

    let mut paths: Vec<String> = sink
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.path.clone())
        .collect();
    paths.sort();
    ensure!(
        paths == ["acme-bank/a.csv", "acme-bank/in/b.dat"],
        "{paths:?}"
    );
    ensure!(!drop.join("acme-bank/a.csv").exists() && !drop.join("acme-bank/in/b.dat").exists());
    ensure!(std::fs::read(drop.join("acme-bank/done/a.csv"))? == b"earlier");
    ensure!(std::fs::read(drop.join("acme-bank/done/in/b.dat"))? == b"bee");
    let suffixed: Vec<String> = std::fs::read_dir(drop.join("acme-bank/done"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<_>>>()?
        .into_iter()
        .filter(|n| n.starts_with("a.csv."))
        .collect();
    ensure!(suffixed.len() == 1, "{suffixed:?}");
    ensure!(
        suffixed[0]["a.csv.".len()..].parse::<i64>().is_ok(),
        "{suffixed:?}"
    );
    ensure!(std::fs::read(drop.join("acme-bank/done").join(&suffixed[0]))? == b"first");
    ensure!(
        counter(
            "credstream_files_moved_to_done_total",
            &[("source", "moving-sftp")]
        ) == 2
    );
    Ok(())
}

/// A source whose first `gate` opens wait until `gate` files are open at once, and that
/// counts the files open at once.
struct Gated {
    inner: Box<dyn Source>,
    gate: usize,
    barrier: tokio::sync::Barrier,
    opened: AtomicUsize,
    open_now: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
}

/// A reader that counts itself out of [`Gated::open_now`] when dropped.
struct Counted(
    Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    Arc<AtomicUsize>,
);

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Source for Gated {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn list(&self, skip: Option<&Path>) -> Result<Listed, PollerError> {
        self.inner.list(skip).await
    }
    async fn open(
        &self,
        listing: &Listing,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, PollerError> {
        let reader = self.inner.open(listing).await?;
        let now = self.open_now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_open.fetch_max(now, Ordering::SeqCst);
        if self.opened.fetch_add(1, Ordering::SeqCst) < self.gate {
            self.barrier.wait().await;
        }
        Ok(Box::new(Counted(reader, self.open_now.clone())))
    }
    async fn stat(&self, listing: &Listing) -> Result<(u64, i64), PollerError> {
        self.inner.stat(listing).await
    }
    async fn move_to(&self, listing: &Listing, dest: &Path) -> Result<PathBuf, PollerError> {
        self.inner.move_to(listing, dest).await
    }
}

/// Polls `source`, whose files are `expected` (path, SHA-256, bytes, in path order), with
/// `max_concurrent_reads = 4`: four reads must be in flight at once, and never more; each
/// file is emitted once, in path order, with its own bytes archived.
async fn read_at_once(
    source: Box<dyn Source>,
    expected: &[(String, String, Vec<u8>)],
) -> Result<()> {
    let most_open = Arc::new(AtomicUsize::new(0));
    let source = Gated {
        inner: source,
        gate: 4,
        barrier: tokio::sync::Barrier::new(4),
        opened: AtomicUsize::new(0),
        open_now: Arc::new(AtomicUsize::new(0)),
        most_open: most_open.clone(),
    };
    let dir = tempfile::tempdir()?;
    let raw = Arc::new(FsRawStore::new(dir.path().join("raw")));
    let sink = Arc::new(Collect::default());
    let mut poller = Poller::new(
        Box::new(source),
        raw.clone(),
        sink.clone(),
        &dir.path().join("state"),
        Duration::from_millis(200),
    )?
    .with_max_concurrent_reads(4);
    ensure!(poller.poll_once().await? == 0);
    // The first four opens wait for one another: if the source could not carry four
    // reads at once, this poll would never end, so it is bounded to fail instead.
    let emitted = tokio::time::timeout(Duration::from_secs(120), poller.poll_once())
        .await
        .context("four reads were never in flight at once")??;
    ensure!(emitted == expected.len(), "{emitted}");
    ensure!(poller.poll_once().await? == 0);
    ensure!(most_open.load(Ordering::SeqCst) == 4);

    let arrivals = sink.0.lock().unwrap().clone();
    ensure!(arrivals.len() == expected.len());
    for (a, (path, sha, content)) in arrivals.iter().zip(expected) {
        ensure!(&a.path == path && &a.sha256 == sha, "{a:?}");
        ensure!(raw.get(&a.raw_key).await? == *content);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_local_files_are_read_at_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("landing");
    let mut expected = Vec::new();
    for i in 0..10u32 {
        let content = format!("file {i} ")
            .repeat(1000 * (i as usize + 1))
            .into_bytes();
        let path = format!("acme/f{i:02}.csv");
        write(&root, &path, &content)?;
        expected.push((path, credstream::rawstore::sha256_hex(&content), content));
    }
    read_at_once(Box::new(LocalSource::new("landing", &root)), &expected).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_files_are_read_at_once_over_one_sftp_session() -> Result<()> {
    let sftpd = Sftpd::start()?;
    let drop = sftpd.drop_dir();
    let mut expected = Vec::new();
    for i in 0..8u32 {
        // Up to ~400 KB: each read takes many SFTP read requests, interleaved on the wire
        // with the other files' requests.
        let content: Vec<u8> = (0..50_000 * (i + 1)).map(|b| (b * 7 + i) as u8).collect();
        let path = format!("acme-bank/f{i}.dat");
        write(&drop, &path, &content)?;
        expected.push((path, credstream::rawstore::sha256_hex(&content), content));
    }
    read_at_once(
        Box::new(SftpSource::new("sftp", settings(&sftpd))),
        &expected,
    )
    .await?;
    // One SSH connection served every listing and read.
    let log = std::fs::read_to_string(sftpd.log_path())?;
    let logins = log.matches("Accepted publickey").count();
    ensure!(logins == 1, "{logins} logins:\n{log}");
    Ok(())
}
