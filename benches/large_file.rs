//! A large file through the production transports: a Metro 2 file on Debian's sshd, read
//! over SFTP, archived in S3 (moto) by multipart upload, downloaded, parsed and produced to
//! a separate Tansu broker by `credstream run`. Measures the pipeline process's peak
//! resident memory (VmHWM) and the time from the file's appearance to its ledger entry.
//!
//! `cargo bench --profile dev --bench large_file`. Knobs: `RUNS` (default 3), `SIZE_MB`
//! (default 1024) and `SMALL_MB` (default 64): each run processes a small and a large file
//! with fresh services, so the table shows whether memory grows with the file.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use support::stack::Stack;
use support::{env_or, median};

/// Bytes of one generated Metro 2 record, on average (base segment, some J1/J2, framing):
/// measured from a 10 000-record file, used only to size the input.
fn records_for(megabytes: u64, dir: &Path) -> Result<u64> {
    let sample = dir.join("sample.dat");
    generate(10_000, &sample)?;
    let per_record = std::fs::metadata(&sample)?.len() as f64 / 10_000.0;
    std::fs::remove_file(&sample)?;
    Ok(((megabytes << 20) as f64 / per_record) as u64)
}

fn generate(records: u64, out: &Path) -> Result<()> {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_credstream"))
        .args(["gen", "metro2", "--records", &records.to_string(), "--out"])
        .arg(out)
        .env("CREDSTREAM_LOG", "warn")
        .status()
        .context("running credstream gen")?;
    ensure!(status.success(), "credstream gen metro2 failed: {status}");
    Ok(())
}

struct Measured {
    file_bytes: u64,
    records: u64,
    seconds: f64,
    peak_rss: u64,
}

async fn one_run(megabytes: u64) -> Result<Measured> {
    let mut stack = Stack::new().await?;
    stack.start().await?;
    let records = records_for(megabytes, stack.root())?;
    // Generated beside the drop, then renamed into it: the file appears whole.
    let staged = stack
        .sftpd
        .drop_dir()
        .join("acme-bank/.ACME_metro2_2026-10.dat");
    generate(records, &staged)?;
    let file_bytes = std::fs::metadata(&staged)?.len();
    let started = Instant::now();
    std::fs::rename(
        &staged,
        stack
            .sftpd
            .drop_dir()
            .join("acme-bank/ACME_metro2_2026-10.dat"),
    )?;
    let files = stack
        .wait_files(1, Duration::from_secs(3600))
        .await
        .context("the large file was not processed")?;
    let seconds = started.elapsed().as_secs_f64();
    let entry = files.values().next().context("one entry")?;
    ensure!(entry["status"] == "PROCESSED", "{entry:#}");
    ensure!(
        entry["records_out"] == records,
        "{} records out of {records}",
        entry["records_out"]
    );
    let pid = stack.pipeline.as_ref().context("running")?.pid();
    let peak = support::peak_rss(pid)?;
    Ok(Measured {
        file_bytes,
        records,
        seconds,
        peak_rss: peak,
    })
}

fn main() -> Result<()> {
    // `cargo test --all-targets` runs bench binaries without `--bench`: compiled and
    // type-checked is all a test run needs.
    if !std::env::args().any(|a| a == "--bench") {
        println!("large-file benchmark: run with `cargo bench --profile dev --bench large_file`");
        return Ok(());
    }
    let runs = env_or("RUNS", 3);
    let large = env_or("SIZE_MB", 1024);
    let small = env_or("SMALL_MB", 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows: Vec<(u64, Vec<Measured>)> = vec![(small, Vec::new()), (large, Vec::new())];
    for run in 1..=runs {
        for (mb, results) in rows.iter_mut() {
            let m = rt.block_on(one_run(*mb))?;
            eprintln!(
                "run {run}: {} MiB file, {} records: {:.1} s, peak RSS {:.0} MiB",
                m.file_bytes >> 20,
                m.records,
                m.seconds,
                m.peak_rss as f64 / (1 << 20) as f64
            );
            results.push(m);
        }
    }
    println!();
    println!(
        "| file | records | median peak RSS (min–max) | peak RSS / file size | median file → ledger (min–max) | records/s |"
    );
    println!("|---|---|---|---|---|---|");
    let mib = |b: f64| b / (1 << 20) as f64;
    for (_, results) in &rows {
        let rss: Vec<f64> = results.iter().map(|m| m.peak_rss as f64).collect();
        let secs: Vec<f64> = results.iter().map(|m| m.seconds).collect();
        let (file, records) = (results[0].file_bytes as f64, results[0].records);
        let (rss_med, secs_med) = (median(rss.clone()), median(secs.clone()));
        let min = |xs: &[f64]| xs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = |xs: &[f64]| xs.iter().copied().fold(0.0, f64::max);
        println!(
            "| {:.0} MiB Metro 2 | {records} | {:.0} MiB ({:.0}–{:.0}) | {:.2} | {:.1} s ({:.1}–{:.1}) | {:.0} |",
            mib(file),
            mib(rss_med),
            mib(min(&rss)),
            mib(max(&rss)),
            rss_med / file,
            secs_med,
            min(&secs),
            max(&secs),
            records as f64 / secs_med
        );
    }
    Ok(())
}
