//! The SFTP source against Debian's OpenSSH sshd on loopback: listing, reading, the
//! pinned host key, and a slow upload emitted exactly once, after it completes.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use credstream::poller::{
    Arrival, ArrivalSink, Poller, PollerError, SftpSettings, SftpSource, Source,
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
    let listed = source.list().await?;
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
            .list()
            .await?
            .len()
            == 1
    );

    sftpd.swap_host_key()?;
    let err = SftpSource::new("sftp", settings(&sftpd))
        .list()
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
        .list()
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
