//! The command line: the demo (no outside service, clean second start, serving until
//! Ctrl-C), and clear refusals of bad configuration.

mod support;

use std::process::Command;
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
        let expect = |path: &str, cells: [&str; 4]| -> Result<Vec<&str>> {
            let l = line(path);
            ensure!(l[1..5] == cells, "{path}: {l:?}");
            Ok(l)
        };
        expect(
            "acme-bank/accounts_2026-09.csv",
            ["PROCESSED", "500", "500", "0"],
        )?;
        expect(
            "acme-bank/accounts_2026-10.csv",
            ["PROCESSED", "500", "500", "0"],
        )?;
        expect(
            "acme-bank/metro2_2026-10.dat",
            ["PROCESSED", "500", "500", "0"],
        )?;
        expect(
            "acme-bank/postings_2026-10-01_01.dat",
            ["PROCESSED", "200", "200", "0"],
        )?;
        // Day 5 was corrected: the first version is superseded by the second.
        expect(
            "acme-bank/postings_2026-10-05_01.dat",
            ["SUPERSEDED", "200", "200", "0"],
        )?;
        let fix = expect(
            "acme-bank/corrections/postings_2026-10-05_01.dat",
            ["PROCESSED", "199", "199", "0"],
        )?;
        ensure!(fix[5] == "correction:", "{fix:?}");
        // Day 12's trailer does not add up: held whole.
        let held = expect(
            "acme-bank/postings_2026-10-12_01.dat",
            ["QUARANTINED", "200", "0", "200"],
        )?;
        ensure!(held[5].starts_with("TRAILER_MISMATCH"), "{held:?}");
        let drift = expect(
            "acme-bank/accounts_extract.csv",
            ["QUARANTINED", "250", "0", "250"],
        )?;
        ensure!(drift[5].starts_with("EXTRA_COLUMN"), "{drift:?}");
        let dup = text
            .lines()
            .find(|l| l.starts_with("acme-bank/resent/"))
            .context("no resent file")?;
        ensure!(dup.split_whitespace().nth(1) == Some("DUPLICATE"), "{dup}");
        ensure!(
            text.contains("37 files; 7699 records out; 450 records quarantined"),
            "{text}"
        );
        ensure!(
            text.contains("Reconciliation of acme-bank for 2026-10: EXCEPTIONS")
                && text.contains("The report found exactly the"),
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

/// Starts `credstream demo` serving its API on a free port; returns the process and the
/// API's base URL once it says it is serving.
fn serving_demo(dir: &std::path::Path) -> Result<(support::KillOnDrop, String)> {
    let demo = support::ServingDemo::start(dir)?;
    Ok((demo.process, demo.api))
}

#[test]
fn schemathesis_finds_no_server_error_and_no_departure_from_the_openapi_document() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_demo, api) = serving_demo(dir.path())?;
    // schemathesis (PyPI, pinned in ./dev) generates requests from the document —
    // examples, boundary values, fuzzed strings, chains — and checks each answer.
    let st = support::python()?.with_file_name("st");
    let out = Command::new(&st)
        .args(["run", &format!("{api}/v1/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "50",
            "--seed",
            "1",
        ])
        .env("NO_COLOR", "1")
        // Its cache of crashes goes with the test's directory, not the checkout.
        .current_dir(dir.path())
        .output()
        .with_context(|| format!("running {}", st.display()))?;
    let report = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It did test every operation, and generated a fair number of cases.
    ensure!(report.contains("Tested: 12"), "{report}");
    let generated: u64 = report
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_suffix(" passed")?
                .split(" generated, ")
                .nth(1)?
                .parse()
                .ok()
        })
        .context("no test-case count in the report")?;
    ensure!(generated >= 200, "only {generated} cases:\n{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_the_query_api_and_metrics_until_interrupted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut child, api) = serving_demo(dir.path())?;
    let child = &mut child.0;
    let files: serde_json::Value = reqwest::get(format!("{api}/v1/files"))
        .await?
        .json()
        .await?;
    ensure!(
        files["files"].as_array().map(Vec::len) == Some(37),
        "{files}"
    );
    let report: serde_json::Value = reqwest::get(format!(
        "{api}/v1/reports/reconciliation?client=acme-bank&period=2026-10"
    ))
    .await?
    .json()
    .await?;
    ensure!(report["verdict"] == "EXCEPTIONS", "{report}");
    let views: serde_json::Value = reqwest::get(format!("{api}/v1/views"))
        .await?
        .json()
        .await?;
    ensure!(
        views["views"].as_array().map(Vec::len) == Some(4),
        "{views}"
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
        "Processor: file-processor (stores: [dedup, ledger, versions, accounts, balances, postings, quarantine])",
        "Sink: credstream.card.accounts",
        "Sink: credstream.card.transactions",
        "Sink: credstream.metro2.base",
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

/// Runs `credstream parse` on `path` (with `--category` if given): exit code and lines.
fn parse_lines(
    path: &std::path::Path,
    category: Option<&str>,
) -> Result<(Option<i32>, Vec<serde_json::Value>)> {
    let mut command = credstream();
    command.arg("parse").arg(path);
    if let Some(c) = category {
        command.args(["--category", c]);
    }
    let out = command.output()?;
    let lines = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    Ok((out.status.code(), lines))
}

#[test]
fn every_category_parses_its_generated_files_and_the_reference_files() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let generate = |args: &[&str], name: &str| -> Result<std::path::PathBuf> {
        let path = dir.path().join(name);
        let out = credstream()
            .arg("gen")
            .args(args)
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
    // Daily transactions, fixed width: every record parses and the T record reconciles.
    let postings = generate(
        &[
            "transactions",
            "--records",
            "5000",
            "--seed",
            "4",
            "--day",
            "2026-10-15",
        ],
        "postings_2026-10-15_01.dat",
    )?;
    let (code, lines) = parse_lines(&postings, None)?;
    let verdict = lines.last().context("a verdict")?;
    ensure!(code == Some(0), "{verdict}");
    ensure!(verdict["category"] == "card.transactions" && verdict["records"] == 5000);
    let totals = &verdict["reconciliation"]["totals"];
    ensure!(totals["detail_count"] == "5000", "{verdict}");
    for key in [
        "debit_count",
        "debit_amount",
        "credit_count",
        "credit_amount",
        "net_amount",
    ] {
        ensure!(totals[key].is_string(), "{key} missing in {verdict}");
    }
    // Card numbers only as tokens and display forms.
    let first = &lines[0]["values"];
    ensure!(
        first["CardNumber"]["display"]
            .as_str()
            .is_some_and(|d| d.contains("******"))
    );
    let bad = generate(
        &["transactions", "--records", "100", "--bad-trailer", "sum"],
        "postings_2026-10-16_01.dat",
    )?;
    let (code, lines) = parse_lines(&bad, None)?;
    let verdict = lines.last().context("a verdict")?;
    ensure!(code == Some(4) && verdict["reconciliation"]["class"] == "TRAILER_MISMATCH");
    ensure!(
        verdict["reconciliation"]["field"] == "debit_amount",
        "{verdict}"
    );
    let short = generate(
        &[
            "transactions",
            "--records",
            "100",
            "--bad-record",
            "wrong-length",
        ],
        "postings_2026-10-17_01.dat",
    )?;
    let (code, lines) = parse_lines(&short, None)?;
    ensure!(code == Some(4));
    ensure!(
        lines.iter().filter(|l| l["type"] == "issue").count() == 1
            && lines.iter().any(|l| l["class"] == "WRONG_RECORD_LENGTH"),
        "{lines:?}"
    );
    ensure!(lines.last().unwrap()["reconciliation"]["status"] == "RECONCILED");

    // Metro 2: generated, then the outside references.
    let metro2 = generate(
        &["metro2", "--records", "800", "--seed", "4"],
        "acme_metro2_2026-10.dat",
    )?;
    let (code, lines) = parse_lines(&metro2, None)?;
    let verdict = lines.last().context("a verdict")?;
    ensure!(
        code == Some(0) && verdict["category"] == "metro2.base",
        "{verdict}"
    );
    ensure!(verdict["reconciliation"]["totals"]["total_base_records"] == "800");
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/metro2");
    // moov's variable-length sample states an RDW of 1000 for a 996-byte record: the
    // parser says so (the record is held alone); the fixed-length sample is clean.
    let (code, lines) = parse_lines(
        &data.join("moov_unpacked_variable_file.dat"),
        Some("metro2.base"),
    )?;
    ensure!(code == Some(4) && lines.len() == 2, "{lines:?}");
    ensure!(
        lines[0]["class"] == "MALFORMED"
            && lines[0]["field"] == "record_descriptor_word"
            && lines[0]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("1000"),
        "{lines:?}"
    );
    ensure!(lines[1]["reconciliation"]["status"] == "RECONCILED");
    let name = "moov_unpacked_fixed_file.dat";
    let (code, lines) = parse_lines(&data.join(name), Some("metro2.base"))?;
    let verdict = lines.last().context("a verdict")?;
    ensure!(code == Some(0), "{name}: {lines:?}");
    ensure!(verdict["reconciliation"]["status"] == "RECONCILED" && verdict["records"] == 1);
    // The same values as moov's own JSON of the file.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join(name.replace(".dat", ".json")))?)?;
    let base = &json["data"][0]["base"];
    let record = &lines[0]["values"];
    ensure!(
        record["current_balance"] == base["currentBalance"],
        "{record} vs {base}"
    );
    ensure!(
        record["account_status"] == base["accountStatus"],
        "{record} vs {base}"
    );
    ensure!(record["identification_number"] == base["identificationNumber"]);
    let account = base["consumerAccountNumber"].as_str().context("account")?;
    let display = record["consumer_account_number"]["display"]
        .as_str()
        .context("display")?;
    ensure!(
        display.ends_with(&account[account.len() - 4..]) && !display.contains(account),
        "{display}"
    );
    ensure!(
        record["j1_segments"] == 1 && record["j2_segments"] == 1,
        "{record}"
    );
    // The CFPB's sample is a cut of a 564 618-record file whose trailer it kept: held.
    let (code, lines) = parse_lines(&data.join("cfpb_m2_file_small.txt"), Some("metro2.base"))?;
    let verdict = lines.last().context("a verdict")?;
    ensure!(code == Some(4) && verdict["reconciliation"]["class"] == "TRAILER_MISMATCH");
    ensure!(verdict["reconciliation"]["expected"] == "564618" && verdict["records"] == 3);
    Ok(())
}
