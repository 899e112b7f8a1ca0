//! The command line: the demo (no outside service, clean second start, serving until
//! Ctrl-C), and clear refusals of bad configuration.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

fn credstream() -> Command {
    Command::new(env!("CARGO_BIN_EXE_credstream"))
}

fn demo(dir: &std::path::Path) -> Result<(bool, String)> {
    let out = credstream()
        .args(["demo", "--no-serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .env("CREDSTREAM_LOG", "warn")
        .output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), text))
}

#[test]
fn the_demo_processes_its_samples_twice_in_a_row() -> Result<()> {
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("demo");
    for run in 1..=2 {
        let (ok, text) = demo(&dir)?;
        ensure!(ok, "demo run {run} failed:\n{text}");
        let line = |path: &str| {
            text.lines()
                .find(|l| l.starts_with(path))
                .unwrap_or_else(|| panic!("no summary line for {path} in run {run}:\n{text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        let clean = line("acme-bank/accounts_2026-10.csv");
        ensure!(
            clean[1..5] == ["PROCESSED", "1000", "1000", "0"],
            "{clean:?}"
        );
        let dup = line("acme-bank/resent/accounts_2026-10.csv");
        ensure!(dup[1..5] == ["DUPLICATE", "0", "0", "0"], "{dup:?}");
        let drift = line("acme-bank/accounts_2026-11.csv");
        ensure!(
            drift[1..5] == ["QUARANTINED", "250", "0", "250"],
            "{drift:?}"
        );
        ensure!(drift[5].starts_with("EXTRA_COLUMN"), "{drift:?}");
        ensure!(
            text.contains(
                "3 files; 1000 records out to credstream.card.accounts; 250 records quarantined"
            ),
            "{text}"
        );
    }
    Ok(())
}

#[test]
fn the_demo_refuses_to_empty_a_directory_it_did_not_make() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("precious.txt"), "keep me")?;
    let (ok, text) = demo(dir.path())?;
    ensure!(!ok, "the demo emptied a foreign directory:\n{text}");
    ensure!(text.contains("refusing to empty"), "{text}");
    ensure!(dir.path().join("precious.txt").exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_the_query_api_and_metrics_until_interrupted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut child = credstream()
        .args(["demo", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir.path().join("demo"))
        .env("CREDSTREAM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    // Read the printed URLs until the demo says it is serving.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut api = None;
    for line in lines.by_ref() {
        let line = line?;
        if let Some(url) = line.trim().strip_prefix("Query API:") {
            api = Some(url.trim().trim_end_matches("/v1/files").to_string());
        }
        if line.starts_with("Serving until Ctrl-C") {
            break;
        }
    }
    let api = api.context("the demo printed no query API URL")?;
    let files: serde_json::Value = reqwest::get(format!("{api}/v1/files"))
        .await?
        .json()
        .await?;
    ensure!(
        files["files"].as_array().map(Vec::len) == Some(3),
        "{files}"
    );
    let metrics = reqwest::get(format!("{api}/metrics")).await?.text().await?;
    ensure!(
        metrics.contains("credstream_files_processed_total"),
        "{metrics}"
    );
    let ready = reqwest::get(format!("{api}/readyz")).await?;
    ensure!(ready.status().is_success());

    // Ctrl-C: a clean stop with status 0.
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the demo did not stop on SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ensure!(status.success(), "the demo exited with {status}");
    Ok(())
}

#[test]
fn bad_configuration_is_refused_with_exit_code_2_and_the_reason() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let run = |config: &std::path::Path| -> Result<(Option<i32>, String)> {
        let out = credstream()
            .arg("run")
            .arg("--config")
            .arg(config)
            .output()?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };

    let (code, err) = run(&dir.path().join("missing.toml"))?;
    ensure!(code == Some(2), "{code:?} {err}");
    ensure!(
        err.contains("cannot read configuration file") && err.contains("missing.toml"),
        "{err}"
    );

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[kafka]\nbootstrap_server = \"k:9092\"\n")?;
    let (code, err) = run(&typo)?;
    ensure!(code == Some(2), "{code:?} {err}");
    ensure!(err.contains("bootstrap_server"), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[kafka]\npartitions = 0\n")?;
    let (code, err) = run(&bad)?;
    ensure!(
        code == Some(2) && err.contains("kafka.partitions must be at least 1"),
        "{code:?} {err}"
    );

    // An environment override is validated the same way, and names the key.
    let ok = dir.path().join("ok.toml");
    std::fs::write(&ok, "")?;
    let out = credstream()
        .args(["run", "--config"])
        .arg(&ok)
        .env("CREDSTREAM_KAFKA__PARTITIONS", "many")
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2) && err.to_lowercase().contains("kafka.partitions"),
        "{err}"
    );
    Ok(())
}

#[test]
fn help_lists_every_command() -> Result<()> {
    let out = credstream().arg("--help").output()?;
    ensure!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["run", "demo", "registry", "replay", "parse", "Exit codes"] {
        ensure!(help.contains(command), "--help lacks {command}:\n{help}");
    }
    Ok(())
}

#[test]
fn topology_describe_prints_text_mermaid_and_dot() -> Result<()> {
    let run = |format: &str| -> Result<String> {
        let out = credstream()
            .args(["topology", "describe", "--format", format])
            .output()?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    };
    let text = run("text")?;
    for part in [
        "Source: credstream.file-arrivals",
        "Processor: file-processor (stores: [dedup, ledger])",
        "Sink: credstream.card.accounts",
        "changelog credstream-ledger-changelog, compacted",
    ] {
        ensure!(text.contains(part), "text lacks {part}:\n{text}");
    }
    ensure!(run("mermaid")?.starts_with("flowchart LR"));
    let dot = run("dot")?;
    ensure!(
        dot.starts_with("digraph") && dot.contains("\"credstream-dedup-changelog\""),
        "{dot}"
    );
    Ok(())
}

#[test]
fn parse_prints_records_and_a_verdict_without_any_service() -> Result<()> {
    use credstream::samples::{TrailerFault, account_master_csv_with_trailer, with_bad_trailer};
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("accounts_2026-10.csv");
    std::fs::write(&good, account_master_csv_with_trailer(12, 9, "2026-10-31"))?;
    let out = credstream().arg("parse").arg(&good).output()?;
    ensure!(
        out.status.code() == Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(lines.len() == 13, "{} lines", lines.len());
    ensure!(lines[..12].iter().all(|l| l["type"] == "record"));
    let verdict = &lines[12];
    ensure!(
        verdict["category"] == "card.accounts"
            && verdict["reconciliation"]["status"] == "RECONCILED",
        "{verdict}"
    );

    // A trailer that does not add up: the verdict says so, and the exit code is 4.
    let bad = dir.path().join("accounts_2026-11.csv");
    std::fs::write(
        &bad,
        with_bad_trailer(
            &account_master_csv_with_trailer(12, 9, "2026-11-30"),
            TrailerFault::Sum,
        ),
    )?;
    let out = credstream().arg("parse").arg(&bad).output()?;
    ensure!(out.status.code() == Some(4), "exit {:?}", out.status.code());
    let text = String::from_utf8(out.stdout)?;
    let verdict: serde_json::Value = serde_json::from_str(text.lines().last().unwrap())?;
    ensure!(
        verdict["reconciliation"]["class"] == "TRAILER_MISMATCH",
        "{verdict}"
    );

    // A file no category matches: a usage error naming the way out.
    let odd = dir.path().join("odd.txt");
    std::fs::write(&odd, "x")?;
    let out = credstream().arg("parse").arg(&odd).output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2) && err.contains("--category"),
        "{err}"
    );
    Ok(())
}

