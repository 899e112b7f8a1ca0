//! Test support: a real, separate Tansu broker (Kafka-compatible, crates.io `tansu`)
//! running as a child process on a free 127.0.0.1 port with in-memory storage.
//!
//! Each [`Tansu`] is a fresh, empty broker: `memory://` keeps nothing across restarts,
//! so tests never see each other's topics, data or consumer-group offsets.
//!
//! Facts about Tansu 0.6.0 this module relies on (verified against the binary):
//! - It listens on `--listener-url` and tells clients to connect to
//!   `--advertised-listener-url`, whose default is `tcp://localhost:9092`; both must be
//!   set, or clients are redirected to port 9092 after bootstrapping.
//! - A port clash is not an exit-code failure: the process logs `AddrInUse` and exits
//!   with status 0 within ~0.2 s.
//! - It is ready within ~30 ms of spawning.
//! - `RUST_LOG=info` logs every span enter/exit (thousands of lines per test), so the
//!   broker runs at `warn` unless `TANSU_RUST_LOG` says otherwise.
//! - Topics are never auto-created: create them with the admin API first.
//! - Client settings it needs are in [`rdkafka_client_config`].

// Every integration-test crate compiles its own copy of `support` and uses a different
// subset of it.
#![allow(dead_code)]

use std::{
    env,
    fs::{File, OpenOptions},
    io::Write,
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{self, Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::log_file_tail as log_tail;
use super::{StartFailure as Failure, start_with_retries};
use anyhow::{Context as _, Result, anyhow, bail};
use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer as _},
};
use tempfile::TempDir;

/// How long one start attempt may take before it fails. Tansu is normally ready in
/// well under a second; the margin covers a machine busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound on each blocking metadata / cluster-id request during the readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

const LOG_FILE: &str = "tansu.log";

/// A running Tansu broker, killed when dropped.
pub struct Tansu {
    child: Child,
    port: u16,
    /// Working directory of the broker and home of its log. It is deleted on drop
    /// unless the test is panicking, in which case it is kept for inspection.
    dir: TempDir,
}

impl Tansu {
    /// Starts a fresh broker on a free 127.0.0.1 port; fails (never skips) if the binary
    /// is missing or it does not become ready within a bound.
    pub fn start() -> Result<Tansu> {
        let binary = tansu_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("credstream-tansu-")
            .tempdir()
            .context("creating a temporary directory for the Tansu broker")?;

        let (child, port) =
            start_with_retries("Tansu", |attempt| start_once(&binary, &dir, attempt))?;
        Ok(Tansu { child, port, dir })
    }

    /// The broker's process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `bootstrap.servers` value for clients: `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file that receives the broker's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        // SIGKILL rather than SIGTERM: memory:// has nothing to flush, and on SIGTERM
        // Tansu waits up to ~5 s for open client connections to finish.
        let _ = self.child.kill();
        let _ = self.child.wait();

        if thread::panicking() {
            // The test failed: keep the log and show its end next to the panic message.
            self.dir.disable_cleanup(true);
            eprintln!(
                "Tansu broker log kept at {}; last lines:\n{}",
                self.log_path().display(),
                log_tail(&self.log_path())
            );
        }
    }
}

/// The `[kafka.properties]` table of a credstream configuration run against Tansu 0.6.0:
/// the two settings of [`rdkafka_client_config`] the pipeline's own clients need (single
/// record batches; short fetch waits). Its session timeout is `kafka.session_timeout_ms`.
pub const PIPELINE_PROPERTIES: &str =
    "[kafka.properties]\n\"batch.num.messages\" = \"1\"\n\"fetch.wait.max.ms\" = \"50\"\n";

/// Client settings every producer, consumer and admin client talking to Tansu 0.6.0
/// should start from. Producer-only and consumer-only keys are mixed on purpose;
/// librdkafka ignores the ones that do not apply (with a configuration warning that
/// goes to the `log` crate).
pub fn rdkafka_client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        // Producer. Tansu 0.6.0 (memory storage) mishandles record batches holding more
        // than one record: it reports the high watermark as "first offset of the last
        // batch + 1", and a fetch from an offset inside a batch skips to the next batch,
        // so a consumer resuming from a committed offset loses records (or gets the next
        // batch repeatedly). One record per batch avoids both.
        .set("batch.num.messages", "1")
        // Producer. Tansu never auto-creates topics, so a send to a missing topic
        // otherwise retries for librdkafka's default 300 s before failing.
        .set("message.timeout.ms", "15000")
        // Consumer. Tansu sleeps on every fetch (about half of fetch.wait.max.ms when
        // that is 250 ms or more, otherwise all of it) even when records are ready:
        // 500 ms (the default) costs ~230 ms per hop, 50 ms costs ~25 ms per hop at
        // ~2% broker CPU per idle consumer.
        .set("fetch.wait.max.ms", "50")
        // Consumer group. A member that dies without leaving is evicted after
        // session.timeout.ms: ~7 s instead of ~47 s with the default 45 s.
        .set("session.timeout.ms", "6000")
        // Consumer group. Members learn of a rebalance on their next heartbeat; 1 s
        // instead of the default 3 s. (A joining member still waits ~3 s: Tansu pauses
        // every join of a non-leader for 3 s.)
        .set("heartbeat.interval.ms", "1000")
        // Consumer group. A stuck poll loop is noticed after 10 s instead of 5 min. Must
        // stay >= session.timeout.ms.
        .set("max.poll.interval.ms", "10000");
    config
}

