//! An S3-compatible server on a free loopback port, for the S3 raw store's tests: moto's
//! S3 (PyPI `moto[server]`, pinned to [`MOTO_VERSION`]) as a separate Python process,
//! run by `tests/python/moto_s3.py` from the venv at `~/.cache/credstream/venv`.
//!
//! Each [`S3Server`] is a fresh, empty server holding everything in its own memory. The
//! script, not `moto_server`, runs it so that [`S3Server::stop`] and
//! [`S3Server::restart`] keep the data: moto loses everything when its process ends.
//!
//! Facts about moto 5.2.5 in server mode this module relies on (each checked against the
//! running server; `tests/s3_server.rs` asserts the ones marked *tested*):
//! - Requests need an `Authorization` header, but its signature is never checked (moto
//!   only checks when `INITIAL_NO_AUTH_ACTION_COUNT` is set, which [`S3Server::start`]
//!   clears). The credential scope's service (`s3`) routes the request; without the
//!   header, objects read back as 403 (anonymous access to a private object). So
//!   [`S3Rest`] sends a fixed, unsigned header, and any access key works for
//!   `aws-sdk-s3`.
//! - Path-style addressing (`http://127.0.0.1:PORT/bucket/key`) works; virtual-hosted
//!   style would need `bucket.127.0.0.1` to resolve, so clients must force path style.
//! - Bucket names must be 3 or more characters (`InvalidBucketName` otherwise).
//! - SSE: `AES256`, and `aws:kms` with a key id, are stored and echoed on PUT, GET and
//!   HEAD (*tested*). Nothing is encrypted and the key id is not checked against KMS.
//! - Multipart upload works, and a part other than the last below 5 MiB fails the
//!   completion with `EntityTooSmall` (*tested*).
//! - Object Lock: a bucket created with `x-amz-bucket-object-lock-enabled: true` has
//!   versioning on; retention headers on PUT are stored and returned by PUT, HEAD and
//!   GET, and deleting a retained version is 403 `AccessDenied` (*tested*); the same
//!   holds for PutObjectRetention (`?retention`). A PUT with retention needs
//!   `Content-MD5` or `x-amz-sdk-checksum-algorithm`, as on AWS (*tested*).
//!   GetObjectRetention is *not* implemented (boto3 gets a 500): read retention from
//!   HEAD.
//! - Checksums are *not verified*: a wrong `x-amz-checksum-sha256`, or a wrong
//!   `Content-MD5`, is accepted (*tested*, so a moto that starts checking is noticed).
//!   With `x-amz-sdk-checksum-algorithm` the given value is stored and echoed by GET with
//!   `x-amz-checksum-mode: ENABLED`; without it, `x-amz-checksum-*` is ignored, and with
//!   it but no value, moto computes one. `aws-chunked` bodies with a trailing checksum
//!   (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`, as AWS SDKs send) are decoded and the trailer
//!   stored, again unverified. boto3 1.44.8 put_object and multipart uploads with
//!   SHA-256 checksums work. A test that needs a corrupt upload rejected cannot use moto.
//! - A body with `Content-Type: application/x-www-form-urlencoded` is parsed as a form
//!   and stored empty, so [`S3Rest::put_object`] defaults to `application/octet-stream`.
//! - It is ready ~0.5 s after spawning (importing moto).
//!
//! Two outages can be simulated, both keeping the data: [`S3Server::stop`] closes the
//! socket (connections are refused, as when S3 is down or unreachable) and
//! [`S3Server::pause`] freezes the process with SIGSTOP (the kernel still accepts
//! connections, but nothing answers, as with a hung server; clients need timeouts).

// Every integration-test crate compiles its own copy of `support` and uses a different
// subset of it.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    env,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use super::log_file_tail as log_tail;
use anyhow::{Context as _, Result, anyhow, bail, ensure};
use reqwest::{Method, header::HeaderMap};
use tempfile::TempDir;

/// The moto release this module's facts were checked against; `start` fails on another.
pub const MOTO_VERSION: &str = "5.2.5";

/// The region, access key and secret key tests give their S3 clients. moto accepts any.
pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";

/// How long starting (or restarting) may take. moto is normally ready in ~0.5 s; the
/// margin covers a machine busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the script may take to answer `stop`.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on each readiness probe request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Timeout of [`S3Rest`] requests unless [`S3Rest::with_timeout`] says otherwise.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const LOG_FILE: &str = "moto.log";

/// What [`S3Rest`] sends as `Authorization`: well formed, so moto routes it to S3 and
/// treats it as an authenticated request, but not signed (moto does not check).
const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
    Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, \
    Signature=0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Serving,
    Stopped,
    Paused,
}

