//! The walking skeleton end to end, against a separate Tansu broker process, the
//! `credstream registry` process and `credstream run` processes.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use apache_avro::types::Value;
use serde_json::Value as Json;
use support::{Credstream, decode_all, field, free_port, get_json, read_topic, unique, wait_for};

use credstream::samples::account_master_csv;

/// Everything one scenario runs: broker, registry and the pipeline's configuration.
struct Scenario {
    dir: tempfile::TempDir,
    tansu: support::tansu::Tansu,
    _registry: Credstream,
    registry_url: String,
    config: PathBuf,
    query: String,
    prefix: String,
    app_id: String,
    pipeline: Option<Credstream>,
    runs: usize,
}

impl Scenario {
    async fn new() -> Result<Scenario> {
        let dir = support::test_dir()?;
        let tansu = support::tansu::Tansu::start()?;
        let (registry, registry_url) = support::start_registry(dir.path()).await?;
        let prefix = unique("t") + ".";
        let app_id = unique("app-");
        let port = free_port();
        let root = dir.path();
        std::fs::create_dir_all(root.join("landing/acme-bank"))?;
        let config = root.join("credstream.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[app]
id = "{app_id}"
state_dir = "{state}"

[kafka]
bootstrap_servers = "{bootstrap}"
topic_prefix = "{prefix}"
partitions = 3
session_timeout_ms = 6000

# Tansu 0.6.0 mis-indexes multi-record batches (see tests/support/tansu.rs), and makes
# every fetch wait its full maximum.
[kafka.properties]
"batch.num.messages" = "1"
"fetch.wait.max.ms" = "50"

[registry]
url = "{registry_url}"

[raw_store]
path = "{raw}"

[sources.landing]
kind = "local"
path = "{landing}"
poll_interval_ms = 200

[query]
listen = "127.0.0.1:{port}"
"#,
                state = root.join("state").display(),
                bootstrap = tansu.bootstrap(),
                raw = root.join("raw").display(),
                landing = root.join("landing").display(),
            ),
        )?;
        Ok(Scenario {
            dir,
            tansu,
            _registry: registry,
            registry_url,
            config,
            query: format!("http://127.0.0.1:{port}"),
            prefix,
            app_id,
            pipeline: None,
            runs: 0,
        })
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `credstream run` and waits until it is ready.
    async fn start(&mut self) -> Result<()> {
        self.runs += 1;
        let log = self.root().join(format!("run-{}.log", self.runs));
        let config = self.config.display().to_string();
        let mut process = Credstream::spawn(&["run", "--config", &config], &log)?;
        let ready = format!("{}/readyz", self.query);
        let result = wait_for(Duration::from_secs(90), "credstream to be ready", || {
            let url = ready.clone();
            async move { get_json(&url).await.filter(|(s, _)| *s == 200) }
        })
        .await;
        if let Err(e) = result {
            process.check_alive()?;
            return Err(e.context(process.log_tail()));
        }
        self.pipeline = Some(process);
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut p) = self.pipeline.take() {
            p.kill9();
        }
    }

    /// Drops a file into the landing area the way an uploader does: write, then rename.
    fn drop_file(&self, path: &str, text: &str) -> Result<()> {
        let target = self.root().join("landing").join(path);
        std::fs::create_dir_all(target.parent().unwrap())?;
        let tmp = target.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &target)?;
        Ok(())
    }

    /// Waits until the ledger lists `n` arrivals; returns them by file path.
    async fn wait_files(&mut self, n: usize) -> Result<BTreeMap<String, Json>> {
        let url = format!("{}/v1/files", self.query);
        let result = wait_for(
            Duration::from_secs(60),
            &format!("{n} ledger entries"),
            || {
                let url = url.clone();
                async move {
                    let (status, body) = get_json(&url).await?;
                    let files = body["files"].as_array()?.clone();
                    (status == 200 && files.len() >= n).then_some(files)
                }
            },
        )
        .await;
        let files = match result {
            Ok(f) => f,
            Err(e) => {
                let tail = self
                    .pipeline
                    .as_ref()
                    .map(Credstream::log_tail)
                    .unwrap_or_default();
                return Err(e.context(tail));
            }
        };
        ensure!(
            files.len() == n,
            "expected {n} ledger entries, got {files:#?}"
        );
        Ok(files
            .into_iter()
            .map(|f| (f["file_path"].as_str().unwrap().to_string(), f))
            .collect())
    }

    fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// The expected decimal text of an Avro decimal with scale 2.
