//! What the integration tests share: real services on free loopback ports, the
//! `credstream` binary as a separate process, and readers for its topics and API.
//!
//! A test that needs a service starts it here or fails; nothing is skipped.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod s3;
pub mod sftp;
pub mod stack;
pub mod tansu;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// A temporary directory for one test's services and files. With
/// `KEEP_TEST_DIRS=1` it is kept (and named on stderr) for a post-mortem.
pub fn test_dir() -> Result<tempfile::TempDir> {
    let mut dir = tempfile::tempdir()?;
    if std::env::var_os("KEEP_TEST_DIRS").is_some() {
        dir.disable_cleanup(true);
        eprintln!("keeping test directory {}", dir.path().display());
    }
    Ok(dir)
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A name no other test uses: topics, groups and application ids are unique per test.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", fastrand::u32(..))
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let began = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if began.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How much of a service's log a failing test prints.
const LOG_TAIL_BYTES: u64 = 4096;

/// The last [`LOG_TAIL_BYTES`] of a log file, starting at a line boundary: what the
/// service harnesses print when a service fails to start or a test panics.
pub fn log_file_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let length = file.metadata()?.len();
        let start = length.saturating_sub(LOG_TAIL_BYTES);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(match text.find('\n') {
            Some(newline) if start > 0 => text[newline + 1..].to_owned(),
            _ => text,
        })
    };
    read().unwrap_or_else(|error| format!("(could not read {}: {error})", path.display()))
}

/// Why a service a test starts did not start: another process took its port (start again
/// on another), or anything else.
pub enum StartFailure {
    PortClash(anyhow::Error),
    Fatal(anyhow::Error),
}

impl StartFailure {
    pub fn into_error(self) -> anyhow::Error {
        match self {
            StartFailure::PortClash(error) | StartFailure::Fatal(error) => error,
        }
    }

    /// Kills and reaps `child`, then says that `what` did not start, with its log's tail;
    /// a port clash stays a port clash.
    pub fn after_killing(self, child: &mut Child, what: &str, log_path: &Path) -> StartFailure {
        let _ = child.kill();
        let _ = child.wait();
        let tail = log_file_tail(log_path);
        let describe = |error: anyhow::Error| {
            error.context(format!(
                "{what} did not start; log {}:\n{tail}",
                log_path.display()
            ))
        };
        match self {
            StartFailure::PortClash(error) => StartFailure::PortClash(describe(error)),
            StartFailure::Fatal(error) => StartFailure::Fatal(describe(error)),
        }
    }
}

/// How often a service is started again after losing the race for a free port.
const START_ATTEMPTS: u32 = 5;

/// Runs `start_once(attempt)` until it starts the service, again (up to
/// [`START_ATTEMPTS`] times) when another process took its port; any other failure ends it.
pub fn start_with_retries<T>(
    what: &str,
    mut start_once: impl FnMut(u32) -> Result<T, StartFailure>,
) -> Result<T> {
    let mut last_clash = None;
    for attempt in 1..=START_ATTEMPTS {
        match start_once(attempt) {
            Ok(started) => return Ok(started),
            Err(StartFailure::PortClash(error)) => last_clash = Some(error),
            Err(StartFailure::Fatal(error)) => return Err(error),
        }
    }
    let error = last_clash.unwrap_or_else(|| anyhow::anyhow!("no start attempt was made"));
    Err(error.context(format!(
        "{what} lost the race for a free port {START_ATTEMPTS} times in a row"
    )))
}

/// A benchmark knob from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The peak resident set of process `pid` so far (`VmHWM` in `/proc/<pid>/status`), bytes.
pub fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/<pid>/status")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?;
    Ok(kb * 1024)
}

/// The median of benchmark runs (the upper middle one for an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// The median, minimum and maximum of `xs`: a benchmark row's cell.
pub fn median_min_max(xs: impl IntoIterator<Item = f64>) -> (f64, f64, f64) {
    let xs: Vec<f64> = xs.into_iter().collect();
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(xs), min, max)
}

/// The `q` quantile of `xs` (nearest rank: the smallest value with at least `q` of `xs` at
/// or below it).
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1]
}

/// A `credstream` process, killed when dropped.
pub struct Credstream {
    child: Child,
    log: PathBuf,
}

impl Credstream {
    /// Starts the binary under test with `args`, logging to `log`.
    pub fn spawn(args: &[&str], log: &Path) -> Result<Credstream> {
        Self::spawn_with_env(args, &[], log)
    }