/// Spawns Tansu on a fresh port and waits until it serves metadata. The child is
/// killed before any error is returned.
fn start_once(binary: &Path, dir: &TempDir, attempt: u32) -> Result<(Child, u16), Failure> {
    let port = super::free_port();
    // A cluster id unique to this broker lets the readiness probe tell our broker apart
    // from anything else that may have taken the port.
    let cluster_id = format!("credstream-test-{}-{port}", process::id());
    let url = format!("tcp://127.0.0.1:{port}");
    let log_path = dir.path().join(LOG_FILE);

    let mut command = Command::new(binary);
    command
        .arg("broker")
        .args(["--cluster-id", &cluster_id])
        // An IP literal binds 127.0.0.1 only; a host name such as `localhost` makes Tansu
        // fall back to listening on all interfaces.
        .args(["--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        // Tansu loads a `.env` file from its working directory or a parent, so run it in
        // the temporary directory rather than in the repository.
        .current_dir(dir.path())
        .env(
            "RUST_LOG",
            env::var("TANSU_RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .env("NO_COLOR", "1")
        // Read by Tansu when the matching flag is absent; a value inherited from the
        // developer's shell would attach a schema registry or an OTLP exporter.
        .env_remove("SCHEMA_REGISTRY")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null());

    let log = open_log(&log_path, attempt, &command).map_err(Failure::Fatal)?;
    let stderr = log
        .try_clone()
        .context("duplicating the Tansu log file handle")
        .map_err(Failure::Fatal)?;
    // The child inherits our process group, so Ctrl-C on `cargo test` reaches it too.
    let mut child = command
        .stdout(log)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))
        .map_err(Failure::Fatal)?;

    match wait_until_ready(&mut child, port, &cluster_id, &log_path) {
        Ok(()) => Ok((child, port)),
        Err(failure) => Err(failure.after_killing(
            &mut child,
            &format!("Tansu (attempt {attempt}, port {port})"),
            &log_path,
        )),
    }
}

/// Waits for a TCP connect, then for a metadata response that names our broker, all
/// within [`READY_TIMEOUT`].
fn wait_until_ready(
    child: &mut Child,
    port: u16,
    cluster_id: &str,
    log_path: &Path,
) -> Result<(), Failure> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    // Connecting first keeps librdkafka from entering its reconnect backoff.
    loop {
        check_alive(child, log_path)?;
        if TcpStream::connect_timeout(&address, Duration::from_millis(250)).is_ok() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Failure::Fatal(anyhow!(
                "nothing accepted connections on {address} within {READY_TIMEOUT:?}"
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }

    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", address.to_string())
        .set("client.id", "credstream-tansu-readiness-probe")
        .create()
        .context("creating the readiness probe client")
        .map_err(Failure::Fatal)?;

    let mut last_error = anyhow!("no metadata request completed");
    while Instant::now() < deadline {
        check_alive(child, log_path)?;
        let timeout = PROBE_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        match probe.fetch_metadata(None, timeout) {
            Ok(metadata) => {
                // Something answered; make sure it is our broker. A different cluster id
                // means another server owns the port (and our child is about to exit
                // with AddrInUse).
                let answered = probe.client().fetch_cluster_id(timeout);
                if answered.as_deref() != Some(cluster_id) {
                    return Err(Failure::PortClash(anyhow!(
                        "port {port} is served by cluster {answered:?}, not {cluster_id}"
                    )));
                }
                // Clients follow the advertised address, so it must be this port.
                let advertised = metadata
                    .brokers()
                    .iter()
                    .map(|broker| format!("{}:{}", broker.host(), broker.port()))
                    .collect::<Vec<_>>();
                if advertised != [address.to_string()] {
                    return Err(Failure::Fatal(anyhow!(
                        "Tansu advertises {advertised:?}, expected [{address}]"
                    )));
                }
                return Ok(());
            }
            Err(error) => {
                last_error = anyhow!(error).context("metadata request failed");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    Err(Failure::Fatal(last_error.context(format!(
        "Tansu accepted connections but served no metadata within {READY_TIMEOUT:?}"
    ))))
}

/// Fails if the broker has exited. Tansu exits with status 0 even when it cannot bind
/// its port, so whether a retry on another port can help is read from its log.
fn check_alive(child: &mut Child, log_path: &Path) -> Result<(), Failure> {
    let status = child
        .try_wait()
        .context("polling the Tansu process")
        .map_err(Failure::Fatal)?;
    let Some(status) = status else {
        return Ok(());
    };
    let error = anyhow!("Tansu exited early with {status}");
    let log = log_tail(log_path);
    if log.contains("AddrInUse") || log.contains("Address already in use") {
        Err(Failure::PortClash(error))
    } else {
        Err(Failure::Fatal(error))
    }
}

/// Opens (appending) the broker log and records which attempt and command follow, so
/// the log of a retried start reads in order.
fn open_log(path: &Path, attempt: u32, command: &Command) -> Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(
        file,
        "--- credstream test support, start attempt {attempt}: {command:?}"
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(file)
}

/// `TANSU_BIN`, else `tansu` on `PATH`, else `$HOME/.cargo/bin/tansu`.
fn tansu_binary() -> Result<PathBuf> {
    if let Some(path) = env::var_os("TANSU_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("TANSU_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    let on_path = env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|dir| dir.join("tansu"))
            .find(|candidate| candidate.is_file())
    });
    let in_cargo_home = env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cargo/bin/tansu"))
        .filter(|candidate| candidate.is_file());
    on_path.or(in_cargo_home).ok_or_else(|| {
        anyhow!(
            "the Tansu broker binary was not found (looked at $TANSU_BIN, `tansu` on PATH \
             and $HOME/.cargo/bin/tansu); install it with \
             `cargo install tansu --locked --features dynostore`"
        )
    })
}
