//! Drop → queryable latency on Tansu: small files arriving at a steady rate in a local
//! landing area polled every second and watched for filesystem events, each timed from
//! the moment it is whole on disk (a rename into its client's folder, which exists from
//! the start as a bank's folder does) to the moment the query API serves its ledger
//! entry, which the runtime writes in the same store commit as the file's view updates.
//! Each file is one client's October account snapshot, so it updates the accounts and
//! balances views.
//!
//! `cargo bench --profile dev --bench latency` (= `./dev bench latency`). Knobs: `FILES`
//! (default 100), `EVERY_MS` (one file per this many ms, default 1000), `ROWS` (records
//! per file, default 10000), `POLL_MS` (the landing area's poll interval, default 1000),
//! `BATCH` (`batch.num.messages`, default 1 as in the tests), `WATCH` (1: react to
//! filesystem events, the default for local sources; 0: polls only), `SOURCE` (`local`, the
//! default, or `sftp`: Debian's sshd serves the drop on loopback and credstream reads it
//! through its SFTP source; each file is followed by its `.done` marker, the usual way an
//! uploader says a file is whole, and the clock starts at the file's rename, before the
//! marker is written). Prints p50/p90/p99/max.
//! The clock behind each figure is the bench's own: one process, rename → first answer,
//! asked every 10 ms.
//!
//! Under `cargo test --all-targets` (no `--bench`) it runs 3 files of 200 records,
//! asserting no figures: the harness keeps working.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value as Json;

use credstream::samples::account_master_csv;
use support::{env_or, free_port, quantile, unique};

