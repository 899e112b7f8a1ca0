//! Key lookups on the query API under load: `GET /v1/views/accounts/{client}/{account}`
//! served by `credstream demo` (a generated month processed on the in-process broker, then
//! served), driven by oha. Measures latency cold (the first lookup after the demo says it
//! is serving, from a fresh client, so connection set-up counts) and warm (oha at fixed
//! rates over every key of the view, and unlimited to find the ceiling).
//!
//! The peer, measured in the same run at the same load: a minimal axum server inside this
//! bench binary answering the same paths with the same bodies (and the same content-type
//! and served-by headers), precomputed per key in a `HashMap`: the floor of a key lookup
//! over HTTP on this machine, without the RocksDB read, the JSON decoding and encoding or
//! credstream's middleware (auth, metrics, audit).
//!
//! `cargo bench --profile dev --bench query_load` (`./dev bench query_load` installs oha).
//! Knobs: `RUNS` (default 3: repetitions of every warm phase), `STARTS` (default 5: fresh
//! demo starts for the cold figures), `RATE`/`RATE_SECONDS` (default 1000 q/s for 30 s),
//! `HIGH_RATE`/`HIGH_SECONDS` (default 10000 q/s for 15 s), `CEILING_SECONDS` (default
//! 10: unlimited rate), `CONNECTIONS` (default 16: oha's connections in every phase),
//! `COLD_REQUESTS` (default 1000: oha's first requests after a start, at `RATE`), `OHA`
//! (default `oha` on the PATH). Everything it writes is in a temporary directory.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::Value as Json;
use support::{env_or, log_file_tail, median};

/// How long a demo may take to generate, process and start serving its month.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(240);
/// The view whose keys are looked up.
const VIEW: &str = "accounts";
/// Characters escaped in a key's path segment (a key's `/` separate segments, as the
/// route `/v1/views/{view}/{*key}` takes them).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

fn main() -> Result<()> {
    // `cargo test --all-targets` runs bench binaries without `--bench`: compiled and
    // type-checked is all a test run needs.
    if !std::env::args().any(|a| a == "--bench") {
        println!("query load benchmark: run with `cargo bench --profile dev --bench query_load`");
        return Ok(());
    }
    let knobs = Knobs::from_env();
    let oha = Oha::find(&knobs)?;
    let dir = support::test_dir()?;
    // The peer runs here, on two workers: what credstream's runtime has on 2 cores.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let began = Instant::now();
    eprintln!("load average at start: {}", load_average());

    let (warm, lookups) = warm_phases(&rt, &oha, &knobs, dir.path())?;
    let cold = cold_starts(&rt, &oha, &knobs, dir.path(), &lookups)?;

    eprintln!("load average at the end: {}", load_average());
    eprintln!("benchmark took {:.0} s", began.elapsed().as_secs_f64());
    print_tables(&knobs, &oha, lookups.keys.len(), &warm, &cold);
    Ok(())
}

struct Knobs {
    runs: usize,
    starts: usize,
    rate: u32,
    rate_seconds: u64,
    high_rate: u32,
    high_seconds: u64,
    ceiling_seconds: u64,
    connections: u32,
    cold_requests: u64,
}

impl Knobs {
    fn from_env() -> Knobs {
        Knobs {
            runs: env_or("RUNS", 3).max(1),
            starts: env_or("STARTS", 5).max(1),
            rate: env_or("RATE", 1000),
            rate_seconds: env_or("RATE_SECONDS", 30),
            high_rate: env_or("HIGH_RATE", 10_000),
            high_seconds: env_or("HIGH_SECONDS", 15),
            ceiling_seconds: env_or("CEILING_SECONDS", 10),
            connections: env_or("CONNECTIONS", 16),
            cold_requests: env_or("COLD_REQUESTS", 1000),
        }
    }

