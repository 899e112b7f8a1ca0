//! The command line's comforts, as real processes: `gen` with its progress bar (same bytes,
//! a summary when standard error is not a terminal), `query` against a serving demo (the
//! same answers as paging by hand, the API's errors and exit codes, the bearer token),
//! `backfill` (a dry run, then files through the demo's mock cluster into its ledger) and
//! `replay --quarantined --wait`.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use sha2::Digest;

fn credstream() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_credstream"));
    // The tests name the API and token explicitly.
    command
        .env_remove("CREDSTREAM_API")
        .env_remove("CREDSTREAM_TOKEN");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `credstream args…` to completion; fails with its output unless it exited with `code`.
fn run_expecting(code: i32, args: &[&str]) -> Result<Output> {
    let out = credstream().args(args).output()?;
    ensure!(
        out.status.code() == Some(code),
        "credstream {args:?} exited with {:?}, not {code}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    Ok(out)
}

fn json_lines(out: &Output) -> Result<Vec<Value>> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn gen_writes_the_same_bytes_under_its_progress_bar_and_prints_a_summary() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // More than the 100 000 records between two progress reports, so the bar moves.
    let generate = |out: &str| -> Result<Output> {
        run_expecting(
            0,
            &[
                "gen",
                "transactions",
                "--records",
                "250000",
                "--seed",
                "7",
                "--out",
                out,
            ],
        )
    };
    let a = dir.path().join("postings_2026-10-15_01.dat");
    let b = dir.path().join("again.dat");
    let out_a = generate(a.to_str().unwrap())?;
    generate(b.to_str().unwrap())?;
    let to_stdout = generate("-")?;
    let bytes = std::fs::read(&a)?;
    ensure!(
        bytes == std::fs::read(&b)?,
        "the same seed gave different bytes"
    );
    ensure!(
        bytes == to_stdout.stdout,
        "standard output differs from the file"
    );
    // Header, 250 000 details and a trailer, 160 bytes each plus the line end.
    ensure!(bytes.len() == 250_002 * 161, "{} bytes", bytes.len());

    // Standard error is a pipe here: no bar drawn, and the summary names the totals.
    let err = text(&out_a.stderr);
    ensure!(
        !err.contains('\x1b') && !err.contains('\r'),
        "terminal codes on a pipe: {err:?}"
    );
    let expected = format!(
        "gen transactions: 250000 records, {} bytes to {}",
        bytes.len(),
        a.display()
    );
    ensure!(err.contains(&expected), "no {expected:?} in {err:?}");
    ensure!(
        text(&to_stdout.stderr).contains(&format!(
            "250000 records, {} bytes to standard output",
            bytes.len()
        )),
        "{}",
        text(&to_stdout.stderr)
    );
    ensure!(
        !err.contains("of 250000 records"),
        "the old progress lines are back: {err}"
    );

    // A month: a spinner, the files on standard output as before, and its totals.
    let month = run_expecting(
        0,
        &[
            "gen",
            "month",
            "--out",
            dir.path().to_str().unwrap(),
            "--client",
            "acme",
            "--accounts",
            "30",
            "--postings-per-day",
            "10",
        ],
    )?;
    let files: Vec<String> = text(&month.stdout).lines().map(String::from).collect();
    ensure!(files.len() >= 33, "{files:?}");
    for f in &files {
        ensure!(Path::new(f).is_file(), "{f} listed but not written");
    }
    let err = text(&month.stderr);
    ensure!(
        err.contains(&format!("in {} files written", files.len())) && !err.contains('\x1b'),
        "{err}"
    );
    Ok(())
}

/// `credstream demo` serving its query API, with what it printed of itself.
struct Demo {
    _process: support::KillOnDrop,
    dir: PathBuf,
    api: String,
    kafka: String,
    registry: String,
}

