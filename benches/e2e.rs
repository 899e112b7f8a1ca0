//! End to end on Tansu, side by side with the peer and the broker's ceiling, all in one
//! run on the same machine and broker.
//!
//! Per category and run, on fresh services (Tansu, `credstream registry`):
//! 1. **credstream**: `credstream run` (poller, topology and query in one process, a
//!    local landing area polled every 100 ms and watched for filesystem events) is started
//!    and ready; the generated file is hard-linked beside the landing area and renamed into
//!    it (it appears whole, as an uploader's rename makes it); the clock stops
//!    when the query API serves the file's ledger entry as PROCESSED with every record
//!    out. The runtime writes that entry only after every output record was acknowledged
//!    by the broker and the views were updated, so the span is file arrival → every
//!    record Avro-encoded on its output topic and the views updated. CPU: the process's
//!    user + system time over the span (`/proc/<pid>/stat`); the broker's too. Memory:
//!    the process's peak resident set (`VmHWM`) at the end of the span.
//! 2. **the peer** (card.accounts only): Quix Streams (`benches/peer/quix_peer.py`, its
//!    own venv) on the same broker and registry, fed one arrival message for the same
//!    file: SHA-256, dedup in its RocksDB state (with changelog), CSV parse, validation,
//!    tokenising, trailer reconciliation, Avro through the registry, produce. Its JSON
//!    line gives its span (first input message → final flush) and its own getrusage.
//! 3. **the ceiling**: an rdkafka producer with the pipeline's client settings sending as
//!    many pre-encoded records, of the pipeline's average output size (key + value,
//!    sampled from its output topic), to a new topic with as many partitions, waiting for
//!    every acknowledgement.
//!
//! `cargo bench --profile dev --bench e2e` (= `./dev bench e2e`). Knobs: `RECORDS`
//! (default 1000000 per category), `RUNS` (default 5), `CATEGORY` (only categories whose
//! name contains it), `MONTH_RECORDS` (a Metro 2 month of this many records as an extra
//! row, default 5000000; 0 skips it), `PEER` (0 skips the peer), `BATCH` (librdkafka's
//! `batch.num.messages` for every producer of the run, default 1: what Tansu 0.6.0 needs
//! for its consumers to read correctly; see tests/support/tansu.rs). Prints a Markdown
//! table for BENCHMARKS.md: median of the runs, min–max.
//!
//! Under `cargo test --all-targets` (no `--bench`) it runs a quick pass of 2 000 records
//! per category, once, peer included, asserting no figures: the harness keeps working.

#[path = "common/inputs.rs"]
mod inputs;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use inputs::{Kind, Written};
use support::{env_or, free_port, median_min_max, unique};

/// Partitions of every topic the run creates (the pipeline's default).
const PARTITIONS: i32 = 6;
const CLIENT: &str = "bank-1";

struct Knobs {
    records: usize,
    runs: usize,
    only: String,
    month_records: usize,
    peer: bool,
    batch: u32,
    quick: bool,
}

/// One run's figures for one file.
#[derive(Clone, Copy, Default)]
struct Figures {
    seconds: f64,
    cpu: f64,
    broker_cpu: f64,
    peer_seconds: Option<f64>,
    peer_cpu: Option<f64>,
    ceiling_seconds: f64,
    record_bytes: f64,
    peak_rss_mib: f64,
}

fn main() -> Result<()> {
    let quick = !std::env::args().any(|a| a == "--bench");
    let knobs = Knobs {
        records: env_or("RECORDS", if quick { 2_000 } else { 1_000_000 }),
        runs: env_or("RUNS", if quick { 1 } else { 5 }),
        only: env_or("CATEGORY", String::new()),
        month_records: env_or("MONTH_RECORDS", if quick { 0 } else { 5_000_000 }),
        peer: env_or("PEER", 1) == 1,
        batch: env_or("BATCH", 1),
        quick,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench(&knobs))
}