    /// The warm phases: (label, rate limit, seconds).
    fn phases(&self) -> Vec<(String, Option<u32>, u64)> {
        vec![
            (
                format!("{} q/s for {} s", self.rate, self.rate_seconds),
                Some(self.rate),
                self.rate_seconds,
            ),
            (
                format!("{} q/s for {} s", self.high_rate, self.high_seconds),
                Some(self.high_rate),
                self.high_seconds,
            ),
            (
                format!("unlimited for {} s", self.ceiling_seconds),
                None,
                self.ceiling_seconds,
            ),
        ]
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

// ---------------------------------------------------------------------------------------
// The server under test: `credstream demo`.

/// A `credstream demo` process that has said it is serving; stopped with SIGINT (then
/// SIGKILL) when dropped.
struct Demo {
    child: Child,
    api: String,
    /// From the spawn to "Serving until Ctrl-C".
    startup: Duration,
}

impl Demo {
    /// Starts a demo in `dir` (emptied by the demo), its log beside it; returns once it
    /// prints "Serving until Ctrl-C".
    fn start(dir: &Path) -> Result<Demo> {
        let log = dir.with_extension("log");
        let began = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_credstream"))
            .args(["demo", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .env("CREDSTREAM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()
            .context("starting credstream demo")?;
        let stdout = child.stdout.take().context("the demo's stdout")?;
        // Read the printed URLs until the demo says it is serving, then keep draining
        // stdout so the demo never blocks on (or dies of) a full or closed pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut api = None;
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.trim().strip_prefix("Query API:") {
                    api = Some(url.trim().trim_end_matches("/v1/files").to_string());
                }
                if line.starts_with("Serving until Ctrl-C")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(api.take());
                }
            }
        });
        let mut demo = Demo {
            child,
            api: String::new(),
            startup: Duration::ZERO,
        };
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Some(api)) => {
                demo.startup = began.elapsed();
                demo.api = api;
                Ok(demo)
            }
            Ok(None) => bail!(
                "the demo printed no query API URL; log {}:\n{}",
                log.display(),
                log_file_tail(&log)
            ),
            Err(_) => {
                drop(demo);
                bail!(
                    "the demo did not start serving within {STARTUP_TIMEOUT:?}; log {}:\n{}",
                    log.display(),
                    log_file_tail(&log)
                )
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("the demo did not stop on SIGINT within 20 s: killed");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of `key` in `view`, each segment escaped.
fn key_path(key: &str) -> String {
    let segments: Vec<String> = key
        .split('/')
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect();
    format!("/v1/views/{VIEW}/{}", segments.join("/"))
}

/// Every key of the view and the body and headers credstream answers for it.
struct Lookups {
    keys: Vec<String>,
    /// Path → (body, x-credstream-served-by).
    bodies: HashMap<String, (Bytes, Option<HeaderValue>)>,
}

/// Pages through the view (`limit=1000`, `next_cursor`), then looks every key up once.
async fn collect_lookups(api: &str) -> Result<Lookups> {
    let client = reqwest::Client::new();
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{api}/v1/views/{VIEW}?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Json = client
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let entries = page["entries"].as_array().context("entries")?;
        for e in entries {
            keys.push(e["key"].as_str().context("an entry's key")?.to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    ensure!(!keys.is_empty(), "the {VIEW} view is empty");
    let mut bodies = HashMap::new();
    for key in &keys {
        let path = key_path(key);
        let response = client.get(format!("{api}{path}")).send().await?;
        ensure!(
            response.status() == reqwest::StatusCode::OK,
            "{path}: {}",
            response.status()
        );
        let served_by = response.headers().get("x-credstream-served-by").cloned();
        bodies.insert(path, (response.bytes().await?, served_by));
    }
    Ok(Lookups { keys, bodies })
}

// ---------------------------------------------------------------------------------------
// The peer: the same answers from a HashMap, on axum.

type PeerBodies = Arc<HashMap<String, (Bytes, Option<HeaderValue>)>>;

async fn peer_lookup(State(bodies): State<PeerBodies>, UrlPath(key): UrlPath<String>) -> Response {
    match bodies.get(&key_path(&key)) {
        Some((body, served_by)) => {
            let mut response =
                ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response();
            if let Some(v) = served_by {
                response
                    .headers_mut()
                    .insert("x-credstream-served-by", v.clone());
            }
            response
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The peer server, listening; stopped when dropped.
struct Peer {
    api: String,
    task: tokio::task::JoinHandle<()>,
}

impl Peer {
    fn start(rt: &tokio::runtime::Runtime, lookups: &Lookups) -> Result<Peer> {
        let bodies: PeerBodies = Arc::new(lookups.bodies.clone());
        let router = axum::Router::new()
            .route(
                &format!("/v1/views/{VIEW}/{{*key}}"),
                axum::routing::get(peer_lookup),
            )
            .with_state(bodies);
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let api = format!("http://{}", listener.local_addr()?);
        let task = rt.spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                eprintln!("peer server stopped: {e}");
            }
        });
        Ok(Peer { api, task })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// oha.

struct Oha {
    bin: PathBuf,
    version: String,
    connections: u32,
}

/// One oha run's summary.
#[derive(Clone, Debug)]
struct Load {
    /// Seconds.
    p50: f64,
    p99: f64,
    p999: f64,
    rps: f64,
    success_rate: f64,
    /// Status code → responses; error → occurrences.
    statuses: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

impl Oha {
    fn find(knobs: &Knobs) -> Result<Oha> {
        let bin = PathBuf::from(std::env::var("OHA").unwrap_or_else(|_| "oha".into()));
        let out = Command::new(&bin)
            .arg("--version")
            .output()
            .with_context(|| {
                format!(
                    "running {} (`./dev bench query_load` installs oha)",
                    bin.display()
                )
            })?;
        ensure!(out.status.success(), "{} --version failed", bin.display());
        Ok(Oha {
            bin,
            version: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            connections: knobs.connections,
        })
    }

    /// Runs oha over the URLs in `urls` (a random one per request) for `seconds`, or for
    /// `requests`, at `rate` (with latency correction) or unlimited.
    fn run(
        &self,
        urls: &Path,
        rate: Option<u32>,
        seconds: Option<u64>,
        requests: u64,
    ) -> Result<Load> {
        let mut command = Command::new(&self.bin);
        command
            .args([
                "--no-tui",
                "--output-format",
                "json",
                "--urls-from-file",
                "-w",
            ])
            .args(["-c", &self.connections.to_string()]);
        if let Some(rate) = rate {
            command.args(["-q", &rate.to_string(), "--latency-correction"]);
        }
        match seconds {
            Some(s) => command.args(["-z", &format!("{s}s")]),
            None => command.args(["-n", &requests.to_string()]),
        };
        let out = command
            .arg(urls)
            .stdin(Stdio::null())
            .output()
            .context("running oha")?;
        ensure!(
            out.status.success(),
            "oha failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Json = serde_json::from_slice(&out.stdout).context("oha's JSON output")?;
        let seconds = |name: &str| -> Result<f64> {
            report["latencyPercentiles"][name]
                .as_f64()
                .with_context(|| format!("no latencyPercentiles.{name} in oha's output"))
        };
        let counts = |field: &str| -> BTreeMap<String, u64> {
            report[field]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Load {
            p50: seconds("p50")?,
            p99: seconds("p99")?,
            p999: seconds("p99.9")?,
            rps: report["summary"]["requestsPerSec"]
                .as_f64()
                .context("summary.requestsPerSec")?,
            success_rate: report["summary"]["successRate"]
                .as_f64()
                .context("summary.successRate")?,
            statuses: counts("statusCodeDistribution"),
            errors: counts("errorDistribution"),
        })
    }
}

/// Writes one URL per key, under `api`, to `file`.
fn url_file(file: &Path, api: &str, keys: &[String]) -> Result<PathBuf> {
    let text: String = keys
        .iter()
        .map(|k| format!("{api}{}\n", key_path(k)))
        .collect();
    std::fs::write(file, text)?;
    Ok(file.to_path_buf())
}

// ---------------------------------------------------------------------------------------
// The phases.

/// Runs of one warm phase, for credstream and the peer.
struct Warm {
    label: String,
    credstream: Vec<Load>,
    peer: Vec<Load>,
}

/// One demo, warmed up; every phase `runs` times, credstream then the peer each time.
fn warm_phases(
    rt: &tokio::runtime::Runtime,
    oha: &Oha,
    knobs: &Knobs,
    dir: &Path,
) -> Result<(Vec<Warm>, Lookups)> {
    let demo = Demo::start(&dir.join("demo-warm"))?;
    eprintln!(
        "warm demo serving at {} after {:.1} s",
        demo.api,
        demo.startup.as_secs_f64()
    );
    let lookups = rt.block_on(collect_lookups(&demo.api))?;
    eprintln!("{} keys in the {VIEW} view", lookups.keys.len());
    let peer = Peer::start(rt, &lookups)?;
    let ours = url_file(&dir.join("credstream.urls"), &demo.api, &lookups.keys)?;
    let theirs = url_file(&dir.join("peer.urls"), &peer.api, &lookups.keys)?;
    // Warm-up, not counted: caches, connections, the allocator.
    for urls in [&ours, &theirs] {
        oha.run(urls, None, Some(3), 0)?;
    }
    let mut warm: Vec<Warm> = knobs
        .phases()
        .into_iter()
        .map(|(label, _, _)| Warm {
            label,
            credstream: Vec::new(),
            peer: Vec::new(),
        })
        .collect();
    for run in 1..=knobs.runs {
        for (i, (label, rate, seconds)) in knobs.phases().into_iter().enumerate() {
            for (who, urls) in [("credstream", &ours), ("peer", &theirs)] {
                let load = oha.run(urls, rate, Some(seconds), 0)?;
                eprintln!(
                    "run {run}, {label}, {who} (load average after: {}): p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, {:.0} req/s, success {:.4}, statuses {:?}, errors {:?}",
                    load_average(),
                    load.p50 * 1e3,
                    load.p99 * 1e3,
                    load.p999 * 1e3,
                    load.rps,
                    load.success_rate,
                    load.statuses,
                    load.errors
                );
                match who {
                    "credstream" => warm[i].credstream.push(load),
                    _ => warm[i].peer.push(load),
                }
            }
        }
    }
    drop(peer);
    drop(demo);
    Ok((warm, lookups))
}

/// The first two requests from a fresh client, and oha's first requests right after.
#[derive(Clone, Debug)]
struct Cold {
    startup: Option<Duration>,
    first: Duration,
    second: Duration,
    burst: Load,
}

/// A fresh client's first request to `url` (connection set-up included) and its second
/// (on the same connection), each until its whole body is read.
async fn first_two(client: &reqwest::Client, url: &str) -> Result<(Duration, Duration)> {
    let mut times = Vec::new();
    for _ in 0..2 {
        let began = Instant::now();
        let response = client.get(url).send().await?;
        let status = response.status();
        response.bytes().await?;
        times.push(began.elapsed());
        ensure!(status == reqwest::StatusCode::OK, "{url}: {status}");
    }
    Ok((times[0], times[1]))
}

/// `starts` fresh demos (each generates and processes its month again), and as many
/// fresh peers: the first lookup after each says it serves.
fn cold_starts(
    rt: &tokio::runtime::Runtime,
    oha: &Oha,
    knobs: &Knobs,
    dir: &Path,
    lookups: &Lookups,
) -> Result<(Vec<Cold>, Vec<Cold>)> {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for start in 1..=knobs.starts {
        // A different key each start, spread over the view.
        let key = &lookups.keys[(start * 7919) % lookups.keys.len()];
        // The client is built before the server starts: its set-up is not the server's.
        let client = reqwest::Client::new();
        let demo = Demo::start(&dir.join(format!("demo-cold-{start}")))?;
        let (first, second) = rt.block_on(first_two(
            &client,
            &format!("{}{}", demo.api, key_path(key)),
        ))?;
        let urls = url_file(&dir.join("cold.urls"), &demo.api, &lookups.keys)?;
        let burst = oha.run(&urls, Some(knobs.rate), None, knobs.cold_requests)?;
        let startup = demo.startup;
        drop(demo);
        let cold = Cold {
            startup: Some(startup),
            first,
            second,
            burst,
        };
        eprintln!(
            "start {start}: serving after {:.1} s; first lookup {:.3} ms, second {:.3} ms; first {} requests at {} q/s: p50 {:.3} ms, p99 {:.3} ms, statuses {:?}, errors {:?}",
            cold.startup.unwrap_or_default().as_secs_f64(),
            first.as_secs_f64() * 1e3,
            second.as_secs_f64() * 1e3,
            knobs.cold_requests,
            knobs.rate,
            cold.burst.p50 * 1e3,
            cold.burst.p99 * 1e3,
            cold.burst.statuses,
            cold.burst.errors
        );
        ours.push(cold);

        let client = reqwest::Client::new();
        let peer = Peer::start(rt, lookups)?;
        let (first, second) = rt.block_on(first_two(
            &client,
            &format!("{}{}", peer.api, key_path(key)),
        ))?;
        let urls = url_file(&dir.join("cold-peer.urls"), &peer.api, &lookups.keys)?;
        let burst = oha.run(&urls, Some(knobs.rate), None, knobs.cold_requests)?;
        drop(peer);
        eprintln!(
            "start {start}, peer: first lookup {:.3} ms, second {:.3} ms; first {} requests: p50 {:.3} ms, p99 {:.3} ms",
            first.as_secs_f64() * 1e3,
            second.as_secs_f64() * 1e3,
            knobs.cold_requests,
            burst.p50 * 1e3,
            burst.p99 * 1e3
        );
        theirs.push(Cold {
            startup: None,
            first,
            second,
            burst,
        });
    }
    Ok((ours, theirs))
}

// ---------------------------------------------------------------------------------------
// The report.

fn ms(seconds: f64) -> String {
    format!("{:.3}", seconds * 1e3)
}

/// Statuses and errors summed over runs, e.g. `200: 90000` or `200: 89990, aborted: 10`.
fn outcomes(loads: &[Load]) -> String {
    let mut all: BTreeMap<String, u64> = BTreeMap::new();
    for l in loads {
        for (k, v) in l.statuses.iter().chain(&l.errors) {
            *all.entry(k.clone()).or_default() += v;
        }
    }
    all.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Median and maximum.
fn median_max(xs: Vec<f64>) -> (f64, f64) {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(xs), max)
}

fn print_tables(
    knobs: &Knobs,
    oha: &Oha,
    keys: usize,
    warm: &[Warm],
    (ours, theirs): &(Vec<Cold>, Vec<Cold>),
) {
    let runs = knobs.runs;
    println!();
    println!(
        "Warm: {}, {} connections, a random key of {keys} per request; median of {runs} runs; latency in ms.",
        oha.version, oha.connections
    );
    println!();
    println!(
        "| load | credstream p50 / p99 / p99.9 | credstream req/s | peer p50 / p99 / p99.9 | peer req/s | ratio p50 / p99 | credstream success, statuses (all runs) | peer success, statuses |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for phase in warm {
        let m = |loads: &[Load], f: fn(&Load) -> f64| median(loads.iter().map(f).collect());
        let (c, p) = (&phase.credstream, &phase.peer);
        let min_success = |loads: &[Load]| {
            loads
                .iter()
                .map(|l| l.success_rate)
                .fold(f64::INFINITY, f64::min)
        };
        println!(
            "| {} | {} / {} / {} | {:.0} | {} / {} / {} | {:.0} | {:.2} / {:.2} | {:.4}; {} | {:.4}; {} |",
            phase.label,
            ms(m(c, |l| l.p50)),
            ms(m(c, |l| l.p99)),
            ms(m(c, |l| l.p999)),
            m(c, |l| l.rps),
            ms(m(p, |l| l.p50)),
            ms(m(p, |l| l.p99)),
            ms(m(p, |l| l.p999)),
            m(p, |l| l.rps),
            m(c, |l| l.p50) / m(p, |l| l.p50),
            m(c, |l| l.p99) / m(p, |l| l.p99),
            min_success(c),
            outcomes(c),
            min_success(p),
            outcomes(p),
        );
    }
    println!();
    println!(
        "Cold: {} fresh starts; median (max); latency in ms. The peer is started afresh as often.",
        ours.len()
    );
    println!();
    println!("| measure | credstream median (max) | peer median (max) | ratio of medians |");
    println!("|---|---|---|---|");
    let row = |what: String, f: fn(&Cold) -> f64| {
        let (cm, cx) = median_max(ours.iter().map(f).collect());
        let (pm, px) = median_max(theirs.iter().map(f).collect());
        println!(
            "| {what} | {} ({}) | {} ({}) | {:.2} |",
            ms(cm),
            ms(cx),
            ms(pm),
            ms(px),
            cm / pm
        );
    };
    row(
        "first lookup after \"Serving\": fresh client, connect + request + body".into(),
        |c| c.first.as_secs_f64(),
    );
    row("second lookup, same connection".into(), |c| {
        c.second.as_secs_f64()
    });
    row(
        format!(
            "oha's first {} requests after, at {} q/s: p50",
            knobs.cold_requests, knobs.rate
        ),
        |c| c.burst.p50,
    );
    row(
        format!(
            "oha's first {} requests after, at {} q/s: p99",
            knobs.cold_requests, knobs.rate
        ),
        |c| c.burst.p99,
    );
    let bursts: Vec<Load> = ours.iter().map(|c| c.burst.clone()).collect();
    let (sm, sx) = median_max(
        ours.iter()
            .map(|c| c.startup.unwrap_or_default().as_secs_f64())
            .collect(),
    );
    println!(
        "| start-up: spawn to \"Serving until Ctrl-C\" (generates and processes the month), s | {sm:.1} ({sx:.1}) | — | — |"
    );
    println!();
    println!("Cold oha statuses over all starts: {}", outcomes(&bursts));
}