/// A running moto S3 server, killed when dropped.
pub struct S3Server {
    child: Child,
    /// Commands to the script; closing it ends the script.
    stdin: ChildStdin,
    /// The script's reply lines, read from its stdout by a thread. Disconnected once the
    /// process has exited.
    replies: Receiver<String>,
    port: u16,
    state: State,
    /// Working directory of the server and home of its log. It is deleted on drop unless
    /// the test is panicking, in which case it is kept for inspection.
    dir: TempDir,
}

impl S3Server {
    /// Starts a fresh, empty server on a free 127.0.0.1 port and waits (bounded) until it
    /// answers HTTP. Fails, never skips, if Python or moto is missing.
    pub fn start() -> Result<S3Server> {
        let python = python()?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/moto_s3.py");
        let dir = tempfile::Builder::new()
            .prefix("credstream-s3-")
            .tempdir()
            .context("creating a temporary directory for the S3 server")?;
        let log_path = dir.path().join(LOG_FILE);

        let mut command = Command::new(&python);
        command
            .arg(&script)
            .current_dir(dir.path())
            // Set in a developer's shell, it would make moto check signatures (and reject
            // ours) after that many requests.
            .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let log = open_log(&log_path, &command)?;
        // The child inherits our process group, so Ctrl-C on `cargo test` reaches it too;
        // and it exits by itself when its stdin closes, i.e. when this process is gone.
        let mut child = command
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {} {}", python.display(), script.display()))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, replies) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });

        let mut server = S3Server {
            child,
            stdin,
            replies,
            port: 0,
            state: State::Serving,
            dir,
        };
        let reply = server.reply(READY_TIMEOUT).map_err(|e| {
            let log = server.log_tail();
            if log.contains("ModuleNotFoundError") {
                anyhow!(
                    "moto is not installed for {}; install it with \
                     `{} -m pip install \"moto[server]=={MOTO_VERSION}\"`; log:\n{log}",
                    python.display(),
                    python.display()
                )
            } else {
                e
            }
        })?;
        server.port = server.listening(&reply)?;
        server.wait_until_ready()?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`, the endpoint for path-style clients.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn region(&self) -> &'static str {
        REGION
    }

    pub fn access_key(&self) -> &'static str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    /// Plain REST calls to this server (a fresh client each time; clones are cheap).
    pub fn rest(&self) -> S3Rest {
        S3Rest::new(self.endpoint(), REQUEST_TIMEOUT)
    }

    /// The file that receives the server's request log and errors.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// Closes the listening socket: connections are refused until [`Self::restart`].
    /// Buckets and objects are kept.
    pub fn stop(&mut self) -> Result<()> {
        ensure!(
            self.state == State::Serving,
            "stop needs a serving S3 server; it is {:?}",
            self.state
        );
        self.command("stop")?;
        let reply = self.reply(REPLY_TIMEOUT)?;
        ensure!(
            reply == "stopped",
            "the S3 server answered {reply:?} to stop"
        );
        self.state = State::Stopped;
        Ok(())
    }

    /// Listens again on the same port, after [`Self::stop`], with the same data, and
    /// waits until it answers. Fails if another process took the port meanwhile.
    pub fn restart(&mut self) -> Result<()> {
        ensure!(
            self.state == State::Stopped,
            "restart needs a stopped S3 server; it is {:?}",
            self.state
        );
        self.command("start")?;
        let reply = self.reply(READY_TIMEOUT)?;
        let port = self.listening(&reply)?;
        ensure!(
            port == self.port,
            "restarted on port {port}, not {}",
            self.port
        );
        self.state = State::Serving;
        self.wait_until_ready()
    }

    /// Freezes the server (SIGSTOP): the kernel still accepts connections on its behalf,
    /// but no request is answered until [`Self::resume`]. Data is kept.
    pub fn pause(&mut self) -> Result<()> {
        ensure!(
            self.state == State::Serving,
            "pause needs a serving S3 server; it is {:?}",
            self.state
        );
        self.signal("STOP")?;
        self.state = State::Paused;
        Ok(())
    }

    /// Undoes [`Self::pause`] (SIGCONT) and waits until the server answers again.
    pub fn resume(&mut self) -> Result<()> {
        ensure!(
            self.state == State::Paused,
            "resume needs a paused S3 server; it is {:?}",
            self.state
        );
        self.signal("CONT")?;
        self.state = State::Serving;
        self.wait_until_ready()
    }

    /// The last part of the server log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path())
    }

    fn command(&mut self, command: &str) -> Result<()> {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .with_context(|| format!("sending {command:?} to the S3 server"))
    }

    /// The script's next reply line; fails with the log if it exits or says nothing.
    fn reply(&mut self, timeout: Duration) -> Result<String> {
        match self.replies.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => bail!(
                "the S3 server did not answer within {timeout:?}; log {}:\n{}",
                self.log_path().display(),
                self.log_tail()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().context("waiting for the S3 server")?;
                bail!(
                    "the S3 server exited with {status}; log {}:\n{}",
                    self.log_path().display(),
                    self.log_tail()
                )
            }
        }
    }

    /// The port of a `listening PORT VERSION` reply, checking the moto version.
    fn listening(&self, reply: &str) -> Result<u16> {
        let fields: Vec<&str> = reply.split(' ').collect();
        let [word, port, version] = fields[..] else {
            bail!("the S3 server answered {reply:?}, not `listening PORT VERSION`");
        };
        ensure!(
            word == "listening",
            "the S3 server answered {reply:?}, not `listening PORT VERSION`"
        );
        ensure!(
            version == MOTO_VERSION,
            "moto {version} is installed, but these tests are written against \
             {MOTO_VERSION}; install it with `{} -m pip install \"moto[server]=={MOTO_VERSION}\"`",
            python().map_or_else(|_| "python".to_owned(), |p| p.display().to_string())
        );
        port.parse()
            .with_context(|| format!("the S3 server's port in {reply:?}"))
    }

    /// Waits until ListBuckets answers 200, within [`READY_TIMEOUT`].
    fn wait_until_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the S3 server exited with {status}; log {}:\n{}",
                    self.log_path().display(),
                    self.log_tail()
                );
            }
            let error = match probe(self.port) {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                return Err(error.context(format!(
                    "the S3 server on port {} did not answer within {READY_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.log_tail()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .with_context(|| format!("running kill -{signal}"))?;
        ensure!(status.success(), "kill -{signal} failed with {status}");
        Ok(())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // SIGKILL: there is nothing to flush, and it also ends a paused process.
        let _ = self.child.kill();
        let _ = self.child.wait();

        if thread::panicking() {
            // The test failed: keep the log and show its end next to the panic message.
            self.dir.disable_cleanup(true);
            eprintln!(
                "S3 server log kept at {}; last lines:\n{}",
                self.log_path().display(),
                self.log_tail()
            );
        }
    }
}

/// One HTTP response, read to the end.
#[derive(Debug)]
pub struct S3Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl S3Response {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The user metadata: `x-amz-meta-NAME` headers by NAME.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        self.headers
            .iter()
            .filter_map(|(name, value)| {
                let name = name.as_str().strip_prefix("x-amz-meta-")?;
                Some((name.to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect()
    }

    /// The text of every `<tag>…</tag>` element of an XML body, unescaped. Enough for
    /// S3's flat responses (keys, upload ids, error codes); not an XML parser.
    pub fn xml_texts(&self, tag: &str) -> Vec<String> {
        let body = String::from_utf8_lossy(&self.body);
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let mut out = Vec::new();
        let mut rest = body.as_ref();
        while let Some(start) = rest.find(&open) {
            rest = &rest[start + open.len()..];
            let Some(end) = rest.find(&close) else { break };
            out.push(unescape_xml(&rest[..end]));
            rest = &rest[end + close.len()..];
        }
        out
    }

    /// The text of the first `<tag>` element.
    pub fn xml_text(&self, tag: &str) -> Option<String> {
        self.xml_texts(tag).into_iter().next()
    }

    /// Fails unless the status is 2xx, with the body (S3's error XML) in the message.
    pub fn ensure_success(self, what: &str) -> Result<S3Response> {
        ensure!(
            (200..300).contains(&self.status),
            "{what}: HTTP {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        Ok(self)
    }
}

/// S3's REST API over plain HTTP (`reqwest`), path style, for tests to set up buckets and
/// look at what a store wrote without the SDK under test.
#[derive(Clone)]
pub struct S3Rest {
    http: reqwest::Client,
    endpoint: String,
}

impl S3Rest {
    fn new(endpoint: String, timeout: Duration) -> S3Rest {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("a reqwest client");
        S3Rest { http, endpoint }
    }

    /// The same endpoint with another whole-request timeout.
    pub fn with_timeout(&self, timeout: Duration) -> S3Rest {
        S3Rest::new(self.endpoint.clone(), timeout)
    }

    /// Sends one request to `path_and_query` (already encoded, e.g. from [`object_path`])
    /// and reads the whole response. Transport errors are returned as `reqwest` errors so
    /// tests can tell a timeout (`is_timeout`) from a refused connection (`is_connect`).
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::Result<S3Response> {
        let mut request = self
            .http
            .request(method, format!("{}{path_and_query}", self.endpoint))
            .header("authorization", AUTHORIZATION);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.body(body).send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(S3Response {
            status,
            headers,
            body,
        })
    }

    /// Creates `bucket` in [`REGION`].
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.send(Method::PUT, &bucket_path(bucket), &[], Vec::new())
            .await?
            .ensure_success(&format!("creating bucket {bucket}"))?;
        Ok(())
    }

    /// Creates `bucket` with Object Lock enabled (which also turns versioning on).
    pub async fn create_bucket_with_object_lock(&self, bucket: &str) -> Result<()> {
        self.send(
            Method::PUT,
            &bucket_path(bucket),
            &[("x-amz-bucket-object-lock-enabled", "true")],
            Vec::new(),
        )
        .await?
        .ensure_success(&format!("creating bucket {bucket} with object lock"))?;
        Ok(())
    }

    /// PutObject with extra `headers` (metadata, SSE, retention…); `Content-Type`
    /// defaults to `application/octet-stream`. Fails unless it succeeds.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Result<S3Response> {
        let mut all = headers.to_vec();
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            all.push(("content-type", "application/octet-stream"));
        }
        self.send(Method::PUT, &object_path(bucket, key), &all, body)
            .await?
            .ensure_success(&format!("putting {bucket}/{key}"))
    }

    /// GetObject with `x-amz-checksum-mode: ENABLED` (so stored checksums come back as
    /// headers); `None` if there is no such key.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<S3Response>> {
        let response = self
            .send(
                Method::GET,
                &object_path(bucket, key),
                &[("x-amz-checksum-mode", "ENABLED")],
                Vec::new(),
            )
            .await?;
        if response.status == 404 {
            return Ok(None);
        }
        response
            .ensure_success(&format!("getting {bucket}/{key}"))
            .map(Some)
    }

    /// Every key in `bucket` that starts with `prefix`, in order (ListObjectsV2, all
    /// pages).
    pub async fn list_keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!(
                "{}?list-type=2&prefix={}",
                bucket_path(bucket),
                encode(prefix)
            );
            if let Some(token) = &token {
                path.push_str(&format!("&continuation-token={}", encode(token)));
            }
            let page = self
                .send(Method::GET, &path, &[], Vec::new())
                .await?
                .ensure_success(&format!("listing {bucket}"))?;
            keys.extend(page.xml_texts("Key"));
            if page.xml_text("IsTruncated").as_deref() != Some("true") {
                return Ok(keys);
            }
            token = Some(
                page.xml_text("NextContinuationToken")
                    .context("a truncated listing without NextContinuationToken")?,
            );
        }
    }
}