fn decimal_text(v: &Value) -> String {
    let Value::Decimal(d) = v else {
        panic!("not a decimal: {v:?}")
    };
    let bytes: Vec<u8> = Vec::<u8>::try_from(d.clone()).unwrap();
    let mut full = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        [0xFF; 16]
    } else {
        [0; 16]
    };
    full[16 - bytes.len()..].copy_from_slice(&bytes);
    let unscaled = i128::from_be_bytes(full);
    let sign = if unscaled < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", unscaled.abs() / 100, unscaled.abs() % 100)
}

/// Checks the output topic holds exactly `csv`'s rows, once each, under distinct keys.
async fn assert_output_is(s: &Scenario, csv: &str, sha256: &str) -> Result<()> {
    let records = read_topic(&s.tansu.bootstrap(), &s.topic("card.accounts"))?;
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    ensure!(
        records.len() == rows.len(),
        "the output topic has {} records; the clean file has {} rows",
        records.len(),
        rows.len()
    );
    let keys: HashSet<&[u8]> = records.iter().map(|(k, _)| k.as_slice()).collect();
    ensure!(
        keys.len() == rows.len(),
        "output keys repeat: a record was produced twice"
    );
    let values: Vec<Option<Vec<u8>>> = records.iter().map(|(_, v)| v.clone()).collect();
    let decoded = decode_all(&s.registry_url, &values).await?;
    let by_ref: BTreeMap<String, &Value> = decoded
        .iter()
        .map(|r| match field(r, "ReferenceNumber") {
            Value::String(s) => (s.clone(), r),
            other => panic!("ReferenceNumber is {other:?}"),
        })
        .collect();
    for (index, row) in rows.iter().enumerate() {
        let record = by_ref
            .get(row[0])
            .with_context(|| format!("row {} is not in the output", row[0]))?;
        ensure!(field(record, "CustomerId") == &Value::String(row[1].into()));
        ensure!(
            decimal_text(field(record, "CycleEndingBalance")) == row[11],
            "balance of {}",
            row[0]
        );
        ensure!(field(record, "DaysPastDue") == &Value::Int(row[15].parse()?));
        let cycle = chrono::NaiveDate::parse_from_str(row[7], "%Y-%m-%d")?;
        let days = (cycle - chrono::NaiveDate::default()).num_days() as i32;
        ensure!(field(record, "AccountCycleDate") == &Value::Date(days));
        let provenance = field(record, "provenance");
        ensure!(field(provenance, "file_sha256") == &Value::String(sha256.into()));
        ensure!(field(provenance, "record_index") == &Value::Long(index as i64));
        ensure!(field(provenance, "line") == &Value::Long(index as i64 + 2));
    }
    Ok(())
}

/// Checks the quarantine topic holds the drifted file, held whole, with its reason.
async fn assert_quarantine_holds_drift(s: &Scenario, records: i64) -> Result<()> {
    let held = read_topic(&s.tansu.bootstrap(), &s.topic("quarantine"))?;
    ensure!(
        held.len() == 1,
        "expected one quarantine record, got {}",
        held.len()
    );
    let values: Vec<Option<Vec<u8>>> = held.iter().map(|(_, v)| v.clone()).collect();
    let decoded = decode_all(&s.registry_url, &values).await?;
    let q = &decoded[0];
    ensure!(field(q, "scope") == &Value::Enum(0, "FILE".into()), "{q:?}");
    ensure!(
        field(q, "class") == &Value::String("EXTRA_COLUMN".into()),
        "{q:?}"
    );
    ensure!(
        field(q, "field") == &Value::Union(1, Box::new(Value::String("PromotionalApr".into())))
    );
    ensure!(field(q, "records_affected") == &Value::Long(records));
    Ok(())
}

fn sha256(text: &str) -> String {
    credstream::rawstore::sha256_hex(text.as_bytes())
}

fn assert_ledger(files: &BTreeMap<String, Json>, clean: &str, drifted: &str) -> Result<()> {
    let first = &files["acme-bank/accounts_2026-10.csv"];
    ensure!(first["status"] == "PROCESSED", "{first}");
    ensure!(
        first["records_in"] == 300
            && first["records_out"] == 300
            && first["records_quarantined"] == 0,
        "{first}"
    );
    ensure!(first["file_sha256"] == sha256(clean).as_str());
    ensure!(first["category"] == "card.accounts");
    let dup = &files["acme-bank/resent/accounts_2026-10.csv"];
    ensure!(dup["status"] == "DUPLICATE", "{dup}");
    ensure!(dup["duplicate_of"] == first["arrival_id"], "{dup}");
    ensure!(dup["records_out"] == 0);
    let drift = &files["acme-bank/accounts_2026-11.csv"];
    ensure!(drift["status"] == "QUARANTINED", "{drift}");
    ensure!(drift["file_sha256"] == sha256(drifted).as_str());
    ensure!(
        drift["records_in"] == 120
            && drift["records_quarantined"] == 120
            && drift["records_out"] == 0,
        "{drift}"
    );
    ensure!(
        drift["reason"]
            .as_str()
            .unwrap()
            .starts_with("EXTRA_COLUMN"),
        "{drift}"
    );
    Ok(())
}

