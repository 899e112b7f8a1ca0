//! The CPU path alone, no broker, one core: read → SHA-256 (the dedup key) → parse →
//! tokenise → validate → Avro-encode with the Confluent header, for a generated file of
//! each category, next to the machine's ceilings measured in the same run (SHA-256 over
//! the same bytes; the `csv` crate's raw `ByteRecord` read of the accounts file).
//!
//! `cargo bench --profile dev --bench cpu_path` (the project builds one profile). Knobs:
//! `RECORDS` (default 1000000 per category), `RUNS` (default 5), `CPU` (the core to pin
//! to, default 0), `CATEGORY` (only categories whose name contains it, e.g. `metro2`, for
//! a profiler). Prints a Markdown table for BENCHMARKS.md: median of the runs, min–max.
//!
//! The path is the one `credit::processor` runs per file (`route_records`): when the
//! category `validates_first` (a trailer, `bad_records = "file"`, or Metro 2) the
//! processor's own validation pass (`credit::validate`: with `bad_records = "record"`,
//! structure and trailer only), then the routing pass (parse, tokenise, header + row, the
//! record key). No Kafka send, no view
//! contributions (`Gather`), no quarantine records (the files are clean). A second table
//! splits the time per part, and a third times one pass's parse alone (CSV and Metro 2,
//! whose parsers are public) and parse + tokenise, to show what the Avro row costs.
//!
//! Under `cargo test --all-targets` (no `--bench`) it runs a quick pass of 10 000 records
//! per category, once, asserting no figures: the harness keeps working.

#[path = "common/inputs.rs"]
mod inputs;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use apache_avro::Schema;
use sha2::{Digest, Sha256};

use credstream::config::Secret;
use credstream::credit::{encode_record, validate};
use credstream::formats::metro2::parse_metro2_records;
use credstream::formats::{
    Catalog, Category, FormatSpec, ParsedRecord, RecordIssue, parse, parse_csv,
};
use credstream::schema::contracts::Contracts;
use credstream::schema::{Codec, FileProvenance, RowPlan, RowRef};
use credstream::tokenise::Tokeniser;
use inputs::Kind;

