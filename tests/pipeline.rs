//! The walking skeleton end to end, against a separate Tansu broker process, the
//! `credstream registry` process and `credstream run` processes.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use apache_avro::types::Value;
use serde_json::Value as Json;
use support::{Credstream, decode_all, field, free_port, get_json, read_topic, unique, wait_for};

use credstream::samples::{
    TrailerFault, account_master_csv, account_master_csv_with_trailer, plant, with_bad_trailer,
};

/// Everything one scenario runs: broker, registry and the pipeline's configuration.
struct Scenario {
    dir: tempfile::TempDir,
    tansu: support::tansu::Tansu,
    registry: Option<Credstream>,
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
        let (registry, registry_url) =
            support::start_registry(dir.path(), &tansu.bootstrap()).await?;
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

{tansu_properties}
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

{tokenisation}
"#,
                tokenisation = support::tokenisation_section(root)?,
                tansu_properties = support::tansu::PIPELINE_PROPERTIES,
                state = root.join("state").display(),
                bootstrap = tansu.bootstrap(),
                raw = root.join("raw").display(),
                landing = root.join("landing").display(),
            ),
        )?;
        Ok(Scenario {
            dir,
            tansu,
            registry: Some(registry),
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
        self.spawn()?;
        self.wait_ready(Duration::from_secs(90)).await
    }

    /// Starts `credstream run` without waiting for it.
    fn spawn(&mut self) -> Result<()> {
        self.runs += 1;
        let log = self.root().join(format!("run-{}.log", self.runs));
        let config = self.config.display().to_string();
        self.pipeline = Some(Credstream::spawn(&["run", "--config", &config], &log)?);
        Ok(())
    }

    /// Waits until the running pipeline is ready.
    async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let mut process = self.pipeline.take().context("no pipeline is running")?;
        let ready = format!("{}/readyz", self.query);
        let result = wait_for(within, "credstream to be ready", || {
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

    /// Restarts the registry where the pipeline expects it; it reads its state back from
    /// `_schemas`.
    async fn restart_registry(&mut self) -> Result<()> {
        let port: u16 = self
            .registry_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("registry port")?;
        let (registry, _) =
            support::start_registry_at(self.dir.path(), &self.tansu.bootstrap(), port).await?;
        self.registry = Some(registry);
        Ok(())
    }

    /// Drops a file into the landing area the way an uploader does: write, then rename.
    fn drop_file(&self, path: &str, text: impl AsRef<[u8]>) -> Result<()> {
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

    /// Makes the pipeline read its categories from a copy of `topologies/` in the test
    /// directory (to change a layout mid-test); returns the copy's path.
    fn own_topologies(&self) -> Result<PathBuf> {
        let dir = self.root().join("topologies");
        std::fs::create_dir_all(&dir)?;
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
        for entry in std::fs::read_dir(repo)? {
            let entry = entry?;
            std::fs::copy(entry.path(), dir.join(entry.file_name()))?;
        }
        let mut config = std::fs::read_to_string(&self.config)?;
        config.push_str(&format!("\n[topology]\ndir = \"{}\"\n", dir.display()));
        std::fs::write(&self.config, config)?;
        Ok(dir)
    }

    /// The pipeline's `/metrics` text.
    async fn metrics(&self) -> Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.query))
            .await?
            .text()
            .await?)
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
    let header: Vec<&str> = csv.lines().next().context("a header")?.split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let tokeniser =
        credstream::tokenise::Tokeniser::new(&credstream::config::Secret::new(support::TOKEN_KEY))?;
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
            decimal_text(field(record, "CycleEndingBalance")) == row[col("CycleEndingBalance")],
            "balance of {}",
            row[0]
        );
        ensure!(field(record, "DaysPastDue") == &Value::Int(row[col("DaysPastDue")].parse()?));
        // The card number arrives as its token under the pipeline's key, and its display.
        let pan = row[col("CardNumber")];
        ensure!(
            field(record, "CardNumber_token")
                == &Value::Union(1, Box::new(Value::String(tokeniser.token(pan)?))),
            "token of {}",
            row[0]
        );
        ensure!(
            field(record, "CardNumber_display")
                == &Value::Union(
                    1,
                    Box::new(Value::String(credstream::tokenise::truncate(pan)?))
                )
        );
        let cycle = chrono::NaiveDate::parse_from_str(row[col("AccountCycleDate")], "%Y-%m-%d")?;
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
    let metrics = s.metrics().await?;
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

    // Confluent's Python client, which nobody here wrote, works against the registry and
    // decodes every topic the pipeline writes.
    let topics = [
        "file-arrivals",
        "card.accounts",
        "quarantine",
        "file-ledger",
    ];
    let names: Vec<String> = topics.iter().map(|t| s.topic(t)).collect();
    let py = support::python_clients(&s.registry_url, &s.tansu.bootstrap(), &names)?;
    let r = &py["registry"];
    ensure!(
        r["id_v1"] == r["id_v1_again"],
        "re-registering changed the id: {r}"
    );
    ensure!(r["id_v2"] != r["id_v1"], "{r}");
    ensure!(
        r["compatible_v2"] == true && r["compatible_bad"] == false,
        "{r}"
    );
    ensure!(
        r["latest_version"] == 2 && r["latest_id"] == r["id_v2"],
        "{r}"
    );
    ensure!(
        r["lookup_v1_version"] == 1 && r["lookup_v1_id"] == r["id_v1"],
        "{r}"
    );
    ensure!(r["versions"] == serde_json::json!([1, 2]), "{r}");
    ensure!(
        r["register_bad"] == serde_json::json!({"http_status": 409, "error_code": 409}),
        "{r}"
    );
    ensure!(
        r["set_level"]["compatibility"] == "NONE" && r["get_level"] == "NONE",
        "{r}"
    );
    ensure!(r["compatible_bad_under_none"] == true, "{r}");
    ensure!(
        r["global_level"] == "BACKWARD" && r["by_id_name"] == "Probe",
        "{r}"
    );
    ensure!(r["deleted_soft"] == serde_json::json!([1, 2]), "{r}");
    ensure!(r["deleted_permanent"] == serde_json::json!([1, 2]), "{r}");
    ensure!(r["subject_listed_after_delete"] == false, "{r}");
    let expected = [
        ("file-arrivals", 3),
        ("card.accounts", CLEAN_ROWS),
        ("quarantine", 1),
        ("file-ledger", 3),
    ];
    for ((topic, n), name) in expected.iter().zip(&names) {
        let t = &py["topics"][name];
        ensure!(
            t["complete"] == true && t["records"] == *n && t["decoded"] == *n,
            "{topic}: the Python client decoded {t}"
        );
    }
    ensure!(
        py["topics"][&names[1]]["samples"][0]["ReferenceNumber"].is_string(),
        "{}",
        py["topics"][&names[1]]
    );
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
    let metrics = s.metrics().await?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_delays_processing_and_quarantines_nothing() -> Result<()> {
    let mut s = Scenario::new().await?;
    let (clean, drifted) = samples();
    let later = account_master_csv(CLEAN_ROWS, 13, "2026-11-30", &[]);
    s.start().await?;
    s.drop_file("acme-bank/accounts_2026-10.csv", &clean)?;
    s.wait_files(1).await?;

    // The registry goes away; the pipeline restarts meanwhile (so it needs the registry to
    // start), and files keep arriving.
    if let Some(mut r) = s.registry.take() {
        r.kill9();
    }
    s.kill9();
    s.spawn()?;
    s.drop_file("acme-bank/accounts_2026-11.csv", &later)?;
    s.drop_file("acme-bank/accounts_drifted_2026-11.csv", &drifted)?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (status, body) = get_json(&format!("{}/v1/files", s.query))
        .await
        .unwrap_or((0, Json::Null));
    ensure!(
        status != 200 || body["files"].as_array().is_none_or(|f| f.len() <= 1),
        "files were processed without a registry: {body}"
    );

    s.restart_registry().await?;
    s.wait_ready(Duration::from_secs(120)).await?;
    let files = s.wait_files(3).await?;
    let next = &files["acme-bank/accounts_2026-11.csv"];
    ensure!(
        next["status"] == "PROCESSED"
            && next["records_out"] == 300
            && next["records_quarantined"] == 0,
        "{next}"
    );
    // The only quarantine record is the drifted file's: the outage itself held nothing.
    assert_quarantine_holds_drift(&s, DRIFT_ROWS as i64).await?;
    let outputs = read_topic(&s.tansu.bootstrap(), &s.topic("card.accounts"))?;
    ensure!(outputs.len() == 2 * CLEAN_ROWS, "{} outputs", outputs.len());
    // The restarted registry read its state back: records from before and after the outage
    // carry the same schema id, and decode.
    let ids: HashSet<[u8; 4]> = outputs
        .iter()
        .filter_map(|(_, v)| v.as_ref().map(|v| [v[1], v[2], v[3], v[4]]))
        .collect();
    ensure!(ids.len() == 1, "output schema ids: {ids:?}");
    decode_all(
        &s.registry_url,
        &outputs.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
    )
    .await?;
    let metrics = s.metrics().await?;
    ensure!(
        metrics
            .lines()
            .any(|l| l.starts_with("credstream_registry_errors_total")),
        "the outage was not counted:\n{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_contract_change_refuses_to_start() -> Result<()> {
    let mut s = Scenario::new().await?;
    // The subject already holds a schema the contract in avro/ cannot read (its required
    // fields have no defaults there), under the default level, BACKWARD.
    let subject = format!("{}-value", s.topic("card.accounts"));
    let older = serde_json::json!({
        "schema": r#"{"type":"record","name":"AccountMaster","namespace":"credstream.card","fields":[{"name":"legacy","type":"string"}]}"#
    });
    let r = reqwest::Client::new()
        .post(format!("{}/subjects/{subject}/versions", s.registry_url))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(older.to_string())
        .send()
        .await?;
    ensure!(r.status() == 200, "{:?}", r.text().await);
    s.spawn()?;
    let mut process = s.pipeline.take().context("spawned")?;
    let code = process.exit_code(Duration::from_secs(60)).await?;
    let log = process.log_tail();
    ensure!(code == Some(2), "exit code {code:?}; log:\n{log}");
    ensure!(
        log.contains(&subject) && log.contains("incompatible"),
        "the refusal does not name the subject and the reason:\n{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_a_layout_fix_ends_as_if_the_file_had_been_good() -> Result<()> {
    const ROWS: usize = 50;
    let mut s = Scenario::new().await?;
    let topologies = s.own_topologies()?;
    // The bank renamed a column: the whole file is held.
    let text = account_master_csv(ROWS, 21, "2026-10-31", &[]).replacen("CustomerId", "CustId", 1);
    let sha = sha256(&text);
    s.start().await?;
    s.drop_file("acme-bank/accounts_2026-10.csv", &text)?;
    let files = s.wait_files(1).await?;
    let first = &files["acme-bank/accounts_2026-10.csv"];
    ensure!(first["status"] == "QUARANTINED", "{first}");
    ensure!(
        first["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("RENAMED_COLUMN"),
        "{first}"
    );

    // The layout learns the new column name; the pipeline restarts with it.
    let layout = topologies.join("card_accounts.toml");
    let fixed = std::fs::read_to_string(&layout)?
        .replacen(
            "name = \"CustomerId\"\n",
            "name = \"CustomerId\"\ncolumn = \"CustId\"\n",
            1,
        )
        .replacen("layout_version = 1", "layout_version = 2", 1);
    ensure!(
        fixed.contains("column = \"CustId\""),
        "the layout was not changed"
    );
    std::fs::write(&layout, fixed)?;
    s.kill9();
    s.start().await?;

    // `credstream replay` takes the bytes from the raw store again.
    let config = s.config.display().to_string();
    let mut replay = Credstream::spawn(
        &["replay", "--config", &config, "--file", &sha],
        &s.root().join("replay.log"),
    )?;
    let code = replay.exit_code(Duration::from_secs(60)).await?;
    ensure!(
        code == Some(0),
        "replay exited {code:?}:\n{}",
        replay.log_tail()
    );

    let url = format!("{}/v1/files/{sha}", s.query);
    let arrivals = wait_for(Duration::from_secs(60), "the replay in the ledger", || {
        let url = url.clone();
        async move {
            let (status, body) = get_json(&url).await?;
            let arrivals = body["arrivals"].as_array()?.clone();
            (status == 200 && arrivals.len() == 2).then_some(arrivals)
        }
    })
    .await?;
    let replayed = arrivals
        .iter()
        .find(|a| a["replay_of"].is_string())
        .context("no arrival names the one it replays")?;
    ensure!(replayed["replay_of"] == first["arrival_id"], "{replayed}");
    ensure!(
        replayed["status"] == "PROCESSED"
            && replayed["records_out"] == ROWS
            && replayed["records_quarantined"] == 0
            && replayed["layout_version"] == 2,
        "{replayed}"
    );
    // The output holds every row once, under the keys a first processing would have used.
    let outputs = read_topic(&s.tansu.bootstrap(), &s.topic("card.accounts"))?;
    let keys: HashSet<String> = outputs
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    let expected: HashSet<String> = (0..ROWS).map(|i| format!("{sha}:{i}")).collect();
    ensure!(
        outputs.len() == ROWS && keys == expected,
        "output keys: {keys:?}"
    );
    let decoded = decode_all(
        &s.registry_url,
        &outputs.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
    )
    .await?;
    let customers: HashSet<String> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect();
    for record in &decoded {
        let Value::String(c) = field(record, "CustomerId") else {
            bail!("CustomerId is not a string: {record:?}");
        };
        ensure!(customers.contains(c), "unexpected CustomerId {c}");
    }
    // The ledger topic carries the replay too, for downstream auditors.
    let ledger = read_topic(&s.tansu.bootstrap(), &s.topic("file-ledger"))?;
    ensure!(
        ledger.len() == 2,
        "file-ledger has {} records",
        ledger.len()
    );
    Ok(())
}

/// `text` without column `name`.
fn drop_column(text: &str, name: &str) -> String {
    let index = text
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == name)
        .unwrap();
    text.lines()
        .map(|l| {
            let mut cells: Vec<&str> = l.split(',').collect();
            cells.remove(index);
            cells.join(",") + "\n"
        })
        .collect()
}

/// `text` with columns `a` and `b` swapped, header and data alike.
fn swap_columns(text: &str, a: &str, b: &str) -> String {
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let (i, j) = (
        header.iter().position(|c| *c == a).unwrap(),
        header.iter().position(|c| *c == b).unwrap(),
    );
    text.lines()
        .map(|l| {
            let mut cells: Vec<&str> = l.split(',').collect();
            cells.swap(i, j);
            cells.join(",") + "\n"
        })
        .collect()
}

/// The quarantine records of each file, decoded, by file path.
async fn quarantine_by_path(s: &Scenario) -> Result<BTreeMap<String, Vec<Value>>> {
    let held = read_topic(&s.tansu.bootstrap(), &s.topic("quarantine"))?;
    let values: Vec<Option<Vec<u8>>> = held.iter().map(|(_, v)| v.clone()).collect();
    let mut by_path: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for q in decode_all(&s.registry_url, &values).await? {
        let Value::String(path) = field(&q, "file_path").clone() else {
            bail!("file_path is not a string: {q:?}");
        };
        by_path.entry(path).or_default().push(q);
    }
    Ok(by_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_drift_class_lands_in_quarantine_while_other_files_flow() -> Result<()> {
    const ROWS: usize = 20;
    /// A test card number (Visa's), planted where it does not belong.
    const PAN: &str = "4111111111111111";
    let base = |seed: u64| account_master_csv(ROWS, seed, "2026-10-31", &[]);
    let mut encoding = plant(&base(38), 5, "StateCode", "ZZENC").into_bytes();
    let at = encoding.windows(5).position(|w| w == b"ZZENC").unwrap();
    encoding.splice(at..at + 5, [0xFF, 0xFE]);
    // (class, file bytes, whole file held?)
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "MISSING_COLUMN",
            drop_column(&base(31), "StateCode").into_bytes(),
            true,
        ),
        (
            "EXTRA_COLUMN",
            account_master_csv(ROWS, 32, "2026-10-31", &["PromotionalApr"]).into_bytes(),
            true,
        ),
        (
            "RENAMED_COLUMN",
            base(33).replacen("CustomerId", "CustId", 1).into_bytes(),
            true,
        ),
        (
            "REORDERED_COLUMNS",
            swap_columns(&base(34), "StateCode", "ZipCode").into_bytes(),
            true,
        ),
        (
            "TRAILER_MISMATCH",
            with_bad_trailer(
                &account_master_csv_with_trailer(ROWS, 35, "2026-10-31"),
                TrailerFault::Sum,
            )
            .into_bytes(),
            true,
        ),
        (
            "TYPE_MISMATCH",
            plant(&base(36), 3, "DaysPastDue", PAN).into_bytes(),
            false,
        ),
        (
            "OUT_OF_DOMAIN",
            plant(&base(37), 4, "CreditCardType", "9").into_bytes(),
            false,
        ),
        ("ENCODING", encoding, false),
        (
            "MISSING_VALUE",
            plant(&base(39), 2, "ReferenceNumber", "").into_bytes(),
            false,
        ),
        (
            "WRONG_FIELD_COUNT",
            plant(&base(40), 6, "ZipCode", "12345,extra").into_bytes(),
            false,
        ),
    ];
    let mut s = Scenario::new().await?;
    s.start().await?;
    // One client, so one partition: a held file must not stop the files behind it.
    for (n, (class, bytes, _)) in cases.iter().enumerate() {
        s.drop_file(
            &format!("acme-bank/accounts_clean_{n}.csv"),
            base(100 + n as u64),
        )?;
        s.drop_file(
            &format!("acme-bank/accounts_{}.csv", class.to_lowercase()),
            bytes,
        )?;
    }
    s.drop_file(
        "acme-bank/accounts_clean_last.csv",
        account_master_csv_with_trailer(ROWS, 200, "2026-10-31"),
    )?;
    let files = s.wait_files(2 * cases.len() + 1).await?;
    let held = quarantine_by_path(&s).await?;

    for (path, entry) in files.iter().filter(|(p, _)| p.contains("clean")) {
        ensure!(
            entry["status"] == "PROCESSED" && entry["records_out"] == ROWS,
            "{path}: {entry}"
        );
        ensure!(!held.contains_key(path), "{path} has quarantine records");
    }
    for (class, _, whole) in &cases {
        let path = format!("acme-bank/accounts_{}.csv", class.to_lowercase());
        let entry = &files[&path];
        let records = held
            .get(&path)
            .with_context(|| format!("{class}: nothing in quarantine"))?;
        for q in records {
            ensure!(
                field(q, "class") == &Value::String(class.to_string()),
                "{class}: {q:?}"
            );
            ensure!(
                field(q, "raw_key") == &Value::String(entry["raw_key"].as_str().unwrap().into())
            );
        }
        if *whole {
            ensure!(
                entry["status"] == "QUARANTINED"
                    && entry["records_quarantined"] == ROWS
                    && records.len() == 1,
                "{class}: {entry}"
            );
            ensure!(
                field(&records[0], "scope") == &Value::Enum(0, "FILE".into()),
                "{class}"
            );
        } else {
            ensure!(
                entry["status"] == "PARTIALLY_QUARANTINED"
                    && entry["records_out"] == ROWS - 1
                    && entry["records_quarantined"] == 1
                    && records.len() == 1,
                "{class}: {entry}"
            );
            let q = &records[0];
            ensure!(
                field(q, "scope") == &Value::Enum(1, "RECORD".into()),
                "{class}"
            );
            ensure!(
                matches!(field(q, "line"), Value::Union(1, _)),
                "{class}: no line"
            );
            ensure!(
                matches!(field(q, "byte_offset"), Value::Union(1, _)),
                "{class}: no byte offset"
            );
        }
    }
    // A card number where a number of days was expected is shown masked, never in clear,
    // in any field of any quarantine or ledger record.
    let mismatch = &held["acme-bank/accounts_type_mismatch.csv"][0];
    ensure!(
        field(mismatch, "actual")
            == &Value::Union(1, Box::new(Value::String("411111******1111".into()))),
        "{mismatch:?}"
    );
    for topic in ["quarantine", "file-ledger"] {
        for (_, value) in read_topic(&s.tansu.bootstrap(), &s.topic(topic))? {
            let bytes = value.unwrap_or_default();
            ensure!(
                !bytes.windows(PAN.len()).any(|w| w == PAN.as_bytes()),
                "a clear card number in {topic}"
            );
        }
    }
    // Every record of every file is accounted for: out or held.
    let outputs = read_topic(&s.tansu.bootstrap(), &s.topic("card.accounts"))?;
    let out: i64 = files
        .values()
        .map(|e| e["records_out"].as_i64().unwrap())
        .sum();
    ensure!(
        outputs.len() as i64 == out,
        "{} outputs, ledger says {out}",
        outputs.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_level_policy_holds_a_file_for_one_bad_record() -> Result<()> {
    const ROWS: usize = 20;
    let mut s = Scenario::new().await?;
    let topologies = s.own_topologies()?;
    let layout = topologies.join("card_accounts.toml");
    let text = std::fs::read_to_string(&layout)?;
    let strict = if text.contains("bad_records = \"record\"") {
        text.replacen("bad_records = \"record\"", "bad_records = \"file\"", 1)
    } else {
        text + "\n[quarantine]\nbad_records = \"file\"\n"
    };
    std::fs::write(&layout, strict)?;
    s.start().await?;
    let bad = plant(
        &account_master_csv(ROWS, 51, "2026-10-31", &[]),
        7,
        "DaysPastDue",
        "n/a",
    );
    s.drop_file("acme-bank/accounts_bad.csv", &bad)?;
    s.drop_file(
        "acme-bank/accounts_good.csv",
        account_master_csv(ROWS, 52, "2026-10-31", &[]),
    )?;
    let files = s.wait_files(2).await?;
    let held = &files["acme-bank/accounts_bad.csv"];
    ensure!(
        held["status"] == "QUARANTINED"
            && held["records_quarantined"] == ROWS
            && held["records_out"] == 0,
        "{held}"
    );
    ensure!(
        held["reason"]
            .as_str()
            .unwrap()
            .starts_with("TYPE_MISMATCH"),
        "{held}"
    );
    let good = &files["acme-bank/accounts_good.csv"];
    ensure!(
        good["status"] == "PROCESSED" && good["records_out"] == ROWS,
        "{good}"
    );
    let q = quarantine_by_path(&s).await?;
    let records = &q["acme-bank/accounts_bad.csv"];
    ensure!(records.len() == 1, "{records:?}");
    ensure!(field(&records[0], "scope") == &Value::Enum(0, "FILE".into()));
    ensure!(field(&records[0], "records_affected") == &Value::Long(ROWS as i64));
    // Nothing of the held file went out.
    let outputs = read_topic(&s.tansu.bootstrap(), &s.topic("card.accounts"))?;
    ensure!(outputs.len() == ROWS, "{} outputs", outputs.len());
    Ok(())
}

/// An account master's rows with `TRAILER,<count>,<sum of CycleEndingBalance>` recomputed.
fn with_trailer(header: &str, rows: &[String]) -> String {
    let balance = header
        .split(',')
        .position(|c| c == "CycleEndingBalance")
        .unwrap();
    let cents: i64 = rows
        .iter()
        .map(|r| {
            let v = r.split(',').nth(balance).unwrap();
            let (int, frac) = v.split_once('.').unwrap_or((v, "0"));
            let sign = if int.starts_with('-') { -1 } else { 1 };
            sign * (int.trim_start_matches('-').parse::<i64>().unwrap() * 100
                + format!("{frac:0<2}").parse::<i64>().unwrap())
        })
        .sum();
    format!(
        "{header}\n{}\n{}",
        rows.join("\n"),
        credstream::samples::accounts_trailer(rows.len(), cents)
    )
}

/// Latest value per key of a topic read in order; tombstones remove the key.
fn materialise(records: &[(Vec<u8>, Option<Vec<u8>>)]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut table = BTreeMap::new();
    for (k, v) in records {
        match v {
            Some(v) => table.insert(k.clone(), v.clone()),
            None => table.remove(k),
        };
    }
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_supersedes_its_file_in_views_output_and_ledger() -> Result<()> {
    const ROWS: usize = 20;
    let mut s = Scenario::new().await?;
    // Chunks of 7 accounts: both versions apply their views in parts, as a snapshot of
    // millions does, and everything below must hold all the same.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&s.config)?
        .write_all(b"\n[topology]\nview_chunk_accounts = 7\n")?;
    s.start().await?;
    let v1 = account_master_csv_with_trailer(ROWS, 7, "2026-10-31");
    let (v1_sha, name) = (sha256(&v1), "accounts_2026-10.csv");
    s.drop_file(&format!("acme-bank/{name}"), &v1)?;
    s.wait_files(1).await?;

    // The account view before: account 3 from version 1.
    let changed = credstream::samples::account_reference(7, 3);
    let dropped = credstream::samples::account_reference(7, ROWS - 1);
    let query = s.query.clone();
    let view = |account: &str| format!("{query}/v1/views/accounts/acme-bank/{account}");
    let (status, before) = get_json(&view(&changed)).await.unwrap();
    ensure!(status == 200, "{before}");
    ensure!(before["value"]["file_sha256"] == v1_sha.as_str() && before["value"]["version"] == 1);
    let old_balance = before["value"]["values"]["CycleEndingBalance"]
        .as_str()
        .context("balance")?
        .to_string();
    ensure!(get_json(&view(&dropped)).await.unwrap().0 == 200);

    // Version 2: account 3's balance is 100.00 higher, the last account is gone.
    let mut lines: Vec<String> = v1.lines().map(str::to_string).collect();
    let header = lines.remove(0);
    lines.pop(); // the trailer
    lines.pop(); // the last account
    let new_balance = {
        let cents = (old_balance.parse::<f64>()? * 100.0).round() as i64 + 10_000;
        format!("{}.{:02}", cents / 100, cents % 100)
    };
    let balance_col = header
        .split(',')
        .position(|c| c == "CycleEndingBalance")
        .unwrap();
    let mut cells: Vec<String> = lines[3].split(',').map(str::to_string).collect();
    cells[balance_col] = new_balance.clone();
    lines[3] = cells.join(",");
    let v2 = with_trailer(&header, &lines);
    let v2_sha = sha256(&v2);
    s.drop_file(&format!("acme-bank/corrections/{name}"), &v2)?;
    let files = s.wait_files(2).await?;
    let old = &files[&format!("acme-bank/{name}")];
    let new = &files[&format!("acme-bank/corrections/{name}")];
    ensure!(
        old["status"] == "SUPERSEDED" && old["superseded_by"] == v2_sha.as_str(),
        "{old}"
    );
    ensure!(
        new["status"] == "PROCESSED" && new["version"] == 2 && new["supersedes"] == v1_sha.as_str(),
        "{new}"
    );
    ensure!(new["period"] == "2026-10" && new["trailer_totals"]["CycleEndingBalance"].is_string());

    // The version chain, from either file.
    let (_, one) = get_json(&format!("{}/v1/files/{v2_sha}", s.query))
        .await
        .unwrap();
    let chain = &one["logical_file"];
    ensure!(chain["current_version"] == 2, "{one}");
    let versions = chain["versions"].as_array().unwrap();
    ensure!(versions.len() == 2);
    ensure!(versions[0]["sha256"] == v1_sha.as_str() && versions[0]["status"] == "SUPERSEDED");
    ensure!(versions[0]["superseded_by"] == 2 && versions[0]["current"] == false);
    ensure!(versions[1]["sha256"] == v2_sha.as_str() && versions[1]["current"] == true);
    let (_, from_old) = get_json(&format!("{}/v1/files/{v1_sha}", s.query))
        .await
        .unwrap();
    ensure!(from_old["logical_file"] == *chain);

    // Output: version 1's records, version 2's, and a retraction of each of version 1's.
    let records = read_topic(&s.tansu.bootstrap(), &s.topic("card.accounts"))?;
    ensure!(
        records.len() == ROWS + (ROWS - 1) + ROWS,
        "{} records",
        records.len()
    );
    let retracted: HashSet<String> = records
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    let expected: HashSet<String> = (0..ROWS).map(|i| format!("{v1_sha}:{i}")).collect();
    ensure!(retracted == expected, "retractions {retracted:?}");
    let table = materialise(&records);
    ensure!(table.len() == ROWS - 1);
    let decoded = decode_all(
        &s.registry_url,
        &table.values().cloned().map(Some).collect::<Vec<_>>(),
    )
    .await?;
    for r in &decoded {
        ensure!(field(field(r, "provenance"), "file_sha256") == &Value::String(v2_sha.clone()));
    }

    // The views after: the new balance, from version 2; the dropped account is gone.
    let (_, after) = get_json(&view(&changed)).await.unwrap();
    ensure!(
        after["value"]["values"]["CycleEndingBalance"] == new_balance.as_str(),
        "{after}"
    );
    ensure!(after["value"]["file_sha256"] == v2_sha.as_str() && after["value"]["version"] == 2);
    ensure!(get_json(&view(&dropped)).await.unwrap().0 == 404);
    let balances = format!("{}/v1/views/balances/acme-bank/2026-10/", s.query);
    ensure!(get_json(&format!("{balances}{dropped}")).await.unwrap().0 == 404);
    let (_, b) = get_json(&format!("{balances}{changed}")).await.unwrap();
    ensure!(b["value"]["amount"] == new_balance.as_str(), "{b}");
    let (_, totals) = get_json(&format!(
        "{}/v1/views/control-totals/acme-bank/card.accounts/2026-10",
        s.query
    ))
    .await
    .unwrap();
    ensure!(totals["current_version"] == 2, "{totals}");

    let metrics = s.metrics().await?;
    let spilled = support::stack::metric_value(&metrics, "credstream_store_writes_spilled_total")
        .context("no spill metric")?;
    // Version 1's 20 accounts: two chunks of 7 (a balance and an account entry each) went
    // before the file's end; version 2's 19 likewise, and its removal pass spills none.
    ensure!(spilled == 4.0 * 14.0, "spilled {spilled} writes");
    for line in [
        "credstream_files_superseded_total{client=\"acme-bank\",category=\"card.accounts\"} 1",
        &format!(
            "credstream_records_retracted_total{{client=\"acme-bank\",category=\"card.accounts\"}} {ROWS}"
        ),
    ] {
        ensure!(metrics.contains(line), "missing {line}");
    }

    // The same bytes again: one audit event, nothing else.
    s.drop_file(&format!("acme-bank/resent/{name}"), &v2)?;
    let files = s.wait_files(3).await?;
    ensure!(files[&format!("acme-bank/resent/{name}")]["status"] == "DUPLICATE");
    let again = read_topic(&s.tansu.bootstrap(), &s.topic("card.accounts"))?;
    ensure!(again.len() == records.len(), "a duplicate added output");
    let (_, still) = get_json(&view(&changed)).await.unwrap();
    ensure!(still == after, "a duplicate changed the view");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_month_end_reconciliation_finds_exactly_the_planted_exceptions() -> Result<()> {
    use credstream::samples::{Month, MonthSpec, write_month};
    let mut s = Scenario::new().await?;
    s.start().await?;
    let staging = s.root().join("staging");
    let mut spec = MonthSpec::new("acme-bank", Month::new(2026, 10).unwrap(), 42);
    spec.accounts = 60;
    spec.postings_per_day = 40;
    spec.balance_mismatches = 3;
    spec.bad_trailer_days = vec![12];
    spec.corrections = vec![5];
    spec.duplicates = 2;
    let manifest = write_month(&staging, &spec)?;
    let deliver = |s: &Scenario, files: &[PathBuf]| -> Result<()> {
        for f in files {
            let rel = f.strip_prefix(&staging)?.display().to_string();
            s.drop_file(&rel, std::fs::read(f)?)?;
        }
        Ok(())
    };
    // Originals first, then corrections, then resends: as a client would send them.
    let originals: Vec<PathBuf> = manifest
        .files
        .iter()
        .filter(|f| !manifest.corrections.contains(f) && !manifest.duplicates.contains(f))
        .cloned()
        .collect();
    deliver(&s, &originals)?;
    s.wait_files(originals.len()).await?;
    deliver(&s, &manifest.corrections)?;
    s.wait_files(originals.len() + manifest.corrections.len())
        .await?;
    deliver(&s, &manifest.duplicates)?;
    let files = s.wait_files(manifest.files.len()).await?;
    let held: Vec<&String> = files
        .iter()
        .filter(|(_, f)| f["status"] == "QUARANTINED")
        .map(|(p, _)| p)
        .collect();
    ensure!(
        held.len() == manifest.expected.files_held.len(),
        "held: {held:?}"
    );

    let url = format!(
        "{}/v1/reports/reconciliation?client=acme-bank&period=2026-10",
        s.query
    );
    let (status, report) = get_json(&url).await.unwrap();
    ensure!(status == 200, "{report}");
    ensure!(report["verdict"] == "EXCEPTIONS");
    ensure!(report["roll_forward"]["ran"] == true, "{report}");
    ensure!(
        report["roll_forward"]["accounts"] == spec.accounts,
        "{report}"
    );

    // Exactly the planted exceptions: the held file, and the accounts whose balances do
    // not roll forward (planted ones, and those the held file's postings would have moved).
    let mut found: BTreeMap<String, Vec<String>> = report["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .fold(BTreeMap::new(), |mut m, e| {
            let kind = e["kind"].as_str().unwrap().to_string();
            let what = match kind.as_str() {
                "BALANCE_MISMATCH" => format!(
                    "{} {}",
                    e["account"].as_str().unwrap(),
                    e["difference"].as_str().unwrap()
                ),
                "FILE_HELD" => Path::new(e["path"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                _ => e.to_string(),
            };
            m.entry(kind).or_default().push(what);
            m
        });
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    expected.insert(
        "BALANCE_MISMATCH".into(),
        manifest
            .expected
            .balance_mismatches
            .iter()
            .map(|b| format!("{} {}", b.account, b.difference))
            .collect(),
    );
    expected.insert("FILE_HELD".into(), manifest.expected.files_held.clone());
    for v in expected.values_mut().chain(found.values_mut()) {
        v.sort();
    }
    ensure!(expected["BALANCE_MISMATCH"].len() > spec.balance_mismatches);
    ensure!(expected["FILE_HELD"].len() == 1);
    ensure!(
        found == expected,
        "the report's exceptions differ from those planted:\nfound    {found:#?}\nexpected {expected:#?}"
    );
    ensure!(report["exceptions_total"] == report["exceptions"].as_array().unwrap().len());
    // Every file of the month is listed, with its current version.
    ensure!(
        report["files"].as_array().unwrap().len() >= 32,
        "{}",
        report["files"]
    );
    Ok(())
}

/// Every topic of the broker, every record's key and value (headers too), as bytes.
fn every_topic(bootstrap: &str) -> Result<Vec<(String, Vec<u8>)>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = support::tansu::rdkafka_client_config(bootstrap)
        .set("group.id", unique("scan-"))
        .create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let mut out = Vec::new();
    for t in metadata.topics() {
        for (k, v) in read_topic(bootstrap, t.name())? {
            let mut bytes = k;
            bytes.extend(v.unwrap_or_default());
            out.push((t.name().to_string(), bytes));
        }
    }
    Ok(out)
}

/// Every key and value of every store (column family) of every RocksDB under `dir`.
fn every_store_entry(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("CURRENT").exists() {
            let opts = rocksdb::Options::default();
            let cfs = rocksdb::DB::list_cf(&opts, &d)?;
            let db = rocksdb::DB::open_cf_for_read_only(&opts, &d, &cfs, false)?;
            for cf in &cfs {
                let handle = db.cf_handle(cf).context("a listed column family")?;
                for item in db.iterator_cf(handle, rocksdb::IteratorMode::Start) {
                    let (k, v) = item?;
                    let mut bytes = k.to_vec();
                    bytes.extend_from_slice(&v);
                    out.push((format!("{}:{cf}", d.display()), bytes));
                }
            }
            continue;
        }
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(out)
}

/// Where any of `pans` occurs in `haystacks`.
fn clear_pans(pans: &[String], haystacks: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    for (place, bytes) in haystacks {
        for pan in pans {
            if memchr::memmem::find(bytes, pan.as_bytes()).is_some() {
                found.push(format!("{pan} in {place}"));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_card_number_leaves_the_parser_in_clear() -> Result<()> {
    use credstream::samples::{
        Metro2Spec, Month, TransactionsFault, TransactionsSpec, card_number, write_metro2,
        write_transactions,
    };
    const ACCOUNTS: usize = 25;
    const SEED: u64 = 11;
    let pans: Vec<String> = (0..ACCOUNTS).map(|i| card_number(SEED, i)).collect();
    let mut s = Scenario::new().await?;
    s.start().await?;

    // Every category carries the card numbers in its card-number field.
    let accounts = account_master_csv_with_trailer(ACCOUNTS, SEED, "2026-10-31");
    // One account's card number is broken: quarantined, with its excerpt.
    let broken = plant(&accounts, 4, "CardNumber", &format!("{}-X", pans[4]));
    s.drop_file("acme-bank/accounts_2026-10.csv", &broken)?;
    let mut postings = Vec::new();
    let mut spec = TransactionsSpec::new(
        chrono::NaiveDate::from_ymd_opt(2026, 10, 15).unwrap(),
        SEED,
        60,
        ACCOUNTS,
    );
    spec.fault = Some(TransactionsFault::BadAmount);
    write_transactions(&mut postings, &spec, |_| {})?;
    s.drop_file(&format!("acme-bank/{}", spec.file_name()), &postings)?;
    let metro2_spec = Metro2Spec::new(Month::new(2026, 10).unwrap(), SEED, ACCOUNTS);
    let mut metro2 = Vec::new();
    write_metro2(&mut metro2, &metro2_spec, |_| {})?;
    s.drop_file(&format!("acme-bank/{}", metro2_spec.file_name()), &metro2)?;
    // A drifted file full of card numbers is held whole.
    s.drop_file(
        "acme-bank/accounts_drift.csv",
        account_master_csv(ACCOUNTS, SEED, "2026-10-31", &["PromotionalApr"]),
    )?;
    let files = s.wait_files(4).await?;
    let statuses: BTreeMap<&str, &str> = files
        .iter()
        .map(|(p, f)| (p.as_str(), f["status"].as_str().unwrap()))
        .collect();
    ensure!(
        statuses
            .values()
            .filter(|s| **s == "PARTIALLY_QUARANTINED")
            .count()
            == 2
            && statuses.values().filter(|s| **s == "QUARANTINED").count() == 1
            && statuses.values().filter(|s| **s == "PROCESSED").count() == 1,
        "{statuses:?}"
    );

    // Everything the API says.
    let mut answers: Vec<(String, Vec<u8>)> = Vec::new();
    let mut get = async |path: String| -> Result<Json> {
        let (status, body) = get_json(&format!("{}{path}", s.query))
            .await
            .context("no answer")?;
        ensure!(status == 200, "{path}: {status} {body}");
        answers.push((path, body.to_string().into_bytes()));
        Ok(body)
    };
    let listed = get("/v1/files".into()).await?;
    for f in listed["files"].as_array().unwrap() {
        get(format!("/v1/files/{}", f["file_sha256"].as_str().unwrap())).await?;
    }
    for view in ["accounts", "control-totals", "balances", "postings"] {
        let body = get(format!("/v1/views/{view}?limit=1000")).await?;
        ensure!(
            !body["entries"].as_array().unwrap().is_empty(),
            "view {view} is empty"
        );
    }
    get("/v1/reports/reconciliation?client=acme-bank&period=2026-10".into()).await?;
    answers.push(("/metrics".into(), s.metrics().await?.into_bytes()));

    // Every topic, then (the pipeline stopped) every store, and every log.
    let topics = every_topic(&s.tansu.bootstrap())?;
    // The broken card number was quarantined with its excerpt masked.
    let quarantine = read_topic(&s.tansu.bootstrap(), &s.topic("quarantine"))?;
    let held = decode_all(
        &s.registry_url,
        &quarantine.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    )
    .await?;
    let masked = credstream::formats::mask_card_numbers(&format!("{}-X", pans[4]));
    ensure!(
        held.iter()
            .any(|r| field(r, "excerpt")
                == &Value::Union(1, Box::new(Value::String(masked.clone())))),
        "no quarantine record shows {masked}"
    );
    s.kill9();
    let stores = every_store_entry(&s.root().join("state"))?;
    ensure!(stores.len() > 100, "only {} store entries", stores.len());
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(s.root())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            logs.push((path.display().to_string(), std::fs::read(&path)?));
        }
    }
    ensure!(!logs.is_empty());
    let mut leaks = clear_pans(&pans, &topics);
    leaks.extend(clear_pans(&pans, &stores));
    leaks.extend(clear_pans(&pans, &logs));
    leaks.extend(clear_pans(&pans, &answers));
    ensure!(leaks.is_empty(), "card numbers in clear: {leaks:#?}");

    // The scan finds them where they belong: the raw store keeps the bytes as sent.
    let mut raw = Vec::new();
    for entry in walk(&s.root().join("raw"))? {
        raw.push((entry.display().to_string(), std::fs::read(&entry)?));
    }
    ensure!(
        clear_pans(&pans, &raw).len() >= pans.len(),
        "the scan does not see the card numbers in the raw store"
    );
    Ok(())
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    Ok(out)
}
