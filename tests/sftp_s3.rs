//! Production transports end to end: files uploaded to Debian's OpenSSH sftp server,
//! archived in an S3-compatible store (moto), processed by `credstream run` on a separate
//! Tansu broker. Every service is started here, on loopback.

mod support;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use support::stack::{Stack, metric_value};
use support::{read_topic, wait_for};

use credstream::samples::account_master_csv;

fn sha256(bytes: &[u8]) -> String {
    credstream::rawstore::sha256_hex(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sftp_upload_is_archived_in_s3_and_processed_exactly_once() -> Result<()> {
    let mut s = Stack::new().await?;
    s.start().await?;
    let csv = account_master_csv(200, 61, "2026-10-31", &[]);
    let bytes = csv.as_bytes();
    // Five chunks a second apart: the file on the server grows for four seconds.
    tokio::task::block_in_place(|| {
        s.sftpd.upload_slowly(
            bytes,
            "acme-bank/accounts_2026-10.csv",
            bytes.len().div_ceil(5),
            Duration::from_secs(1),
        )
    })?;
    let files = s.wait_files(1, Duration::from_secs(90)).await?;
    let entry = &files["acme-bank/accounts_2026-10.csv"];
    ensure!(entry["status"] == "PROCESSED", "{entry:#}");
    ensure!(entry["file_sha256"] == sha256(bytes).as_str(), "{entry:#}");
    ensure!(entry["records_out"] == 200, "{entry:#}");

    // Exactly one arrival: no partial file was emitted on the way.
    let arrivals = read_topic(&s.tansu.bootstrap(), &s.topic("file-arrivals"))?;
    ensure!(arrivals.len() == 1, "{} arrivals", arrivals.len());
    let out = read_topic(&s.tansu.bootstrap(), &s.topic("card.accounts"))?;
    ensure!(out.len() == 200, "{} records out", out.len());

    // The archive holds the exact bytes under their digest, encrypted at rest, with the
    // original path in the metadata.
    let raw_key = entry["raw_key"].as_str().context("raw_key")?;
    ensure!(raw_key == format!("sha256/{}/{}", &sha256(bytes)[..2], sha256(bytes)));
    let object = s.object(raw_key).await?.context("the object is in S3")?;
    ensure!(object.body == bytes, "the archived bytes differ");
    ensure!(
        object.header("x-amz-server-side-encryption") == Some("AES256"),
        "{:?}",
        object.headers
    );
    let meta = object.metadata();
    ensure!(
        meta.get("original-path").map(String::as_str) == Some("acme-bank/accounts_2026-10.csv"),
        "{meta:?}"
    );
    ensure!(meta.get("sha256") == Some(&sha256(bytes)), "{meta:?}");
    // Parsing used a temporary download that is gone.
    let cache = s.root().join("state/raw-cache");
    let left: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    ensure!(left.is_empty(), "downloads left behind: {left:?}");
    let metrics = s.metrics().await?;
    ensure!(
        metric_value(
            &metrics,
            "credstream_raw_store_puts_total{backend=\"s3\",outcome=\"stored\"}"
        ) == Some(1.0),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_host_key_stops_the_source_loudly_and_takes_nothing() -> Result<()> {
    let mut s = Stack::new().await?;
    s.start().await?;
    let first = account_master_csv(10, 62, "2026-10-31", &[]);
    s.upload("acme-bank/accounts_2026-10.csv", first.as_bytes())?;
    s.wait_files(1, Duration::from_secs(90)).await?;

    // The connection drops and the server that answers the reconnect presents another
    // key: a man in the middle, as far as anyone can tell.
    ensure!(
        s.sftpd.drop_sessions()? >= 1,
        "credstream held no SFTP session"
    );
    s.sftpd.swap_host_key()?;
    let second = account_master_csv(10, 63, "2026-11-30", &[]);
    s.upload("acme-bank/accounts_2026-11.csv", second.as_bytes())?;
    let metric = "credstream_sftp_host_key_mismatch_total{source=\"bank-sftp\"}";
    let url = format!("{}/metrics", s.query);
    wait_for(
        Duration::from_secs(60),
        "a host-key mismatch counted",
        || {
            let url = url.clone();
            async move {
                let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
                metric_value(&text, metric).filter(|v| *v >= 1.0)
            }
        },
    )
    .await
    .map_err(|e| e.context(s.log_tail()))?;
    let log = std::fs::read_to_string(s.root().join("run.log"))?;
    ensure!(
        log.contains("HOST KEY MISMATCH") && log.contains("known_hosts"),
        "the log does not say why: {}",
        s.log_tail()
    );
    // Nothing was taken from the impostor.
    ensure!(s.ledger_len().await? == 1);
    let arrivals = read_topic(&s.tansu.bootstrap(), &s.topic("file-arrivals"))?;
    ensure!(arrivals.len() == 1, "{} arrivals", arrivals.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_of_30_s_emits_nothing_without_its_object_and_loses_nothing() -> Result<()> {
    let mut s = Stack::new().await?;
    s.start().await?;
    s.s3.stop()?;
    let stopped = std::time::Instant::now();
    let files: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                format!("acme-bank/accounts_2026-{:02}.csv", 7 + i),
                account_master_csv(50, 70 + i as u64, &format!("2026-{:02}-28", 7 + i), &[]),
            )
        })
        .collect();
    for (path, csv) in &files {
        s.upload(path, csv.as_bytes())?;
    }
    // While the archive is down, the files are seen and retried, and no arrival is sent.
    let url = format!("{}/metrics", s.query);
    wait_for(Duration::from_secs(25), "failed archive attempts", || {
        let url = url.clone();
        async move {
            let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
            metric_value(&text, "credstream_raw_store_errors_total{backend=\"s3\"")
                .filter(|v| *v >= 1.0)
        }
    })
    .await
    .map_err(|e| e.context(s.log_tail()))?;
    let remaining = Duration::from_secs(30).saturating_sub(stopped.elapsed());
    tokio::time::sleep(remaining).await;
    let during = read_topic(&s.tansu.bootstrap(), &s.topic("file-arrivals"))?;
    ensure!(
        during.is_empty(),
        "{} arrivals were emitted while their objects could not be stored",
        during.len()
    );
    ensure!(s.ledger_len().await? == 0);

    s.s3.restart()?;
    let ledger = s.wait_files(3, Duration::from_secs(120)).await?;
    for (path, csv) in &files {
        let entry = ledger
            .get(path)
            .with_context(|| format!("{path} not in {ledger:#?}"))?;
        ensure!(entry["status"] == "PROCESSED", "{entry:#}");
        ensure!(entry["file_sha256"] == sha256(csv.as_bytes()).as_str());
        let key = entry["raw_key"].as_str().context("raw_key")?;
        let object = s.object(key).await?.context("archived")?;
        ensure!(
            object.body == csv.as_bytes(),
            "{path}: archived bytes differ"
        );
    }
    // Every arrival names an object that exists.
    let arrivals = read_topic(&s.tansu.bootstrap(), &s.topic("file-arrivals"))?;
    ensure!(arrivals.len() == 3, "{} arrivals", arrivals.len());
    let out = read_topic(&s.tansu.bootstrap(), &s.topic("card.accounts"))?;
    ensure!(out.len() == 150, "{} records out", out.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pollers_on_one_drop_double_nothing_and_a_restart_reads_nothing_again() -> Result<()> {
    let mut s = Stack::new().await?;
    s.start().await?;
    let mut second = s.spawn_poller(2)?;
    let files: Vec<(String, String)> = (0..2)
        .map(|i| {
            (
                format!("acme-bank/accounts_2026-{:02}.csv", 3 + i),
                account_master_csv(40, 80 + i as u64, &format!("2026-{:02}-28", 3 + i), &[]),
            )
        })
        .collect();
    for (path, csv) in &files {
        s.upload(path, csv.as_bytes())?;
    }
    // Both pollers emit both files; the dedup store turns each second arrival into an
    // audit entry.
    s.wait_files(4, Duration::from_secs(90)).await?;
    let url = format!("{}/v1/files", s.query);
    let (_, body) = support::get_json(&url).await.context("ledger")?;
    let entries = body["files"].as_array().context("files")?;
    for (path, _) in &files {
        let statuses: Vec<&str> = entries
            .iter()
            .filter(|e| e["file_path"] == path.as_str())
            .map(|e| e["status"].as_str().unwrap_or_default())
            .collect();
        let mut sorted = statuses.clone();
        sorted.sort_unstable();
        ensure!(sorted == ["DUPLICATE", "PROCESSED"], "{path}: {statuses:?}");
    }
    let out = read_topic(&s.tansu.bootstrap(), &s.topic("card.accounts"))?;
    ensure!(
        out.len() == 80,
        "{} records out, want 80 (each file once)",
        out.len()
    );

    // The second poller restarts (killed, as a crash would); its state says it has
    // emitted both files, so it does not read them again. A third file, stable only
    // after the restart, shows the restarted poller has listed the drop since.
    second.kill9();
    let mut second = s.spawn_poller(2)?;
    let third = account_master_csv(40, 82, "2026-05-28", &[]);
    s.upload("acme-bank/accounts_2026-05.csv", third.as_bytes())?;
    s.wait_files(6, Duration::from_secs(90)).await?;
    second.check_alive()?;
    let arrivals = read_topic(&s.tansu.bootstrap(), &s.topic("file-arrivals"))?;
    ensure!(
        arrivals.len() == 6,
        "{} arrivals: 2 pollers x 3 files, and nothing re-read after the restart",
        arrivals.len()
    );
    let log = std::fs::read_to_string(s.root().join("poller-2.log"))?;
    let emitted = log.matches("file emitted").count();
    ensure!(
        emitted == 3,
        "the second poller emitted {emitted} times:\n{log}"
    );
    Ok(())
}