    /// [`Self::spawn`] with extra environment variables (e.g. `CREDSTREAM_…` overrides).
    pub fn spawn_with_env(args: &[&str], env: &[(&str, String)], log: &Path) -> Result<Credstream> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = Command::new(env!("CARGO_BIN_EXE_credstream"))
            .args(args)
            .env(
                "CREDSTREAM_LOG",
                std::env::var("TEST_REPLICA_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into()),
            )
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .context("starting credstream")?;
        Ok(Credstream {
            child,
            log: log.to_path_buf(),
        })
    }

    /// The process id (for /proc readings in benchmarks).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would: no shutdown code runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Fails with the log's tail if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("credstream exited with {status}; log:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// Waits up to `within` for the process to exit; its exit code.
    pub async fn exit_code(&mut self, within: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                bail!(
                    "credstream still runs after {within:?}; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Credstream {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `credstream registry` on a free port; returns the process and its URL once it answers.
pub async fn start_registry(dir: &Path, brokers: &str) -> Result<(Credstream, String)> {
    start_registry_at(dir, brokers, free_port()).await
}

/// `credstream registry` on `port` (to restart one where its clients expect it).
pub async fn start_registry_at(
    dir: &Path,
    brokers: &str,
    port: u16,
) -> Result<(Credstream, String)> {
    let listen = format!("127.0.0.1:{port}");
    let mut process = Credstream::spawn(
        &[
            "registry",
            "--listen",
            &listen,
            "--brokers",
            brokers,
            "--kafka-property",
            "batch.num.messages=1",
        ],
        &dir.join("registry.log"),
    )?;
    let url = format!("http://{listen}");
    let http = reqwest::Client::new();
    let probe = format!("{url}/subjects");
    let ready = wait_for(Duration::from_secs(20), "the schema registry", || {
        let req = http.get(&probe).send();
        async move {
            req.await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        }
    })
    .await;
    if let Err(e) = ready {
        process.check_alive()?;
        return Err(e);
    }
    Ok((process, url))
}

/// `credstream run --config <config>` (logging to `log`), once its query API at `api`
/// answers `/readyz` with 200; fails with the log's tail if it does not within 120 s.
pub async fn run_until_ready(config: &Path, log: &Path, api: &str) -> Result<Credstream> {
    let mut pipeline = Credstream::spawn(&["run", "--config", &config.display().to_string()], log)?;
    let ready = wait_for(Duration::from_secs(120), "credstream to be ready", || {
        let url = format!("{api}/readyz");
        async move { get_json(&url).await.filter(|(s, _)| *s == 200) }
    })
    .await;
    if let Err(e) = ready {
        pipeline.check_alive()?;
        return Err(e.context(pipeline.log_tail()));
    }
    Ok(pipeline)
}

/// GET a JSON document; `None` when the server is not answering yet.
pub async fn get_json(url: &str) -> Option<(u16, serde_json::Value)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// A record as read back: key and value (`None` for a tombstone).
pub type KeyValue = (Vec<u8>, Option<Vec<u8>>);

/// Every record of `topic` up to its current end, in partition order.
pub fn read_topic(bootstrap: &str, topic: &str) -> Result<Vec<KeyValue>> {
    Ok(read_topic_positioned(bootstrap, topic)?
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect())
}

/// A record as read back, with where it sits.
pub struct Positioned {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Every record of `topic` up to its current end, with partitions and offsets.
pub fn read_topic_positioned(bootstrap: &str, topic: &str) -> Result<Vec<Positioned>> {
    let consumer: BaseConsumer = tansu::rdkafka_client_config(bootstrap)
        .set("group.id", unique("reader-"))
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    if partitions.is_empty() {
        bail!("topic {topic} has no partitions");
    }
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10))?;
        if high > low {
            ends.insert(*p, high);
            tpl.add_partition_offset(topic, *p, Offset::Offset(low))?;
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        if Instant::now() > deadline {
            bail!("reading {topic} did not reach its end: {ends:?} left");
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                out.push(Positioned {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().map(<[u8]>::to_vec),
                });
                if let Some(&end) = ends.get(&m.partition())
                    && m.offset() + 1 >= end
                {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            None => {}
        }
    }
    Ok(out)
}

/// The offsets `group` has committed on `topic`, per partition (`None`: nothing yet), and
/// each partition's end.
pub fn group_progress(
    bootstrap: &str,
    group: &str,
    topic: &str,
) -> Result<Vec<(i32, Option<i64>, i64)>> {
    let consumer: BaseConsumer = tansu::rdkafka_client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    let mut out = Vec::new();
    for e in committed.elements_for_topic(topic) {
        let (_, high) = consumer.fetch_watermarks(topic, e.partition(), Duration::from_secs(10))?;
        let offset = match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        out.push((e.partition(), offset, high));
    }
    Ok(out)
}

/// Decodes Confluent-framed Avro values with `schema_registry_converter`, a client this
/// project did not write, against `registry_url`.
pub async fn decode_all(
    registry_url: &str,
    values: &[Option<Vec<u8>>],
) -> Result<Vec<apache_avro::types::Value>> {
    use schema_registry_converter::async_impl::avro::AvroDecoder;
    use schema_registry_converter::async_impl::schema_registry::SrSettings;
    let decoder = AvroDecoder::new(SrSettings::new(registry_url.to_string()));
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let decoded = decoder
            .decode(v.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!("decoding: {e}"))?;
        out.push(decoded.value);
    }
    Ok(out)
}

/// A record's field by name.
pub fn field<'a>(
    record: &'a apache_avro::types::Value,
    name: &str,
) -> &'a apache_avro::types::Value {
    match record {
        apache_avro::types::Value::Record(fields) => {
            &fields
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no field {name}"))
                .1
        }
        other => panic!("not a record: {other:?}"),
    }
}