const CLEAN_ROWS: usize = 300;
const DRIFT_ROWS: usize = 120;

fn samples() -> (String, String) {
    (
        account_master_csv(CLEAN_ROWS, 11, "2026-10-31", &[]),
        account_master_csv(DRIFT_ROWS, 12, "2026-11-30", &["PromotionalApr"]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_duplicate_and_drifted_files_land_where_they_belong() -> Result<()> {
    let mut s = Scenario::new().await?;
    let (clean, drifted) = samples();
    s.start().await?;
    s.drop_file("acme-bank/accounts_2026-10.csv", &clean)?;
    s.wait_files(1).await?;
    s.drop_file("acme-bank/resent/accounts_2026-10.csv", &clean)?;
    s.wait_files(2).await?;
    s.drop_file("acme-bank/accounts_2026-11.csv", &drifted)?;
    let files = s.wait_files(3).await?;

    assert_ledger(&files, &clean, &drifted)?;
    assert_output_is(&s, &clean, &sha256(&clean)).await?;
    assert_quarantine_holds_drift(&s, DRIFT_ROWS as i64).await?;

    // One file's arrivals by its digest.
    let (status, one) = get_json(&format!("{}/v1/files/{}", s.query, sha256(&clean)))
        .await
        .unwrap();
    ensure!(
        status == 200 && one["arrivals"].as_array().unwrap().len() == 2,
        "{one}"
    );
    let (status, _) = get_json(&format!("{}/v1/files/{}", s.query, "0".repeat(64)))
        .await
        .unwrap();
    ensure!(status == 404);

    // The metrics count what happened.
    let metrics = reqwest::get(format!("{}/metrics", s.query))
        .await?
        .text()
        .await?;
    for line in [
        "credstream_files_duplicate_total{client=\"acme-bank\"} 1",
        "credstream_records_out_total{client=\"acme-bank\",category=\"card.accounts\"} 300",
        "credstream_records_quarantined_total{client=\"acme-bank\",category=\"card.accounts\",class=\"EXTRA_COLUMN\"} 120",
    ] {
        ensure!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    // The ledger topic carries the same three entries, decodable by a stock client.
    let ledger = read_topic(&s.tansu.bootstrap(), &s.topic("file-ledger"))?;
    ensure!(
        ledger.len() == 3,
        "file-ledger has {} records",
        ledger.len()
    );
    decode_all(
        &s.registry_url,
        &ledger.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_files_restores_state_from_the_changelog() -> Result<()> {
    let mut s = Scenario::new().await?;
    let (clean, drifted) = samples();

    s.start().await?;
    s.drop_file("acme-bank/accounts_2026-10.csv", &clean)?;
    s.wait_files(1).await?;
    s.kill9();

    // The stores are gone entirely: only the changelog can bring the ledger and the dedup
    // state back. (The poller's own state is kept: it is not a changelogged store.)
    std::fs::remove_dir_all(s.root().join("state").join(&s.app_id))?;
    s.start().await?;
    let restored = s.wait_files(1).await?;
    ensure!(restored["acme-bank/accounts_2026-10.csv"]["status"] == "PROCESSED");
    let metrics = reqwest::get(format!("{}/metrics", s.query))
        .await?
        .text()
        .await?;
    ensure!(
        metrics
            .lines()
            .any(|l| l.starts_with("credstream_restore_records_total{store=\"dedup\"}")),
        "no restore was counted:\n{metrics}"
    );

    // The duplicate is recognised by restored dedup state: nothing is produced again.
    s.drop_file("acme-bank/resent/accounts_2026-10.csv", &clean)?;
    s.wait_files(2).await?;
    s.kill9();

    s.start().await?;
    s.drop_file("acme-bank/accounts_2026-11.csv", &drifted)?;
    let files = s.wait_files(3).await?;

    assert_ledger(&files, &clean, &drifted)?;
    assert_output_is(&s, &clean, &sha256(&clean)).await?;
    assert_quarantine_holds_drift(&s, DRIFT_ROWS as i64).await?;
    Ok(())
}