async fn bench(knobs: &Knobs) -> Result<()> {
    let inputs_dir = tempfile::Builder::new().prefix("e2e-inputs-").tempdir()?;
    let mut files: Vec<(String, Kind, Written)> = Vec::new();
    for kind in Kind::ALL.into_iter().filter(|k| k.picked_by(&knobs.only)) {
        let dir = inputs_dir.path().join(format!("{kind:?}"));
        std::fs::create_dir_all(&dir)?;
        files.push((
            kind.label().to_string(),
            kind,
            inputs::write(&dir, kind, knobs.records)?,
        ));
    }
    if knobs.month_records > 0 && Kind::Metro2.picked_by(&knobs.only) {
        let dir = inputs_dir.path().join("month");
        std::fs::create_dir_all(&dir)?;
        let label = format!(
            "metro2.base, a {} M-record month",
            knobs.month_records / 1_000_000
        );
        files.push((
            label,
            Kind::Metro2,
            inputs::write(&dir, Kind::Metro2, knobs.month_records)?,
        ));
    }
    let mut rows = Vec::new();
    for (label, kind, written) in &files {
        let mut runs = Vec::new();
        for run in 0..knobs.runs {
            let peer = knobs.peer && *kind == Kind::Accounts;
            let figures = one_run(written, peer, knobs)
                .await
                .with_context(|| format!("{label}, run {}", run + 1))?;
            eprintln!(
                "{label} run {}: credstream {:.0} records/s ({:.2} s, CPU {:.2} s, broker CPU {:.2} s, peak RSS {:.0} MiB); \
                 peer {}; ceiling {:.0} records/s",
                run + 1,
                written.records as f64 / figures.seconds,
                figures.seconds,
                figures.cpu,
                figures.broker_cpu,
                figures.peak_rss_mib,
                figures.peer_seconds.map_or("-".into(), |s| format!(
                    "{:.0} records/s (CPU {:.2} s)",
                    written.records as f64 / s,
                    figures.peer_cpu.unwrap_or(0.0)
                )),
                written.records as f64 / figures.ceiling_seconds,
            );
            runs.push(figures);
        }
        rows.push((label.clone(), written, runs));
    }
    print_table(knobs, &rows);
    Ok(())
}