impl Demo {
    /// Starts the demo in `<dir>/demo` and reads its printed addresses until it serves.
    fn start(dir: &Path) -> Result<Demo> {
        let demo = support::ServingDemo::start(dir)?;
        let missing = || format!("the demo did not print its addresses:\n{}", demo.printed);
        let kafka = demo
            .printed("Kafka (mock cluster):")
            .with_context(missing)?
            .to_string();
        let registry = demo
            .printed("Registry:")
            .with_context(missing)?
            .trim_end_matches("/subjects")
            .to_string();
        Ok(Demo {
            _process: demo.process,
            dir: demo.dir,
            api: demo.api,
            kafka,
            registry,
        })
    }

    /// A configuration for commands run beside the demo: its mock cluster (reachable
    /// from other processes on loopback), its registry and its raw store.
    fn config(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join("beside-the-demo.toml");
        std::fs::write(
            &path,
            format!(
                "[app]\nstate_dir = {:?}\n\n[kafka]\nbootstrap_servers = {:?}\ncreate_topics = false\n\n\
                 [registry]\nurl = {:?}\n\n[raw_store]\npath = {:?}\n",
                dir.join("state"),
                self.kafka,
                self.registry,
                self.dir.join("raw"),
            ),
        )?;
        Ok(path)
    }
}

/// GET `url` as JSON, failing on an error status.
async fn get(url: &str) -> Result<Value> {
    let response = reqwest::get(url).await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(status.is_success(), "GET {url}: {status} {body}");
    Ok(body)
}

/// Every item of `field` at `path` (a query string included), following `next_cursor`
/// by hand.
async fn page_by_hand(api: &str, path: &str, field: &str) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = reqwest::Url::parse(&format!("{api}{path}"))?;
        if let Some(c) = &cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        let page = get(url.as_str()).await?;
        items.extend(page[field].as_array().context("no list")?.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(items),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_answers_as_the_api_does_page_by_page() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let demo = Demo::start(dir.path())?;
    let api = demo.api.as_str();

    // The ledger, five entries a page: every page followed, in key order.
    let by_hand = page_by_hand(api, "/v1/files?limit=5", "files").await?;
    ensure!(by_hand.len() > 10, "{} entries", by_hand.len());
    let jsonl = run_expecting(
        0,
        &[
            "query", "--api", api, "files", "--all", "--limit", "5", "--output", "jsonl",
        ],
    )?;
    ensure!(json_lines(&jsonl)? == by_hand, "query files --all differs");
    ensure!(
        text(&jsonl.stderr).contains(&format!("{} files in all", by_hand.len())),
        "{}",
        text(&jsonl.stderr)
    );
    // Pretty: one document like a page, holding every entry and no cursor.
    let pretty = run_expecting(
        0,
        &["query", "--api", api, "files", "--all", "--limit", "7"],
    )?;
    let doc: Value = serde_json::from_slice(&pretty.stdout)?;
    ensure!(doc["files"].as_array() == Some(&by_hand) && doc["next_cursor"].is_null());
    // Without --all: the first page, and a note that there is more.
    let first = run_expecting(
        0,
        &[
            "query", "--api", api, "files", "--limit", "5", "--output", "jsonl",
        ],
    )?;
    ensure!(json_lines(&first)? == by_hand[..5]);
    ensure!(text(&first.stderr).contains("pass --all"));
    // Filters reach the API.
    let held = run_expecting(
        0,
        &[
            "query",
            "--api",
            api,
            "files",
            "--status",
            "quarantined",
            "--client",
            "acme-bank",
            "--output",
            "jsonl",
        ],
    )?;
    let held = json_lines(&held)?;
    ensure!(
        held == page_by_hand(
            api,
            "/v1/files?status=QUARANTINED&client=acme-bank",
            "files"
        )
        .await?
            && !held.is_empty()
    );

    // A view under a prefix, over several pages of the API's default size.
    let accounts = page_by_hand(api, "/v1/views/accounts?prefix=acme-bank/", "entries").await?;
    ensure!(accounts.len() > 100, "{} accounts", accounts.len());
    let out = run_expecting(
        0,
        &[
            "query",
            "--api",
            api,
            "view",
            "accounts",
            "--prefix",
            "acme-bank/",
            "--all",
            "--output",
            "jsonl",
        ],
    )?;
    ensure!(json_lines(&out)? == accounts, "query view --all differs");
    // One entry by its key, whose `/` is part of the path.
    let key = accounts[0]["key"].as_str().context("an entry key")?;
    let out = run_expecting(0, &["query", "--api", api, "view", "accounts", key])?;
    ensure!(
        serde_json::from_slice::<Value>(&out.stdout)?
            == get(&format!("{api}/v1/views/accounts/{key}")).await?
    );
    let views = run_expecting(0, &["query", "--api", api, "--output", "jsonl", "views"])?;
    ensure!(
        json_lines(&views)?
            == *get(&format!("{api}/v1/views")).await?["views"]
                .as_array()
                .context("views")?
    );

    // The report, exactly as the API gives it.
    let out = run_expecting(
        0,
        &[
            "query",
            "--api",
            api,
            "report",
            "--client",
            "acme-bank",
            "--period",
            "2026-10",
        ],
    )?;
    let report = get(&format!(
        "{api}/v1/reports/reconciliation?client=acme-bank&period=2026-10"
    ))
    .await?;
    ensure!(serde_json::from_slice::<Value>(&out.stdout)? == report);
    ensure!(report["verdict"] == "EXCEPTIONS", "{report}");

    // The API's errors, as it words them, exit code 1; no output.
    let missing = "0".repeat(64);
    let out = run_expecting(1, &["query", "--api", api, "file", &missing])?;
    ensure!(out.stdout.is_empty());
    ensure!(
        text(&out.stderr).contains(&format!("error: not_found: no file with SHA-256 {missing}")),
        "{}",
        text(&out.stderr)
    );
    let out = run_expecting(
        1,
        &[
            "query",
            "--api",
            api,
            "report",
            "--client",
            "acme-bank",
            "--period",
            "October",
        ],
    )?;
    ensure!(
        text(&out.stderr).contains("error: bad_request: "),
        "{}",
        text(&out.stderr)
    );
    let out = run_expecting(1, &["query", "--api", api, "view", "no-such-view"])?;
    ensure!(
        text(&out.stderr).contains("error: not_found: no view"),
        "{}",
        text(&out.stderr)
    );
    Ok(())
}