fn main() -> Result<()> {
    let quick = !std::env::args().any(|a| a == "--bench");
    let files: usize = env_or("FILES", if quick { 3 } else { 100 });
    let every = Duration::from_millis(env_or("EVERY_MS", 1000));
    let rows: usize = env_or("ROWS", if quick { 200 } else { 10_000 });
    let poll_ms: u64 = env_or("POLL_MS", 1000);
    let batch: u32 = env_or("BATCH", 1);
    let watch = env_or::<u8>("WATCH", 1) != 0;
    let sftp = match env_or("SOURCE", "local".to_string()).as_str() {
        "local" => false,
        "sftp" => true,
        other => anyhow::bail!("SOURCE={other}: expected local or sftp"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut latencies =
        runtime.block_on(measure(files, every, rows, poll_ms, batch, watch, sftp))?;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| quantile(&latencies, q);
    println!();
    println!(
        "Drop → queryable, {files} files of {rows} records, one every {} ms, poll every {poll_ms} ms, {}, batch.num.messages={batch}{}",
        every.as_millis(),
        match (sftp, watch) {
            (true, _) => "SFTP source with .done markers",
            (false, true) => "local source, filesystem events on",
            (false, false) => "local source, polls only",
        },
        if quick {
            " — QUICK test-mode run, not a measurement"
        } else {
            ""
        }
    );
    println!();
    println!("| p50 s | p90 s | p99 s | max s | min s |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
        at(0.5),
        at(0.9),
        at(0.99),
        latencies[latencies.len() - 1],
        latencies[0]
    );
    Ok(())
}

async fn measure(
    files: usize,
    every: Duration,
    rows: usize,
    poll_ms: u64,
    batch: u32,
    watch: bool,
    sftp: bool,
) -> Result<Vec<f64>> {
    let dir = support::test_dir()?;
    let root = dir.path();
    let tansu = support::tansu::Tansu::start()?;
    let bootstrap = tansu.bootstrap();
    let (_registry, registry_url) = support::start_registry(root, &bootstrap).await?;
    let port = free_port();
    let config = root.join("credstream.toml");
    let sftpd = if sftp {
        Some(support::sftp::Sftpd::start()?)
    } else {
        None
    };
    let (landing, source) = match &sftpd {
        Some(sftpd) => (
            sftpd.drop_dir(),
            format!(
                "kind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\npath = \"{}\"\n\
                 known_hosts = \"{}\"\nkey_file = \"{}\"\nmarker_suffix = \".done\"\n",
                sftpd.port(),
                sftpd.user(),
                sftpd.remote_dir(),
                sftpd.known_hosts_path().display(),
                sftpd.client_key_path().display(),
            ),
        ),
        None => (
            root.join("landing"),
            format!(
                "kind = \"local\"\npath = \"{}/landing\"\nwatch = {watch}\n",
                root.display()
            ),
        ),
    };
    // Beside the landing area, so a rename moves a whole file into it at once.
    let staging = landing.with_file_name("latency-staging");
    std::fs::create_dir_all(&staging)?;
    // Every client's folder is there before the pipeline starts, as a bank's drop folder
    // is: a folder made a moment before a file lands in it may miss that file's event
    // (its watch is added when the folder appears), which the polls then catch.
    for i in 0..files {
        std::fs::create_dir_all(landing.join(format!("latency-{i}")))?;
    }
    std::fs::write(
        &config,
        format!(
            "[app]\nid = \"{app}\"\nstate_dir = \"{root}/state\"\n\
             [kafka]\nbootstrap_servers = \"{bootstrap}\"\ntopic_prefix = \"{prefix}\"\n\
             [kafka.properties]\n\"batch.num.messages\" = \"{batch}\"\n\"fetch.wait.max.ms\" = \"50\"\n\
             [registry]\nurl = \"{registry_url}\"\n[raw_store]\npath = \"{root}/raw\"\n\
             [sources.landing]\n{source}poll_interval_ms = {poll_ms}\n\
             [query]\nlisten = \"127.0.0.1:{port}\"\n{tokenisation}",
            app = unique("latency-"),
            prefix = unique("l") + ".",
            root = root.display(),
            tokenisation = support::tokenisation_section(root)?,
        ),
    )?;
    let api = format!("http://127.0.0.1:{port}");
    let mut pipeline =
        support::run_until_ready(&config, &root.join("credstream.log"), &api).await?;

    // Every file is written first, so the timed span holds no generation.
    let name = "accounts_2026-10.csv";
    for i in 0..files {
        std::fs::write(
            staging.join(format!("{i}.csv")),
            account_master_csv(rows, 100 + i as u64, "2026-10-31", &[]),
        )?;
    }
    let http = reqwest::Client::new();
    let mut dropped: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut latencies = Vec::with_capacity(files);
    let began = Instant::now();
    let deadline = began + every * files as u32 + Duration::from_secs(300);
    while latencies.len() < files {
        ensure!(
            Instant::now() < deadline,
            "{} of {files} files were not served in time\n{}",
            files - latencies.len(),
            pipeline.log_tail()
        );
        // The next drop, when its time has come.
        let next = dropped.len() + latencies.len();
        if next < files && began.elapsed() >= every * next as u32 {
            let client = landing.join(format!("latency-{next}"));
            std::fs::rename(staging.join(format!("{next}.csv")), client.join(name))?;
            dropped.insert(next, Instant::now());
            if sftp {
                std::fs::write(client.join(format!("{name}.done")), b"")?;
            }
        }
        let mut served = Vec::new();
        for (&i, at) in &dropped {
            let url = format!("{api}/v1/files?client=latency-{i}");
            let answer = http.get(&url).send().await;
            if let Ok(response) = answer
                && response.status() == 200
                && let Ok(body) = response.json::<Json>().await
                && let Some(entry) = body["files"].as_array().and_then(|f| f.first())
            {
                let took = at.elapsed().as_secs_f64();
                ensure!(
                    entry["status"] == "PROCESSED",
                    "file {i} was not processed: {entry}"
                );
                served.push(i);
                latencies.push(took);
            }
        }
        for i in served {
            dropped.remove(&i);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pipeline.check_alive().context("credstream died")?;
    Ok(latencies)
}