/// The Python interpreter with confluent-kafka (`./dev test` installs it into
/// `~/.cache/credstream/venv`; `TEST_PYTHON` points elsewhere).
pub fn python() -> Result<PathBuf> {
    let path = match std::env::var_os("TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cache/credstream/venv/bin/python"),
    };
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run `./dev test`, which installs confluent-kafka into it",
        path.display()
    );
    Ok(path)
}

/// The tokenisation key the tests' pipelines use (32 bytes, as the tokeniser requires).
pub const TOKEN_KEY: &str = "test-key-0123456789abcdef-0123456789";

/// Writes the tokenisation key to `dir/tokenisation.key` and returns the config section
/// that points at it.
pub fn tokenisation_section(dir: &Path) -> Result<String> {
    let path = dir.join("tokenisation.key");
    std::fs::write(&path, TOKEN_KEY)?;
    Ok(format!(
        "[tokenisation]\nkey_file = \"{}\"\n",
        path.display()
    ))
}

/// Runs tests/python/confluent_clients.py (Confluent's SchemaRegistryClient and
/// AvroDeserializer) against `registry` and the topics on `bootstrap`; returns its report.
pub fn python_clients(
    registry: &str,
    bootstrap: &str,
    topics: &[String],
) -> Result<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/confluent_clients.py");
    let mut command = Command::new(python()?);
    command
        .arg(&script)
        .args(["--registry", registry, "--bootstrap", bootstrap]);
    for t in topics {
        command.args(["--topic", t]);
    }
    let out = command.output().context("running the Python client")?;
    anyhow::ensure!(
        out.status.success(),
        "the Python client failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "the Python client's report: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A child process killed when the test ends, also when it fails half-way.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `credstream demo` serving its query API on a free port, in `<dir>/demo`.
pub struct ServingDemo {
    pub process: KillOnDrop,
    pub dir: PathBuf,
    /// The API's base URL.
    pub api: String,
    /// Every line it printed until it said it serves.
    pub printed: String,
}

impl ServingDemo {
    /// Starts the demo and reads what it prints until it serves.
    pub fn start(dir: &Path) -> Result<ServingDemo> {
        use std::io::{BufRead, BufReader};
        let demo_dir = dir.join("demo");
        let mut process = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_credstream"))
                .args(["demo", "--listen", "127.0.0.1:0", "--dir"])
                .arg(&demo_dir)
                .env("CREDSTREAM_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let mut printed = String::new();
        for line in BufReader::new(process.0.stdout.take().unwrap()).lines() {
            let line = line?;
            printed.push_str(&line);
            printed.push('\n');
            if line.starts_with("Serving until Ctrl-C") {
                let api = printed_value(&printed, "Query API:")
                    .map(|url| url.trim_end_matches("/v1/files").to_string())
                    .with_context(|| format!("the demo printed no query API URL:\n{printed}"))?;
                return Ok(ServingDemo {
                    process,
                    dir: demo_dir,
                    api,
                    printed,
                });
            }
        }
        bail!("the demo ended before serving:\n{printed}")
    }

    /// The value the demo printed after `label` (e.g. `"Registry:"`).
    pub fn printed(&self, label: &str) -> Option<&str> {
        printed_value(&self.printed, label)
    }
}

fn printed_value<'a>(printed: &'a str, label: &str) -> Option<&'a str> {
    printed
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
}