/// The tokenisation key of the crate's own tests: 32 bytes.
const TEST_KEY: &str = "0123456789abcdef0123456789abcdef";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median (upper middle), min and max.
fn stats(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Pins this (single) thread to `cpu`.
fn pin(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only
    // read and write that local set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// One input file of a category.
struct Input {
    label: &'static str,
    path: PathBuf,
    category: Category,
    codec: Codec,
    plan: RowPlan,
    records: u64,
}

/// Writes a file of `records` records of each category whose name contains `only`.
fn generate(dir: &Path, records: usize, only: &str) -> Result<Vec<Input>> {
    let catalog = Catalog::builtin()?;
    let contracts = Contracts::builtin();
    let mut inputs = Vec::new();
    for kind in Kind::ALL.into_iter().filter(|k| k.picked_by(only)) {
        let written = inputs::write(dir, kind, records)?;
        let category = catalog
            .categorize(&written.name)
            .map_err(anyhow::Error::msg)?
            .clone();
        let schema = Schema::parse_str(contracts.get(&category.schema)?)
            .with_context(|| format!("parsing {}", category.schema))?;
        let codec = Codec::new(1, &category.schema, schema)?;
        let plan = RowPlan::new(&category, codec.schema())?;
        inputs.push(Input {
            label: kind.label(),
            path: written.path,
            category,
            codec,
            plan,
            records: written.records,
        });
    }
    Ok(inputs)
}

/// Seconds of each part of one run of the path.
#[derive(Default, Clone, Copy)]
struct Run {
    read: f64,
    sha: f64,
    validate: f64,
    route: f64,
    bytes: u64,
    out_bytes: u64,
}

impl Run {
    fn total(&self) -> f64 {
        self.read + self.sha + self.validate + self.route
    }
}

/// One run of the processor's CPU path over `input`.
fn run_path(input: &Input, tokeniser: &Tokeniser) -> Result<Run> {
    let mut run = Run::default();
    let t = Instant::now();
    let bytes = std::fs::read(&input.path)?;
    run.read = t.elapsed().as_secs_f64();
    run.bytes = bytes.len() as u64;

    let t = Instant::now();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    run.sha = t.elapsed().as_secs_f64();
    let raw_key = format!("sha256/{}/{sha256}", &sha256[..2]);
    let layout = input.category.layout_id();
    let file = FileProvenance {
        file_sha256: &sha256,
        raw_key: &raw_key,
        layout: &layout,
    };

    // The validation pass: the processor's own `validate`.
    let t = Instant::now();
    if input.category.validates_first(&bytes)
        && let Some(drift) = validate(
            &input.category,
            &input.plan,
            tokeniser,
            file,
            &bytes,
            |_| {},
        )
    {
        bail!("{}: the file drifted: {drift:?}", input.label);
    }
    run.validate = t.elapsed().as_secs_f64();

    // The routing pass, as `route_records`, without the send.
    let t = Instant::now();
    let mut value = Vec::with_capacity(512);
    let mut key = String::with_capacity(80);
    let mut out = 0u64;
    let mut out_bytes = 0u64;
    let parsed = parse(
        &bytes,
        &input.category,
        tokeniser,
        |outcome| -> Result<(), Infallible> {
            if let Ok(rec) = outcome {
                let row = RowRef {
                    values: rec.values,
                    position: rec.position,
                    file,
                };
                if encode_record(&input.codec, &input.plan, &row, &mut value, &mut key).is_ok() {
                    out += 1;
                    out_bytes += (value.len() + key.len()) as u64;
                    std::hint::black_box((&value, &key));
                }
            }
            Ok(())
        },
    );
    run.route = t.elapsed().as_secs_f64();
    match parsed {
        Ok(Ok(summary)) => ensure!(
            summary.records == input.records && out == input.records,
            "{}: routed {out} of {} records",
            input.label,
            summary.records
        ),
        Ok(Err(drift)) => bail!("{}: the file drifted: {drift:?}", input.label),
        Err(never) => match never {},
    }
    run.out_bytes = out_bytes;
    Ok(run)
}

/// One pass's anatomy: seconds of the raw parse (no tokenising; CSV and Metro 2 only,
/// whose parsers are public) and of `formats::parse` (parse + tokenise) with a callback
/// that does nothing.
fn anatomy(input: &Input, tokeniser: &Tokeniser, bytes: &[u8]) -> Result<(Option<f64>, f64)> {
    let mut seen = 0u64;
    let noop = |outcome: Result<ParsedRecord<'_, '_>, RecordIssue>| -> Result<(), Infallible> {
        seen += u64::from(outcome.is_ok());
        Ok(())
    };
    let t = Instant::now();
    let raw = match input.category.format {
        FormatSpec::Csv { .. } => Some(parse_csv(bytes, &input.category, noop)),
        FormatSpec::Metro2 => Some(parse_metro2_records(bytes, &input.category, noop)),
        FormatSpec::FixedWidth { .. } => None,
    };
    let raw = match raw {
        Some(Ok(Ok(_))) => Some(t.elapsed().as_secs_f64()),
        Some(Ok(Err(drift))) => bail!("{}: the file drifted: {drift:?}", input.label),
        Some(Err(never)) => match never {},
        None => None,
    };
    let mut tokenised = 0u64;
    let t = Instant::now();
    let parsed = parse(
        bytes,
        &input.category,
        tokeniser,
        |outcome| -> Result<(), Infallible> {
            tokenised += u64::from(outcome.is_ok());
            Ok(())
        },
    );
    let seconds = t.elapsed().as_secs_f64();
    ensure!(
        matches!(parsed, Ok(Ok(_))) && tokenised == input.records,
        "{}: parse + tokenise handed on {tokenised} records",
        input.label
    );
    Ok((raw, seconds))
}

/// SHA-256 over `bytes`: seconds.
fn sha_ceiling(bytes: &[u8]) -> f64 {
    let t = Instant::now();
    std::hint::black_box(Sha256::digest(bytes));
    t.elapsed().as_secs_f64()
}

/// The csv crate's raw `ByteRecord` read of `bytes`: seconds and rows.
fn csv_ceiling(bytes: &[u8]) -> Result<(f64, u64)> {
    let t = Instant::now();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut rows = 0u64;
    let mut fields = 0usize;
    while reader.read_byte_record(&mut record)? {
        rows += 1;
        fields += record.len();
    }
    std::hint::black_box(fields);
    Ok((t.elapsed().as_secs_f64(), rows))
}

fn main() -> Result<()> {
    // `cargo test --all-targets` runs bench binaries without `--bench`: a quick run keeps
    // the harness working, no figures asserted.
    let quick = !std::env::args().any(|a| a == "--bench");
    let records = if quick {
        10_000
    } else {
        env_or("RECORDS", 1_000_000)
    };
    let runs: usize = if quick { 1 } else { env_or("RUNS", 5).max(1) };
    let cpu = env_or("CPU", 0usize);
    let only = std::env::var("CATEGORY").unwrap_or_default();
    pin(cpu)?;
    let dir = tempfile::tempdir()?;
    let inputs = generate(dir.path(), records, &only)?;
    let tokeniser = Tokeniser::new(&Secret::new(TEST_KEY))?;

    let mut rows = Vec::new();
    for input in &inputs {
        // Warm the page cache and the code once, untimed.
        run_path(input, &tokeniser)?;
        let mut path_runs = Vec::new();
        let mut sha_runs = Vec::new();
        let mut csv_runs = Vec::new();
        let mut anatomy_runs = Vec::new();
        let bytes = std::fs::read(&input.path)?;
        for _ in 0..runs {
            path_runs.push(run_path(input, &tokeniser)?);
            sha_runs.push(sha_ceiling(&bytes));
            anatomy_runs.push(anatomy(input, &tokeniser, &bytes)?);
            if input.category.name == "card.accounts" {
                let (s, n) = csv_ceiling(&bytes)?;
                // Data rows plus the trailer row.
                ensure!(n == input.records + 1, "csv read {n} rows");
                csv_runs.push(s);
            }
        }
        rows.push((
            input,
            path_runs,
            sha_runs,
            csv_runs,
            anatomy_runs,
            bytes.len() as f64,
        ));
    }

    let mb = 1e6;
    println!();
    println!(
        "CPU path, one core (CPU {cpu}), {records} records per category, median of {runs} \
         runs (min–max){}",
        if quick {
            " — QUICK test-mode run, not a measurement"
        } else {
            ""
        }
    );
    println!();
    println!(
        "| category | file MB | path records/s | path MB/s | one-pass records/s (route only) | SHA-256 MB/s (ceiling) | path ÷ SHA-256 | csv ByteRecord rows/s (ceiling) | path ÷ csv |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (input, path_runs, sha_runs, csv_runs, _, size) in &rows {
        let n = input.records as f64;
        let rps: Vec<f64> = path_runs.iter().map(|r| n / r.total()).collect();
        let mbps: Vec<f64> = path_runs.iter().map(|r| *size / mb / r.total()).collect();
        let one: Vec<f64> = path_runs.iter().map(|r| n / r.route).collect();
        let sha: Vec<f64> = sha_runs.iter().map(|s| *size / mb / s).collect();
        let (r, rlo, rhi) = stats(&rps);
        let (m, mlo, mhi) = stats(&mbps);
        let (o, olo, ohi) = stats(&one);
        let (s, slo, shi) = stats(&sha);
        let csv = if csv_runs.is_empty() {
            "—".to_string()
        } else {
            let rows_s: Vec<f64> = csv_runs.iter().map(|s| (n + 1.0) / s).collect();
            let csv_mb: Vec<f64> = csv_runs.iter().map(|s| *size / mb / s).collect();
            let (c, clo, chi) = stats(&rows_s);
            let (cm, _, _) = stats(&csv_mb);
            format!("{c:.0} ({clo:.0}–{chi:.0}); {cm:.0} MB/s")
        };
        let csv_ratio = if csv_runs.is_empty() {
            "—".to_string()
        } else {
            let rows_s: Vec<f64> = csv_runs.iter().map(|s| (n + 1.0) / s).collect();
            format!("{:.3}", r / stats(&rows_s).0)
        };
        println!(
            "| {} | {:.1} | {r:.0} ({rlo:.0}–{rhi:.0}) | {m:.1} ({mlo:.1}–{mhi:.1}) | {o:.0} ({olo:.0}–{ohi:.0}) | {s:.0} ({slo:.0}–{shi:.0}) | {:.3} | {csv} | {csv_ratio} |",
            input.label,
            size / mb,
            m / s,
        );
    }
    println!();
    println!("Where a run's time goes (median seconds per part, whole path = 100 %):");
    println!();
    println!(
        "| category | read | SHA-256 | validation pass | routing pass | Avro bytes out per record |"
    );
    println!("|---|---|---|---|---|---|");
    for (input, path_runs, _, _, _, _) in &rows {
        let part = |f: fn(&Run) -> f64| stats(&path_runs.iter().map(f).collect::<Vec<_>>()).0;
        let total = part(Run::total);
        let cell = |s: f64| format!("{s:.3} s ({:.0} %)", 100.0 * s / total);
        println!(
            "| {} | {} | {} | {} | {} | {:.0} |",
            input.label,
            cell(part(|r| r.read)),
            cell(part(|r| r.sha)),
            cell(part(|r| r.validate)),
            cell(part(|r| r.route)),
            path_runs[0].out_bytes as f64 / input.records as f64,
        );
    }
    println!();
    println!(
        "One pass's anatomy (median seconds; parse alone is measured where the parser is \
         public: CSV and Metro 2):"
    );
    println!();
    println!(
        "| category | parse alone | parse + tokenise (`formats::parse`) | routing pass (+ Avro row, header, key) | tokenising | Avro + key |"
    );
    println!("|---|---|---|---|---|---|");
    for (input, path_runs, _, _, anatomy_runs, _) in &rows {
        let route = stats(&path_runs.iter().map(|r| r.route).collect::<Vec<_>>()).0;
        let tok = stats(&anatomy_runs.iter().map(|a| a.1).collect::<Vec<_>>()).0;
        let raw: Vec<f64> = anatomy_runs.iter().filter_map(|a| a.0).collect();
        let (raw_cell, tok_cell) = if raw.is_empty() {
            ("—".to_string(), "—".to_string())
        } else {
            let r = stats(&raw).0;
            (format!("{r:.3} s"), format!("{:.3} s", tok - r))
        };
        println!(
            "| {} | {raw_cell} | {tok:.3} s | {route:.3} s | {tok_cell} | {:.3} s |",
            input.label,
            route - tok
        );
    }
    Ok(())
}