/// A one-request HTTP server on loopback: answers with `status` and `body`, and hands back
/// the request it received.
fn answer_once(
    status: &str,
    body: &'static str,
) -> Result<(String, std::thread::JoinHandle<String>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    let status = status.to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("a request");
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("the request");
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).expect("the answer");
        String::from_utf8_lossy(&request).into_owned()
    });
    Ok((url, server))
}

#[test]
fn query_sends_the_bearer_token_and_exits_3_when_the_api_is_unavailable() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-token\n")?;
    let (url, server) = answer_once("200 OK", r#"{"views": []}"#)?;
    let args = ["query", "--api", &url, "--token-file"];
    let out = credstream()
        .args(args)
        .arg(&token_file)
        .arg("views")
        .env("CREDSTREAM_TOKEN", "env-token")
        .output()?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    let request = server.join().unwrap().to_ascii_lowercase();
    ensure!(
        request.starts_with("get /v1/views ")
            && request.contains("authorization: bearer file-token\r\n"),
        "{request}"
    );
    // Without a file, the environment's token.
    let (url, server) = answer_once("200 OK", r#"{"views": []}"#)?;
    let out = credstream()
        .args(["query", "--api", &url, "views"])
        .env("CREDSTREAM_TOKEN", "env-token")
        .output()?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    let request = server.join().unwrap().to_ascii_lowercase();
    ensure!(
        request.contains("authorization: bearer env-token\r\n"),
        "{request}"
    );

    // Unavailable (503) or failing (5xx): exit code 3, with the API's words.
    let (url, server) = answer_once(
        "503 Service Unavailable",
        r#"{"error": {"code": "unavailable", "message": "no replica owns partition 2 yet"}}"#,
    )?;
    let out = run_expecting(3, &["query", "--api", &url, "files"])?;
    server.join().unwrap();
    ensure!(
        text(&out.stderr).contains("error: unavailable: no replica owns partition 2 yet"),
        "{}",
        text(&out.stderr)
    );
    // No API at all: exit code 3 too. A bad URL or token file: 2.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}", l.local_addr()?)
    };
    run_expecting(3, &["query", "--api", &closed, "views"])?;
    run_expecting(2, &["query", "--api", "not a url", "views"])?;
    let out = run_expecting(
        2,
        &[
            "query",
            "--api",
            &closed,
            "--token-file",
            dir.path().join("missing").to_str().unwrap(),
            "views",
        ],
    )?;
    ensure!(text(&out.stderr).contains("token file"));
    Ok(())
}

