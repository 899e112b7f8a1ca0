//! The state stores on this machine's disk, through the runtime's own types (`TaskDb`,
//! `StoreWrites`), no broker:
//! - **dedup decision per file**: what the processor does per arrival (read the dedup key,
//!   stage the entry) and the runtime then (apply the unit's writes with its checkpoint in
//!   one RocksDB batch), timed per file. The runtime writes without fsync: a store is a
//!   cache of its changelog, whose acknowledgement is the durable step (see
//!   `streams::mod`). Beside it, in the same run, the same decision with one fsync (a
//!   RocksDB write with `sync = true`): what a design that made the local store durable
//!   would pay.
//! - **check-and-insert, batched**: read a key, stage a value, apply every 10 000: the
//!   shape of a view update per record.
//! - **restore, local part**: changelog records applied in the chunks a restore uses
//!   (`TaskDb::apply_restored`, 10 000 per batch). The broker's part is in
//!   benches/runtime.rs.
//!
//! `cargo bench --profile dev --bench state` (= `./dev bench state`). Knobs: `KEYS`
//! (default 1000000), `FILES` (dedup decisions, default 10000), `RUNS` (default 5).
//! Prints a Markdown table: median of the runs (min–max).
//!
//! Under `cargo test --all-targets` (no `--bench`) it runs a quick pass of 10 000 keys
//! and 200 files, once, asserting no figures: the harness keeps working.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use credstream::streams::{StoreWrites, TaskDb};
use support::{env_or, median_min_max, quantile};

const CHUNK: usize = 10_000;

fn stores() -> Vec<String> {
    vec!["dedup".to_string(), "accounts".to_string()]
}

/// A key like the dedup store's, `<client>/<sha256 hex>`, for `i`.
fn dedup_key(i: usize) -> Vec<u8> {
    format!(
        "bank-{}/{:064x}",
        i % 7,
        (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    )
    .into_bytes()
}

/// Per-file decision latencies (seconds), without and with one fsync.
fn dedup_decisions(dir: &std::path::Path, files: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let task = Arc::new(TaskDb::open(&dir.join("task"), 0, &stores())?);
    let value = br#"{"arrival_id":"p0-12345","ledger_key":"0000000000000000000000000000000000000000000000000000000000000000/p0-12345","path":"bank-1/accounts_2026-10.csv"}"#;
    let checkpoints: HashMap<String, i64> = HashMap::from([("dedup".to_string(), 0)]);
    let mut plain = Vec::with_capacity(files);
    for i in 0..files {
        let key = dedup_key(i);
        let began = Instant::now();
        let mut writes = StoreWrites::new(task.clone());
        if writes.get("dedup", &key)?.is_none() {
            writes.put("dedup", &key, Some(value));
        }
        task.apply(&mut writes, &checkpoints, Some(i as i64))?;
        plain.push(began.elapsed().as_secs_f64());
    }
    // The same with a synced write, on RocksDB directly (the runtime has no such path).
    let db = rocksdb::DB::open_default(dir.join("synced"))?;
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    let mut synced = Vec::with_capacity(files);
    for i in 0..files {
        let key = dedup_key(i);
        let began = Instant::now();
        if db.get(&key)?.is_none() {
            let mut batch = rocksdb::WriteBatch::default();
            batch.put(&key, value);
            db.write_opt(batch, &sync)?;
        }
        synced.push(began.elapsed().as_secs_f64());
    }
    Ok((plain, synced))
}

/// Check-and-insert operations per second, applied every [`CHUNK`].
fn check_and_insert(dir: &std::path::Path, keys: usize) -> Result<f64> {
    let task = Arc::new(TaskDb::open(&dir.join("views"), 0, &stores())?);
    let value = vec![b'v'; 300];
    let checkpoints: HashMap<String, i64> = HashMap::from([("accounts".to_string(), 0)]);
    let began = Instant::now();
    let mut writes = StoreWrites::new(task.clone());
    for i in 0..keys {
        let key = dedup_key(i);
        if writes.get("accounts", &key)?.is_none() {
            writes.put("accounts", &key, Some(&value));
        }
        if (i + 1) % CHUNK == 0 || i + 1 == keys {
            task.apply(&mut writes, &checkpoints, None)?;
            writes = StoreWrites::new(task.clone());
        }
    }
    Ok(keys as f64 / began.elapsed().as_secs_f64())
}

/// Restored records applied per second (200-byte values, as benches/runtime.rs).
fn restore_local(dir: &std::path::Path, keys: usize) -> Result<f64> {
    let task = TaskDb::open(&dir.join("restore"), 0, &stores())?;
    let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..keys)
        .map(|i| (dedup_key(i), Some(vec![b'r'; 200])))
        .collect();
    let began = Instant::now();
    for (n, chunk) in records.chunks(CHUNK).enumerate() {
        task.apply_restored("accounts", chunk, ((n + 1) * CHUNK) as i64, Some(7))?;
    }
    Ok(keys as f64 / began.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let quick = !std::env::args().any(|a| a == "--bench");
    let keys: usize = env_or("KEYS", if quick { 10_000 } else { 1_000_000 });
    let files: usize = env_or("FILES", if quick { 200 } else { 10_000 });
    let runs: usize = env_or("RUNS", if quick { 1 } else { 5 });
    let mut rows: Vec<[f64; 6]> = Vec::new();
    for run in 0..runs {
        let dir = tempfile::Builder::new().prefix("state-bench-").tempdir()?;
        let (plain, synced) = dedup_decisions(dir.path(), files)?;
        let inserts = check_and_insert(dir.path(), keys)?;
        let restore = restore_local(dir.path(), keys)?;
        let row = [
            quantile(&plain, 0.5) * 1e3,
            quantile(&plain, 0.99) * 1e3,
            quantile(&synced, 0.5) * 1e3,
            quantile(&synced, 0.99) * 1e3,
            inserts,
            restore,
        ];
        eprintln!(
            "run {}: dedup p50/p99 {:.3}/{:.3} ms (synced {:.3}/{:.3} ms), check-and-insert {:.0}/s, restore {:.0} keys/s",
            run + 1,
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5]
        );
        rows.push(row);
    }
    let col = |i: usize| median_min_max(rows.iter().map(|r| r[i]));
    let ms = |(m, lo, hi): (f64, f64, f64)| format!("{m:.3} ({lo:.3}–{hi:.3})");
    let rate = |(m, lo, hi): (f64, f64, f64)| format!("{m:.0} ({lo:.0}–{hi:.0})");
    println!();
    println!(
        "State stores, {keys} keys, {files} dedup decisions, median of {runs} runs (min–max){}",
        if quick {
            " — QUICK test-mode run, not a measurement"
        } else {
            ""
        }
    );
    println!();
    println!(
        "| dedup decision p50 ms | p99 ms | with one fsync: p50 ms | p99 ms | check-and-insert ops/s (applied per 10 000) | restore, local part, keys/s | restore s per M keys |"
    );
    println!("|---|---|---|---|---|---|---|");
    let restore = col(5);
    println!(
        "| {} | {} | {} | {} | {} | {} | {:.2} |",
        ms(col(0)),
        ms(col(1)),
        ms(col(2)),
        ms(col(3)),
        rate(col(4)),
        rate(restore),
        1e6 / restore.0
    );
    Ok(())
}