/// `/bucket`.
pub fn bucket_path(bucket: &str) -> String {
    format!("/{}", encode(bucket))
}

/// `/bucket/key`, with the key percent-encoded except for its `/` separators.
pub fn object_path(bucket: &str, key: &str) -> String {
    let key: Vec<String> = key.split('/').map(encode).collect();
    format!("/{}/{}", encode(bucket), key.join("/"))
}

/// Percent-encodes everything but S3's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn unescape_xml(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// One ListBuckets request over a raw socket (no async runtime needed): Ok on HTTP 200.
fn probe(port: u16) -> Result<()> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, PROBE_TIMEOUT)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {address}\r\nAuthorization: {AUTHORIZATION}\r\n\
         Connection: close\r\n\r\n"
    )?;
    let mut status = String::new();
    BufReader::new(stream).read_line(&mut status)?;
    ensure!(
        status.starts_with("HTTP/1.1 200"),
        "ListBuckets answered {:?}",
        status.trim_end()
    );
    Ok(())
}

/// `TEST_PYTHON`, else the venv `./dev test` creates at `~/.cache/credstream/venv`.
fn python() -> Result<PathBuf> {
    let path = match env::var_os("TEST_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env::var_os("HOME").context("HOME is not set")?)
            .join(".cache/credstream/venv/bin/python"),
    };
    ensure!(
        path.exists(),
        "{} is missing: create the venv with `python3 -m venv ~/.cache/credstream/venv` and \
         install moto with `~/.cache/credstream/venv/bin/pip install \"moto[server]=={MOTO_VERSION}\"`",
        path.display()
    );
    Ok(path)
}

/// Opens (appending) the server log and records the command that follows.
fn open_log(path: &Path, command: &Command) -> Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "--- credstream test support: {command:?}")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(file)
}

/// Standard base64 with padding, as S3 writes checksums (`x-amz-checksum-sha256`).
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