/// A configuration for commands that read it but connect to nothing.
fn offline_config(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("offline.toml");
    std::fs::write(
        &path,
        format!(
            "[app]\nstate_dir = {:?}\n\n[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n\n\
             [registry]\nurl = \"http://127.0.0.1:1\"\n\n[raw_store]\npath = {:?}\n",
            dir.join("state"),
            dir.join("raw"),
        ),
    )?;
    Ok(path)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(path.parent().unwrap())?;
    Ok(std::fs::write(path, bytes)?)
}

#[test]
fn backfill_dry_run_lists_what_it_would_emit_and_reads_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = offline_config(dir.path())?;
    let history = dir.path().join("history");
    run_expecting(
        0,
        &[
            "gen",
            "month",
            "--out",
            history.to_str().unwrap(),
            "--client",
            "acme",
            "--accounts",
            "20",
            "--postings-per-day",
            "5",
            "--duplicates",
            "1",
        ],
    )?;
    write(&history.join("beta/2026/accounts_2026-10.csv"), b"beta")?;
    write(&history.join("beta/upload.csv.filepart"), b"partial")?;
    write(&history.join("beta/.hidden.csv"), b"hidden")?;
    std::os::unix::fs::symlink("/etc/hostname", history.join("beta/linked.csv"))?;

    let out = run_expecting(
        0,
        &[
            "backfill",
            "--config",
            config.to_str().unwrap(),
            "--dir",
            history.to_str().unwrap(),
            "--dry-run",
        ],
    )?;
    let listed = json_lines(&out)?;
    // Every file written, in path order, with its client and size; nothing else.
    let mut expected: Vec<(String, String, u64)> = Vec::new();
    let mut stack = vec![history.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let rel = path.strip_prefix(&history)?.to_str().unwrap().to_string();
            let name = path.file_name().unwrap().to_str().unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && !name.starts_with('.') && !name.ends_with(".filepart") {
                let client = rel.split('/').next().unwrap().to_string();
                expected.push((client, rel, meta.len()));
            }
        }
    }
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    let got: Vec<(String, String, u64)> = listed
        .iter()
        .map(|v| {
            (
                v["client_id"].as_str().unwrap_or_default().to_string(),
                v["path"].as_str().unwrap_or_default().to_string(),
                v["size"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    ensure!(got == expected, "listed {got:#?}\nexpected {expected:#?}");
    // Resent duplicates are listed like any file: the topology makes them DUPLICATE entries.
    ensure!(
        got.iter().any(|f| f.1.starts_with("acme/resent/")),
        "{got:?}"
    );
    let err = text(&out.stderr);
    let bytes: u64 = expected.iter().map(|f| f.2).sum();
    ensure!(
        err.contains(&format!(
            "backfill (dry run): {} files ({bytes} bytes) would be archived and emitted to credstream.file-arrivals for clients acme and beta; 1 name refused (symlink: 1",
            expected.len()
        )),
        "{err}"
    );
    ensure!(
        err.contains("linked.csv"),
        "the refused name is not named: {err}"
    );
    ensure!(
        !dir.path().join("raw").exists() && !dir.path().join("state").exists(),
        "a dry run wrote something"
    );

    // A flat directory: refused without --client, listed under it with it.
    let flat = history.join("acme");
    let out = run_expecting(
        2,
        &[
            "backfill",
            "--config",
            config.to_str().unwrap(),
            "--dir",
            flat.to_str().unwrap(),
            "--dry-run",
        ],
    )?;
    ensure!(
        text(&out.stderr).contains("belong to no client") && text(&out.stderr).contains("--client"),
        "{}",
        text(&out.stderr)
    );
    let out = run_expecting(
        0,
        &[
            "backfill",
            "--config",
            config.to_str().unwrap(),
            "--dir",
            flat.to_str().unwrap(),
            "--client",
            "acme",
            "--dry-run",
        ],
    )?;
    let flat_listed = json_lines(&out)?;
    ensure!(flat_listed.len() == expected.iter().filter(|f| f.0 == "acme").count());
    for v in &flat_listed {
        let path = v["path"].as_str().unwrap_or_default();
        ensure!(
            v["client_id"] == "acme" && !path.starts_with("acme/") && flat.join(path).is_file(),
            "{v}"
        );
    }
    Ok(())
}

#[test]
fn the_api_variables_are_not_taken_for_configuration_keys() -> Result<()> {
    // `CREDSTREAM_API` and `CREDSTREAM_TOKEN` share the configuration's variable prefix;
    // a command that reads both must not refuse them as unknown keys.
    let dir = tempfile::tempdir()?;
    let config = offline_config(dir.path())?;
    write(&dir.path().join("history/acme/a.csv"), b"a")?;
    let out = credstream()
        .args(["backfill", "--dry-run", "--config"])
        .arg(&config)
        .arg("--dir")
        .arg(dir.path().join("history"))
        .env("CREDSTREAM_API", "http://127.0.0.1:1")
        .env("CREDSTREAM_TOKEN", "t")
        .output()?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    ensure!(json_lines(&out)?.len() == 1);
    Ok(())
}

/// Polls `check` every 200 ms until it gives `Some`, or fails after `timeout` with `what`.
async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let began = Instant::now();
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if began.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ledger entries of the file with `sha256`, once there are `at_least` of them.
async fn arrivals(api: &str, sha256: &str, at_least: usize) -> Result<Vec<Value>> {
    let url = format!("{api}/v1/files/{sha256}");
    wait_for(Duration::from_secs(60), &url, || {
        let url = url.clone();
        async move {
            let response = reqwest::get(&url).await?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let file: Value = response.error_for_status()?.json().await?;
            let arrivals = file["arrivals"].as_array().cloned().unwrap_or_default();
            Ok((arrivals.len() >= at_least).then_some(arrivals))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_and_replay_reach_the_ledger_of_a_running_pipeline() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let demo = Demo::start(dir.path())?;
    let api = demo.api.as_str();
    let config = demo.config(dir.path())?;
    let config = config.to_str().unwrap();

    // History: a new client's accounts, and a file the demo's poller delivered already.
    let history = dir.path().join("history");
    let new_file = history.join("globex/accounts_2026-10.csv");
    std::fs::create_dir_all(new_file.parent().unwrap())?;
    run_expecting(
        0,
        &[
            "gen",
            "accounts",
            "--records",
            "40",
            "--seed",
            "5",
            "--trailer",
            "--out",
            new_file.to_str().unwrap(),
        ],
    )?;
    let old_file = history.join("acme-bank/accounts_2026-09.csv");
    write(
        &old_file,
        &std::fs::read(demo.dir.join("landing/acme-bank/accounts_2026-09.csv"))?,
    )?;
    write(&history.join("globex/half.csv.part"), b"still uploading")?;
    let new_sha = sha256_hex(&std::fs::read(&new_file)?);
    let old_sha = sha256_hex(&std::fs::read(&old_file)?);
    let raw_object = |sha: &str| demo.dir.join(format!("raw/sha256/{}/{sha}", &sha[..2]));
    ensure!(raw_object(&old_sha).is_file() && !raw_object(&new_sha).exists());

    let out = run_expecting(
        0,
        &[
            "backfill",
            "--config",
            config,
            "--dir",
            history.to_str().unwrap(),
        ],
    )?;
    let emitted = json_lines(&out)?;
    let summary: Vec<(&str, &str, &str)> = emitted
        .iter()
        .map(|v| {
            (
                v["client_id"].as_str().unwrap_or_default(),
                v["path"].as_str().unwrap_or_default(),
                v["sha256"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    ensure!(
        summary
            == [
                (
                    "acme-bank",
                    "acme-bank/accounts_2026-09.csv",
                    old_sha.as_str()
                ),
                ("globex", "globex/accounts_2026-10.csv", new_sha.as_str()),
            ],
        "{summary:?}"
    );
    ensure!(
        text(&out.stderr).contains("backfill: 2 files (")
            && text(&out.stderr)
                .contains("emitted to credstream.file-arrivals for clients acme-bank and globex"),
        "{}",
        text(&out.stderr)
    );
    // The bytes are in the raw store, as they were read.
    ensure!(std::fs::read(raw_object(&new_sha))? == std::fs::read(&new_file)?);

    // The topology took both: the new file processed under its client, the old one a
    // duplicate of the poller's delivery, counted once.
    let new_entries = arrivals(api, &new_sha, 1).await?;
    ensure!(new_entries.len() == 1, "{new_entries:?}");
    let entry = &new_entries[0];
    ensure!(
        entry["status"] == "PROCESSED"
            && entry["client_id"] == "globex"
            && entry["file_path"] == "globex/accounts_2026-10.csv"
            && entry["records_in"] == 40
            && entry["records_out"] == 40,
        "{entry}"
    );
    let old_entries = arrivals(api, &old_sha, 2).await?;
    let statuses: Vec<&str> = old_entries
        .iter()
        .filter_map(|e| e["status"].as_str())
        .collect();
    ensure!(
        statuses.iter().filter(|s| **s == "DUPLICATE").count() == 1 && statuses.len() == 2,
        "{old_entries:?}"
    );

    // Replay the client's quarantined files and wait for the topology's verdicts (the
    // layouts did not change, so they stay quarantined).
    let quarantined = page_by_hand(
        api,
        "/v1/files?client=acme-bank&status=QUARANTINED",
        "files",
    )
    .await?;
    let mut held: Vec<String> = quarantined
        .iter()
        .filter_map(|e| e["file_sha256"].as_str().map(String::from))
        .collect();
    held.sort();
    held.dedup();
    ensure!(!held.is_empty());
    let out = run_expecting(
        0,
        &[
            "replay",
            "--config",
            config,
            "--quarantined",
            "--client",
            "acme-bank",
            "--api",
            api,
            "--wait",
            "--timeout",
            "2m",
        ],
    )?;
    let stdout = text(&out.stdout);
    let requested = stdout
        .lines()
        .filter(|l| l.starts_with("replay requested: "))
        .count();
    let replayed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("replayed: "))
        .collect();
    ensure!(
        requested == held.len() && replayed.len() == held.len(),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    for line in &replayed {
        ensure!(line.contains(": QUARANTINED, "), "{line}");
    }
    for sha in &held {
        let entries = arrivals(api, sha, 2).await?;
        ensure!(
            entries.iter().any(|e| !e["replay_of"].is_null()),
            "no replay entry for {sha}: {entries:?}"
        );
    }

    // A digest the raw store does not hold: refused before anything is sent.
    let out = run_expecting(
        1,
        &["replay", "--config", config, "--file", &"0".repeat(64)],
    )?;
    ensure!(out.stdout.is_empty(), "{}", text(&out.stdout));
    ensure!(
        text(&out.stderr).contains("missing"),
        "{}",
        text(&out.stderr)
    );
    Ok(())
}