#[test]
fn gen_writes_deterministic_files_that_parse_as_declared() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let generate = |name: &str, extra: &[&str]| -> Result<std::path::PathBuf> {
        let path = dir.path().join(name);
        let out = credstream()
            .args(["gen", "accounts", "--records", "3000", "--seed", "11"])
            .args(extra)
            .arg("--out")
            .arg(&path)
            .output()?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(path)
    };
    let verdict = |path: &std::path::Path| -> Result<(Option<i32>, serde_json::Value)> {
        let out = credstream().arg("parse").arg(path).output()?;
        let text = String::from_utf8(out.stdout)?;
        Ok((
            out.status.code(),
            serde_json::from_str(text.lines().last().unwrap_or("null"))?,
        ))
    };
    let a = generate("accounts_a.csv", &["--trailer"])?;
    let b = generate("accounts_b.csv", &["--trailer"])?;
    ensure!(
        std::fs::read(&a)? == std::fs::read(&b)?,
        "the same seed gave different bytes"
    );
    let (code, v) = verdict(&a)?;
    ensure!(
        code == Some(0) && v["records"] == 3000 && v["reconciliation"]["status"] == "RECONCILED",
        "{v}"
    );

    let (code, v) = verdict(&generate("accounts_bad.csv", &["--bad-trailer", "sum"])?)?;
    ensure!(
        code == Some(4) && v["reconciliation"]["class"] == "TRAILER_MISMATCH",
        "{v}"
    );
    let (code, v) = verdict(&generate(
        "accounts_drift.csv",
        &["--extra-column", "PromotionalApr"],
    )?)?;
    ensure!(
        code == Some(4) && v["reconciliation"]["class"] == "EXTRA_COLUMN",
        "{v}"
    );
    Ok(())
}