/// Fresh services, then credstream, the peer and the ceiling on them, in that order.
async fn one_run(written: &Written, peer: bool, knobs: &Knobs) -> Result<Figures> {
    let dir = support::test_dir()?;
    let root = dir.path();
    let tansu = support::tansu::Tansu::start()?;
    let bootstrap = tansu.bootstrap();
    let (_registry, registry_url) = support::start_registry(root, &bootstrap).await?;
    let mut figures = Figures::default();

    let prefix = unique("e") + ".";
    let port = free_port();
    let config = root.join("credstream.toml");
    std::fs::create_dir_all(root.join("landing").join(CLIENT))?;
    std::fs::write(
        &config,
        format!(
            "[app]\nid = \"{app}\"\nstate_dir = \"{root}/state\"\n\
             [kafka]\nbootstrap_servers = \"{bootstrap}\"\ntopic_prefix = \"{prefix}\"\npartitions = {PARTITIONS}\n\
             [kafka.properties]\n\"batch.num.messages\" = \"{batch}\"\n\"fetch.wait.max.ms\" = \"50\"\n\
             [registry]\nurl = \"{registry_url}\"\n[raw_store]\npath = \"{root}/raw\"\n\
             [sources.landing]\nkind = \"local\"\npath = \"{root}/landing\"\npoll_interval_ms = 100\n\
             [query]\nlisten = \"127.0.0.1:{port}\"\n{tokenisation}",
            app = unique("e2e-"),
            root = root.display(),
            batch = knobs.batch,
            tokenisation = support::tokenisation_section(root)?,
        ),
    )?;
    let api = format!("http://127.0.0.1:{port}");
    let pipeline = support::run_until_ready(&config, &root.join("credstream.log"), &api).await?;

    let cpu_before = cpu_seconds(pipeline.pid())?;
    let broker_before = cpu_seconds(tansu.pid())?;
    let staged = root.join(&written.name);
    std::fs::hard_link(&written.path, &staged)?;
    let began = Instant::now();
    std::fs::rename(
        &staged,
        root.join("landing").join(CLIENT).join(&written.name),
    )?;
    // Asked every 20 ms: the span's resolution.
    let files = format!("{api}/v1/files?client={CLIENT}");
    let http = reqwest::Client::new();
    let entry = loop {
        let answer = http.get(&files).send().await;
        if let Ok(response) = answer
            && response.status() == 200
            && let Ok(body) = response.json::<Json>().await
            && let Some(entry) = body["files"].as_array().and_then(|f| f.first())
        {
            break Ok(entry.clone());
        }
        if began.elapsed() > Duration::from_secs(3600) {
            break Err(anyhow::anyhow!("no ledger entry within an hour"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    figures.seconds = began.elapsed().as_secs_f64();
    figures.cpu = cpu_seconds(pipeline.pid())? - cpu_before;
    figures.broker_cpu = cpu_seconds(tansu.pid())? - broker_before;
    figures.peak_rss_mib = support::peak_rss(pipeline.pid())? as f64 / f64::from(1 << 20);
    let entry = entry.map_err(|e| e.context(pipeline.log_tail()))?;
    ensure!(
        entry["status"] == "PROCESSED" && entry["records_out"].as_u64() == Some(written.records),
        "the file was not processed whole: {entry}"
    );
    let category = entry["category"].as_str().context("no category")?;
    let output = format!("{prefix}{category}");
    figures.record_bytes = average_record_bytes(&bootstrap, &output, 1_000)?;
    drop(pipeline);

    if peer {
        let (seconds, cpu) = run_peer(root, &bootstrap, &registry_url, written, knobs).await?;
        figures.peer_seconds = Some(seconds);
        figures.peer_cpu = Some(cpu);
    }
    figures.ceiling_seconds = produce_ceiling(
        &bootstrap,
        written.records,
        figures.record_bytes as usize,
        knobs.batch,
    )
    .await?;
    Ok(figures)
}

/// User + system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at its closing ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unreadable /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// The pipeline's client settings, with `batch.num.messages` as the run sets it.
fn client_config(bootstrap: &str, batch: u32) -> ClientConfig {
    let mut config = support::tansu::rdkafka_client_config(bootstrap);
    config.set("batch.num.messages", batch.to_string());
    config
}

/// Mean key + value bytes of the first `n` records of `topic`'s partition 0.
fn average_record_bytes(bootstrap: &str, topic: &str, n: usize) -> Result<f64> {
    let consumer: BaseConsumer = support::tansu::rdkafka_client_config(bootstrap)
        .set("group.id", unique("sizes-"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let (mut seen, mut bytes) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < n && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                seen += 1;
                bytes += m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len);
            }
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            None if seen > 0 => break,
            None => {}
        }
    }
    ensure!(seen > 0, "no record read from {topic}");
    Ok(bytes as f64 / seen as f64)
}

async fn create_topics(bootstrap: &str, names: &[&str]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        support::tansu::rdkafka_client_config(bootstrap).create()?;
    let configs = [
        ("retention.ms", "604800000"),
        ("retention.bytes", "-1"),
        ("cleanup.policy", "delete"),
    ];
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|name| {
            configs.iter().fold(
                NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    for result in admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?
    {
        result.map_err(|(topic, e)| anyhow::anyhow!("creating {topic}: {e}"))?;
    }
    Ok(())
}

/// The raw-produce ceiling: seconds for `records` pre-encoded records of `size` bytes
/// (key `<64 hex>:<index>` as the pipeline's, value filler), all acknowledged.
async fn produce_ceiling(bootstrap: &str, records: u64, size: usize, batch: u32) -> Result<f64> {
    let topic = unique("ceiling-");
    create_topics(bootstrap, &[&topic]).await?;
    tokio::task::block_in_place(|| produce_all(bootstrap, &topic, records, size, batch))
}

fn produce_all(bootstrap: &str, topic: &str, records: u64, size: usize, batch: u32) -> Result<f64> {
    let producer: BaseProducer = client_config(bootstrap, batch).create()?;
    let sha = "e".repeat(64);
    let mut key = String::with_capacity(80);
    let value = vec![0x5au8; size.saturating_sub(sha.len() + 8).max(1)];
    let began = Instant::now();
    for i in 0..records {
        key.clear();
        use std::fmt::Write as _;
        write!(key, "{sha}:{i}").expect("writing to a String");
        let mut record = BaseRecord::to(topic).key(key.as_bytes()).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(Duration::from_millis(5));
                    record = back;
                }
                Err((e, _)) => bail!("producing to {topic}: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(600))?;
    Ok(began.elapsed().as_secs_f64())
}

/// The peer's interpreter: its own venv (`./dev` makes it; see benches/peer/README.md).
fn peer_python() -> Result<PathBuf> {
    let venv = std::env::var_os("QUIX_VENV").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/credstream/quix-venv")
        },
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    let ready = std::process::Command::new(&python)
        .args(["-c", "import quixstreams"])
        .status()
        .is_ok_and(|s| s.success());
    ensure!(
        ready,
        "the peer's venv {} has no quixstreams: run this bench with `./dev bench e2e`, which \
         makes it (or set PEER=0 to leave the peer out)",
        venv.display()
    );
    Ok(python)
}

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer")
}

/// Runs the Quix Streams peer on `written`: (seconds, CPU seconds) from its report.
async fn run_peer(
    root: &Path,
    bootstrap: &str,
    registry_url: &str,
    written: &Written,
    knobs: &Knobs,
) -> Result<(f64, f64)> {
    let python = peer_python()?;
    let input = unique("peer-arrivals-");
    let output = unique("peer-card.accounts-");
    create_topics(bootstrap, &[&input, &output]).await?;
    let sha = hex::encode(Sha256::digest(std::fs::read(&written.path)?));
    let arrival = serde_json::json!({
        "path": written.path,
        "client_id": CLIENT,
        "raw_key": format!("sha256/{}/{sha}", &sha[..2]),
    });
    let producer: BaseProducer = client_config(bootstrap, knobs.batch).create()?;
    producer
        .send(
            BaseRecord::to(&input)
                .key(CLIENT.as_bytes())
                .payload(&serde_json::to_vec(&arrival)?),
        )
        .map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(30))?;
    let log = root.join("peer.log");
    let mut command = std::process::Command::new(python);
    command
        .arg(peer_dir().join("quix_peer.py"))
        .args(["--broker", bootstrap, "--registry", registry_url])
        .args(["--input-topic", &input, "--output-topic", &output])
        .arg("--state-dir")
        .arg(root.join("peer-state"))
        .args(["--consumer-group", &unique("peer-")])
        .args(["--token-key-hex", &hex::encode(support::TOKEN_KEY)])
        .args(["--expect-files", "1"])
        .args(["--batch-num-messages", &knobs.batch.to_string()])
        .stderr(std::fs::File::create(&log)?);
    let out = tokio::task::block_in_place(|| command.output()).context("running the peer")?;
    ensure!(
        out.status.success(),
        "the peer failed ({}):\n{}",
        out.status,
        support::log_file_tail(&log)
    );
    let report: Json = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .context("the peer printed no report")?,
    )?;
    ensure!(
        report["records_out"].as_u64() == Some(written.records),
        "the peer did not send every record: {report}"
    );
    let seconds = report["seconds"].as_f64().context("no seconds")?;
    // Its CPU over the same span (first input message → final flush), as credstream's.
    let cpu = report["cpu_user_s_window"]
        .as_f64()
        .zip(report["cpu_sys_s_window"].as_f64())
        .map(|(user, sys)| user + sys)
        .context("no CPU window in the peer's report")?;
    Ok((seconds, cpu))
}

fn print_table(knobs: &Knobs, rows: &[(String, &Written, Vec<Figures>)]) {
    println!();
    println!(
        "End to end on Tansu, {} run(s) per file, batch.num.messages={} for every producer; median (min–max){}",
        knobs.runs,
        knobs.batch,
        if knobs.quick {
            " — QUICK test-mode run, not a measurement"
        } else {
            ""
        }
    );
    println!();
    println!(
        "| file | records | MB | credstream records/s | MB/s | CPU s per M records | broker CPU s per M | peak RSS MiB | peer records/s | peer CPU s per M | credstream ÷ peer (rate) | peer CPU ÷ credstream CPU | raw-produce ceiling records/s (record bytes) | credstream ÷ ceiling |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (label, written, runs) in rows {
        let n = written.records as f64;
        let per_m = 1e6 / n;
        let cell = |(m, lo, hi): (f64, f64, f64)| format!("{m:.0} ({lo:.0}–{hi:.0})");
        let cell2 = |(m, lo, hi): (f64, f64, f64)| format!("{m:.2} ({lo:.2}–{hi:.2})");
        let rate = median_min_max(runs.iter().map(|r| n / r.seconds));
        let mbs = median_min_max(runs.iter().map(|r| written.bytes as f64 / 1e6 / r.seconds));
        let cpu = median_min_max(runs.iter().map(|r| r.cpu * per_m));
        let broker = median_min_max(runs.iter().map(|r| r.broker_cpu * per_m));
        let rss = median_min_max(runs.iter().map(|r| r.peak_rss_mib));
        let ceiling = median_min_max(runs.iter().map(|r| n / r.ceiling_seconds));
        let vs_ceiling = median_min_max(runs.iter().map(|r| r.ceiling_seconds / r.seconds));
        let bytes = median_min_max(runs.iter().map(|r| r.record_bytes)).0;
        let (peer, peer_cpu, vs_peer, cpu_ratio) = if runs.iter().all(|r| r.peer_seconds.is_some())
        {
            (
                cell(median_min_max(
                    runs.iter().map(|r| n / r.peer_seconds.unwrap_or(1.0)),
                )),
                cell2(median_min_max(
                    runs.iter().map(|r| r.peer_cpu.unwrap_or(0.0) * per_m),
                )),
                cell2(median_min_max(
                    runs.iter()
                        .map(|r| r.peer_seconds.unwrap_or(0.0) / r.seconds),
                )),
                cell2(median_min_max(
                    runs.iter().map(|r| r.peer_cpu.unwrap_or(0.0) / r.cpu),
                )),
            )
        } else {
            ("—".into(), "—".into(), "—".into(), "—".into())
        };
        println!(
            "| {label} | {} | {:.1} | {} | {} | {} | {} | {} | {peer} | {peer_cpu} | {vs_peer} | {cpu_ratio} | {} ({bytes:.0} B) | {} |",
            written.records,
            written.bytes as f64 / 1e6,
            cell(rate),
            cell2(mbs),
            cell2(cpu),
            cell2(broker),
            cell(rss),
            cell(ceiling),
            cell2(vs_ceiling),
        );
    }
}
