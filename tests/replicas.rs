//! Replicas of the topology as separate processes on a separate Tansu broker: partitions
//! move when one is killed, state follows through changelogs (and standbys), and the end
//! result equals an independent recomputation from the input files, however often
//! replicas crash on the way.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use apache_avro::types::Value;
use serde_json::Value as Json;
use support::{Credstream, decode_all, field, free_port, get_json, read_topic, unique, wait_for};

/// Bearer tokens of the deployment: an operator reading every client, an analyst of
/// `bank-0` only, and the replicas' own token (at least 32 characters).
const OPS_TOKEN: &str = "ops-0123456789abcdef0123456789abcdef";
const ANALYST_TOKEN: &str = "analyst-0123456789abcdef0123456789abcd";
const PEER_TOKEN: &str = "peer-0123456789abcdef0123456789abcdef";

use credstream::rawstore::sha256_hex;
use credstream::samples::account_master_csv;
use credstream::streams::partition_for_key;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const PARTITIONS: i32 = 6;
const ROWS: usize = 40;

/// Each scenario runs seven processes against timing-based group membership (6 s
/// sessions); two at once on a small machine starve each other's heartbeats. They take
/// turns instead.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One file the test drops, and what must become of it.
#[derive(Clone)]
struct Drop {
    path: String,
    text: String,
    expect: Expect,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Processed,
    Duplicate,
    Quarantined,
}

/// `n` files over six clients: mostly clean account masters, every tenth a resend of an
/// earlier file's bytes, every tenth a file whose header gained a column.
fn plan(n: usize) -> Vec<Drop> {
    let mut drops: Vec<Drop> = Vec::with_capacity(n);
    for i in 0..n {
        let client = format!("bank-{}", i % 6);
        let drop = match i % 10 {
            // File i - 6 is the same client's, and clean (its index ends in 1).
            7 if i >= 6 => Drop {
                path: format!("{client}/resent/accounts_{i:03}.csv"),
                text: drops[i - 6].text.clone(),
                expect: Expect::Duplicate,
            },
            9 => Drop {
                path: format!("{client}/accounts_{i:03}.csv"),
                text: account_master_csv(ROWS, 5_000 + i as u64, "2026-10-31", &["PromotionalApr"]),
                expect: Expect::Quarantined,
            },
            _ => Drop {
                path: format!("{client}/accounts_{i:03}.csv"),
                text: account_master_csv(ROWS, 1_000 + i as u64, "2026-10-31", &[]),
                expect: Expect::Processed,
            },
        };
        drops.push(drop);
    }
    drops
}

/// The output records the clean files must produce: key → (ReferenceNumber, sha, index).
fn expected_outputs(drops: &[Drop]) -> BTreeMap<String, (String, String, i64)> {
    let mut out = BTreeMap::new();
    for d in drops.iter().filter(|d| d.expect == Expect::Processed) {
        let sha = sha256_hex(d.text.as_bytes());
        for (i, line) in d.text.lines().skip(1).enumerate() {
            let reference = line.split(',').next().unwrap().to_string();
            out.insert(format!("{sha}:{i}"), (reference, sha.clone(), i as i64));
        }
    }
    out
}

struct Slot {
    port: u16,
    state: PathBuf,
    process: Option<Credstream>,
    runs: usize,
}

/// A broker, a registry, a poller and `n` topology replicas.
struct Deployment {
    dir: tempfile::TempDir,
    tansu: support::tansu::Tansu,
    _registry: Credstream,
    registry_url: String,
    config: PathBuf,
    prefix: String,
    app: String,
    _poller: Credstream,
    slots: Vec<Slot>,
}

impl Deployment {
    async fn new(replicas: usize, standbys: usize) -> Result<Deployment> {
        let dir = support::test_dir()?;
        let root = dir.path().to_path_buf();
        let tansu = support::tansu::Tansu::start()?;
        let (registry, registry_url) = support::start_registry(&root, &tansu.bootstrap()).await?;
        let prefix = unique("r") + ".";
        let app = unique("replicas-");
        std::fs::create_dir_all(root.join("landing"))?;
        let config = root.join("credstream.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[app]
id = "{app}"
state_dir = "{root}/state-poller"
num_standby_replicas = {standbys}

[kafka]
bootstrap_servers = "{bootstrap}"
topic_prefix = "{prefix}"
partitions = {PARTITIONS}
session_timeout_ms = 6000

{tansu_properties}
[registry]
url = "{registry_url}"

[raw_store]
path = "{root}/raw"

[sources.landing]
kind = "local"
path = "{root}/landing"
poll_interval_ms = 200

[query.auth]
peer_token_file = "{root}/peer-token"

[[query.auth.tokens]]
name = "ops"
sha256 = "{ops}"
clients = ["*"]

[[query.auth.tokens]]
name = "bank-0-analyst"
sha256 = "{analyst}"
clients = ["bank-0"]

{tokenisation}
"#,
                tokenisation = support::tokenisation_section(&root)?,
                ops = sha256_hex(OPS_TOKEN.as_bytes()),
                analyst = sha256_hex(ANALYST_TOKEN.as_bytes()),
                tansu_properties = support::tansu::PIPELINE_PROPERTIES,
                root = root.display(),
                bootstrap = tansu.bootstrap(),
            ),
        )?;
        std::fs::write(root.join("peer-token"), PEER_TOKEN)?;
        let config_arg = config.display().to_string();
        let poller = Credstream::spawn(
            &["run", "--config", &config_arg, "--role", "poller"],
            &root.join("poller.log"),
        )?;
        let slots = (0..replicas)
            .map(|i| Slot {
                port: free_port(),
                state: root.join(format!("state-{i}")),
                process: None,
                runs: 0,
            })
            .collect();
        let mut d = Deployment {
            dir,
            tansu,
            _registry: registry,
            registry_url,
            config,
            prefix,
            app,
            _poller: poller,
            slots,
        };
        for i in 0..replicas {
            d.start(i)?;
        }
        Ok(d)
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Starts replica `i` (its own state directory and port, set from the environment).
    fn start(&mut self, i: usize) -> Result<()> {
        let config = self.config.display().to_string();
        let slot = &mut self.slots[i];
        slot.runs += 1;
        let log = self
            .dir
            .path()
            .join(format!("replica-{i}-run-{}.log", slot.runs));
        let env = [
            (
                "CREDSTREAM_APP__STATE_DIR",
                slot.state.display().to_string(),
            ),
            (
                "CREDSTREAM_QUERY__LISTEN",
                format!("127.0.0.1:{}", slot.port),
            ),
        ];
        slot.process = Some(Credstream::spawn_with_env(
            &[
                "run", "--config", &config, "--role", "topology", "--role", "query",
            ],
            &env,
            &log,
        )?);
        Ok(())
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.slots[i].process.take() {
            p.kill9();
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| self.slots[*i].process.is_some())
            .collect()
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.slots[i].port)
    }

    fn drop_file(&self, d: &Drop) -> Result<()> {
        let target = self.root().join("landing").join(&d.path);
        std::fs::create_dir_all(target.parent().unwrap())?;
        let tmp = target.with_extension("tmp");
        std::fs::write(&tmp, &d.text)?;
        std::fs::rename(&tmp, &target)?;
        Ok(())
    }

    /// The partitions each live replica serves, once every partition is served by exactly
    /// one of them.
    async fn settled(&self) -> Option<BTreeMap<usize, Vec<i64>>> {
        let mut owners = BTreeMap::new();
        let mut all = Vec::new();
        for i in self.live() {
            let (status, body) = get_json(&format!("{}/readyz", self.url(i))).await?;
            if status != 200 {
                return None;
            }
            let parts: Vec<i64> = body["partitions"]
                .as_array()?
                .iter()
                .filter_map(Json::as_i64)
                .collect();
            all.extend(parts.iter().copied());
            owners.insert(i, parts);
        }
        all.sort();
        (all == (0..PARTITIONS as i64).collect::<Vec<_>>()).then_some(owners)
    }

    /// The whole ledger, as every live replica answers it: each routes to the owners of the
    /// partitions it does not hold, so all must give the same entries.
    async fn ledger(&self) -> Result<Vec<Json>> {
        let mut answers: Vec<(usize, BTreeMap<String, Json>)> = Vec::new();
        for i in self.live() {
            let (status, body, _) =
                get_as(OPS_TOKEN, &format!("{}/v1/files?limit=1000", self.url(i)))
                    .await
                    .context("a replica stopped answering")?;
            ensure!(status == 200, "replica {i}: {body}");
            ensure!(body["next_cursor"].is_null(), "more than one page");
            let entries = body["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["key"].as_str().unwrap().to_string(), e.clone()))
                .collect();
            answers.push((i, entries));
        }
        let (first, ledger) = answers.first().context("no live replica")?;
        for (i, other) in &answers[1..] {
            ensure!(
                other == ledger,
                "replicas {first} and {i} answer different ledgers"
            );
        }
        Ok(ledger.values().cloned().collect())
    }

    /// Waits until the replicas have settled and the ledger holds an entry for each of
    /// `drops`.
    async fn wait_for_files(&self, drops: &[Drop]) -> Result<Vec<Json>> {
        let n = drops.len();
        let result = wait_for(
            Duration::from_secs(180),
            &format!("{n} ledger entries on settled replicas"),
            || async {
                self.settled().await?;
                let ledger = self.ledger().await.ok()?;
                (ledger.len() >= n).then_some(ledger)
            },
        )
        .await;
        match result {
            Ok(ledger) => Ok(ledger),
            Err(e) => {
                let state = self.query_state().await;
                let missing = self.where_missing(drops).await;
                Err(e.context(format!("{}\n{state}\n{missing}", self.log_tails())))
            }
        }
    }

    /// For a failure message: the files without a ledger entry, where their arrivals sit
    /// in the input topic, the group's committed offsets, and the poller's log.
    async fn where_missing(&self, drops: &[Drop]) -> String {
        let mut out = String::new();
        let listed: BTreeSet<String> = match self.ledger().await {
            Ok(ledger) => ledger
                .iter()
                .filter_map(|e| e["file_path"].as_str().map(str::to_string))
                .collect(),
            Err(e) => {
                out.push_str(&format!("--- ledger unreadable: {e:#}\n"));
                BTreeSet::new()
            }
        };
        let missing: Vec<&str> = drops
            .iter()
            .map(|d| d.path.as_str())
            .filter(|p| !listed.contains(*p))
            .collect();
        out.push_str(&format!(
            "--- {} of {} files have no ledger entry: {missing:?}\n",
            missing.len(),
            drops.len()
        ));
        let topic = format!("{}file-arrivals", self.prefix);
        let bootstrap = self.tansu.bootstrap();
        match support::read_topic_positioned(&bootstrap, &topic) {
            Ok(arrivals) => {
                for a in arrivals {
                    let value = a.value.unwrap_or_default();
                    let path = drops
                        .iter()
                        .map(|d| d.path.as_str())
                        .find(|p| value.windows(p.len()).any(|w| w == p.as_bytes()))
                        .unwrap_or("?");
                    let state = if listed.contains(path) {
                        "in ledger"
                    } else {
                        "MISSING"
                    };
                    out.push_str(&format!(
                        "--- arrival p{}-{} {path}: {state}\n",
                        a.partition, a.offset
                    ));
                }
            }
            Err(e) => out.push_str(&format!("--- arrivals unreadable: {e:#}\n")),
        }
        match support::group_progress(&bootstrap, &self.app, &topic) {
            Ok(progress) => {
                for (partition, committed, end) in progress {
                    out.push_str(&format!(
                        "--- partition {partition}: committed {committed:?}, end {end}\n"
                    ));
                }
            }
            Err(e) => out.push_str(&format!("--- committed offsets unreadable: {e:#}\n")),
        }
        out.push_str(&format!(
            "--- poller\n{}",
            support::log_file_tail(&self.root().join("poller.log"))
        ));
        out
    }

    /// What each live replica answers now: readiness, the ledger's first page and its
    /// replica table — for a failure message.
    async fn query_state(&self) -> String {
        let mut out = String::new();
        for i in self.live() {
            for path in ["/readyz", "/v1/files?limit=1", "/v1/metadata"] {
                let got = get_as(OPS_TOKEN, &format!("{}{path}", self.url(i))).await;
                let shown = match got {
                    Some((status, body, _)) => format!("{status} {body}"),
                    None => "no answer".into(),
                };
                out.push_str(&format!("--- replica {i} GET {path}: {shown}\n"));
            }
        }
        out
    }

    /// Waits until every partition is served by exactly one live replica.
    async fn wait_settled(&self) -> Result<()> {
        wait_for(Duration::from_secs(120), "settled replicas", || {
            self.settled()
        })
        .await
        .map(|_| ())
        .map_err(|e| e.context(self.log_tails()))
    }

    fn log_tails(&self) -> String {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.process
                    .as_ref()
                    .map(|p| format!("--- replica {i}\n{}", p.log_tail()))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Checks that every live replica's replica table names, for each partition, the
    /// replica that serves it (what interactive queries route by).
    async fn check_metadata(&self) -> Result<()> {
        let serving = wait_for(Duration::from_secs(60), "settled replicas", || {
            self.settled()
        })
        .await?;
        for i in self.live() {
            let url = format!("{}/v1/metadata", self.url(i));
            let table = wait_for(
                Duration::from_secs(30),
                "a current replica table",
                || async {
                    let (status, body, _) = get_as(OPS_TOKEN, &url).await?;
                    let current = (status == 200)
                        && body["partitions"].as_array()?.iter().all(|p| {
                            let partition = p["partition"].as_i64().unwrap_or(-1);
                            let endpoint = p["owner"]["endpoint"].as_str().unwrap_or("");
                            serving.iter().any(|(r, parts)| {
                                parts.contains(&partition)
                                    && endpoint == format!("127.0.0.1:{}", self.slots[*r].port)
                            })
                        });
                    current.then_some(body)
                },
            )
            .await;
            table.with_context(|| format!("replica {i}'s table disagrees with {serving:?}"))?;
        }
        Ok(())
    }

    /// Checks the ledger against the plan: one entry per file, with the right status and
    /// counts.
    fn check_ledger(&self, ledger: &[Json], drops: &[Drop]) -> Result<()> {
        ensure!(
            ledger.len() == drops.len(),
            "{} ledger entries for {} files",
            ledger.len(),
            drops.len()
        );
        let by_path: HashMap<&str, &Json> = ledger
            .iter()
            .map(|e| (e["file_path"].as_str().unwrap(), e))
            .collect();
        for d in drops {
            let e = by_path
                .get(d.path.as_str())
                .with_context(|| format!("{} is not in the ledger", d.path))?;
            let (status, out, held) = match d.expect {
                Expect::Processed => ("PROCESSED", ROWS, 0),
                Expect::Quarantined => ("QUARANTINED", 0, ROWS),
                Expect::Duplicate => ("DUPLICATE", 0, 0),
            };
            let counts = (e["records_out"].as_u64(), e["records_quarantined"].as_u64());
            ensure!(
                e["status"] == status && counts == (Some(out as u64), Some(held as u64)),
                "{}: expected {status} {out}/{held}, got {e}",
                d.path
            );
            ensure!(e["file_sha256"] == sha256_hex(d.text.as_bytes()).as_str());
        }
        Ok(())
    }

    /// Checks the output topic against the clean files. Returns how many deliveries were
    /// repeats (what at-least-once costs).
    async fn check_outputs(&self, drops: &[Drop]) -> Result<usize> {
        let expected = expected_outputs(drops);
        let records = read_topic(
            &self.tansu.bootstrap(),
            &format!("{}card.accounts", self.prefix),
        )?;
        let mut by_key: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for (k, v) in &records {
            by_key
                .entry(String::from_utf8(k.clone())?)
                .or_default()
                .push(v.clone().unwrap_or_default());
        }
        let keys: BTreeSet<&String> = by_key.keys().collect();
        let want: BTreeSet<&String> = expected.keys().collect();
        let lost: Vec<_> = want.difference(&keys).take(5).collect();
        let extra: Vec<_> = keys.difference(&want).take(5).collect();
        ensure!(
            lost.is_empty() && extra.is_empty(),
            "lost {lost:?}, unexpected {extra:?}"
        );
        for (key, values) in &by_key {
            ensure!(
                values.windows(2).all(|w| w[0] == w[1]),
                "repeated deliveries of {key} differ"
            );
        }
        let firsts: Vec<Option<Vec<u8>>> = by_key.values().map(|v| Some(v[0].clone())).collect();
        let decoded = decode_all(&self.registry_url, &firsts).await?;
        for ((key, _), record) in by_key.iter().zip(&decoded) {
            let (reference, sha, index) = &expected[key];
            ensure!(
                field(record, "ReferenceNumber") == &Value::String(reference.clone()),
                "{key}"
            );
            let provenance = field(record, "provenance");
            ensure!(
                field(provenance, "file_sha256") == &Value::String(sha.clone()),
                "{key}"
            );
            ensure!(
                field(provenance, "record_index") == &Value::Long(*index),
                "{key}"
            );
        }
        Ok(records.len() - by_key.len())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_hands_over_and_a_wiped_one_restores() -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut d = Deployment::new(3, 1).await?;
    let drops = plan(24);
    d.wait_settled().await?;
    for (n, drop) in drops.iter().enumerate() {
        d.drop_file(drop)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if n == 10 {
            d.kill9(1); // while files flow; it is not restarted
        }
    }
    let ledger = d.wait_for_files(&drops).await?;
    ensure!(d.live() == vec![0, 2]);
    d.check_metadata().await?;
    d.check_ledger(&ledger, &drops)?;
    let repeats = d.check_outputs(&drops).await?;
    eprintln!("kill -9 of one of three replicas: {repeats} repeated output deliveries");

    // A replica whose state directory is deleted restores its stores from the changelogs
    // and answers the same.
    d.kill9(2);
    std::fs::remove_dir_all(&d.slots[2].state)?;
    d.start(2)?;
    let again = d.wait_for_files(&drops).await?;
    ensure!(
        ledger_view(&again) == ledger_view(&ledger),
        "answers changed after the restore"
    );
    let (status, body) = get_json(&format!("{}/readyz", d.url(2)))
        .await
        .context("replica 2")?;
    ensure!(
        status == 200 && !body["partitions"].as_array().unwrap().is_empty(),
        "replica 2 holds no partition: {body}"
    );
    Ok(())
}

/// What a compliance reader sees of the ledger: per file, its status and counts.
fn ledger_view(ledger: &[Json]) -> BTreeMap<String, (String, u64, u64, u64)> {
    ledger
        .iter()
        .map(|e| {
            (
                e["file_path"].as_str().unwrap().to_string(),
                (
                    e["status"].as_str().unwrap().to_string(),
                    e["records_in"].as_u64().unwrap(),
                    e["records_out"].as_u64().unwrap(),
                    e["records_quarantined"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// A replica killed between two of a record's changelog writes (one topic per store, so
/// they cannot land together without transactions) leaves that record's state in part.
/// Here the dedup store knows the file's arrival and the ledger does not, as when the
/// dedup write landed first. The input offset was never committed, so the record is
/// processed again, and it must be processed in full, not skipped as already done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_state_landed_in_part_before_a_crash_is_processed_again_in_full()
-> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut d = Deployment::new(1, 0).await?;
    let drops = plan(2);
    d.wait_settled().await?;
    d.drop_file(&drops[0])?;
    d.wait_for_files(&drops[..1]).await?;

    // What a crash after the dedup write of the next file's arrival leaves behind.
    let target = &drops[1];
    let client = target.path.split('/').next().unwrap();
    let partition = partition_for_key(client.as_bytes(), PARTITIONS);
    let bootstrap = d.tansu.bootstrap();
    let arrivals = format!("{}file-arrivals", d.prefix);
    let next = support::group_progress(&bootstrap, &d.app, &arrivals)?
        .into_iter()
        .find(|(p, _, _)| *p == partition)
        .map(|(_, _, end)| end)
        .context("no such partition")?;
    d.kill9(0);
    let sha = sha256_hex(target.text.as_bytes());
    let arrival_id = format!("p{partition}-{next}");
    let dedup = format!("{}-dedup-changelog", d.app);
    let token = support::read_topic_positioned(&bootstrap, &dedup)?
        .into_iter()
        .filter(|r| r.partition == partition)
        .filter_map(|r| r.key.strip_prefix(b"\0fence\0").map(<[u8]>::to_vec))
        .next_back()
        .context("the task wrote no fence marker")?;
    let token = u64::from_str_radix(std::str::from_utf8(&token)?, 16)?;
    let entry = serde_json::json!({
        "arrival_id": arrival_id,
        "ledger_key": format!("{sha}/{arrival_id}"),
        "path": target.path,
    });
    let producer: BaseProducer = support::tansu::rdkafka_client_config(&bootstrap).create()?;
    producer
        .send(
            BaseRecord::to(&dedup)
                .partition(partition)
                .key(format!("{client}/{sha}").as_bytes())
                .payload(&serde_json::to_vec(&entry)?)
                .headers(credstream::streams::changelog::owner_headers(token)),
        )
        .map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(10))?;
    // The replica restarts on another machine: its stores come from the changelogs.
    std::fs::remove_dir_all(&d.slots[0].state)?;
    d.start(0)?;
    d.wait_settled().await?;

    d.drop_file(target)?;
    let ledger = d.wait_for_files(&drops).await?;
    d.check_ledger(&ledger, &drops)?;
    let again = ledger
        .iter()
        .find(|e| e["file_path"] == target.path.as_str())
        .context("no entry")?;
    ensure!(
        again["arrival_id"] == arrival_id.as_str(),
        "the file arrived as {}, not as the arrival whose state was planted ({arrival_id})",
        again["arrival_id"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kill_and_restart_cycles_lose_and_double_count_nothing() -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    const CYCLES: usize = 50;
    let mut d = Deployment::new(3, 0).await?;
    let drops = plan(60);
    d.wait_settled().await?;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut next_drop = 0;
    for cycle in 0..CYCLES {
        // Files keep arriving through the whole loop.
        let due = (cycle + 1) * drops.len() / CYCLES;
        while next_drop < due {
            d.drop_file(&drops[next_drop])?;
            next_drop += 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(300..1500))).await;
        let victim = rng.usize(..d.slots.len());
        d.kill9(victim);
        d.start(victim)?;
    }
    let ledger = d.wait_for_files(&drops).await?;
    d.check_ledger(&ledger, &drops)?;
    let repeats = d.check_outputs(&drops).await?;
    eprintln!(
        "{CYCLES} kill -9/restart cycles: {repeats} repeated output deliveries, 0 lost, 0 double-counted"
    );
    Ok(())
}

/// GET `url` with a bearer token: status, JSON body and headers.
async fn get_as(token: &str, url: &str) -> Option<(u16, Json, reqwest::header::HeaderMap)> {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Some((status, response.json().await.ok()?, headers))
}

/// One account master per client with a logical identity (so its records reach the views).
fn month_of_accounts() -> Vec<Drop> {
    (0..6)
        .map(|c| Drop {
            path: format!("bank-{c}/accounts_2026-10.csv"),
            text: account_master_csv(ROWS, 9_000 + c, "2026-10-31", &[]),
            expect: Expect::Processed,
        })
        .collect()
}

/// What each key must answer, worked out from the files alone: the account's balance, the
/// file and record it came from.
#[derive(Debug)]
struct Truth {
    /// `/v1/views/accounts/<client>/<reference>` → (sha256, record index, balance).
    accounts: BTreeMap<String, (String, u64, String)>,
    /// `/v1/views/balances/<client>/2026-10/<reference>` → balance.
    balances: BTreeMap<String, String>,
    /// `/v1/files/<sha256>` → client.
    files: BTreeMap<String, String>,
}

fn truth(drops: &[Drop]) -> Truth {
    let mut t = Truth {
        accounts: BTreeMap::new(),
        balances: BTreeMap::new(),
        files: BTreeMap::new(),
    };
    for d in drops {
        let client = d.path.split('/').next().unwrap().to_string();
        let sha = sha256_hex(d.text.as_bytes());
        let mut rows = csv::Reader::from_reader(d.text.as_bytes());
        let header = rows.headers().unwrap().clone();
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let (reference, balance) = (col("ReferenceNumber"), col("CycleEndingBalance"));
        for (i, row) in rows.records().enumerate() {
            let row = row.unwrap();
            let key = format!("{client}/{}", &row[reference]);
            t.accounts
                .insert(key, (sha.clone(), i as u64, row[balance].to_string()));
            t.balances.insert(
                format!("{client}/2026-10/{}", &row[reference]),
                row[balance].to_string(),
            );
        }
        t.files.insert(sha, client);
    }
    t
}

/// How one answer compares with the truth.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Verdict {
    Right,
    /// Right, from a standby that said how far behind it was (`allow_stale=true`).
    RightFromStandby,
    /// 503 with `retryable: true` and a Retry-After header.
    Retryable,
    /// The replica process is down (connection refused).
    Down,
    Wrong,
}

/// How a sweep asks.
#[derive(Clone, Copy)]
struct Ask {
    /// Ask each key a second time with `allow_stale=true`.
    stale_too: bool,
    /// Follow a retryable 503's `Retry-After` (up to 20 times), as a client would.
    retry: bool,
    /// Every `step`-th account and balance key (files: all).
    step: usize,
}

/// Asks replica `url` for `path` and judges the answer against `expect`.
async fn judge(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    retry: bool,
    expect: &(dyn Fn(&Json) -> bool + Sync),
) -> (Verdict, String) {
    for _ in 0..20 {
        let response = http
            .get(format!("{url}{path}"))
            .bearer_auth(OPS_TOKEN)
            .send()
            .await;
        let Ok(response) = response else {
            return (Verdict::Down, String::new());
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key("retry-after");
        let from_standby = response
            .headers()
            .contains_key("x-credstream-stale-lag-records");
        let body: Json = response.json().await.unwrap_or(Json::Null);
        let verdict = match status {
            200 if expect(&body) && from_standby => (Verdict::RightFromStandby, String::new()),
            200 if expect(&body) => (Verdict::Right, String::new()),
            503 if body["error"]["retryable"] == true && retry_after => {
                (Verdict::Retryable, format!("{path}: {}", body["error"]))
            }
            _ => (Verdict::Wrong, format!("{path}: {status} {body}")),
        };
        if verdict.0 != Verdict::Retryable || !retry {
            return verdict;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    (
        Verdict::Retryable,
        format!("{path}: still retryable after 20 s"),
    )
}

/// What a right answer to one path looks like.
type Expectation<'a> = Box<dyn Fn(&Json) -> bool + Sync + Send + 'a>;

/// Every key of the truth (or every `step`-th), asked of every replica in `urls`: verdict
/// counts by (stale, verdict), and the first wrong answers.
async fn sweep(
    urls: &[String],
    t: &Truth,
    ask: Ask,
) -> (BTreeMap<(bool, Verdict), usize>, Vec<String>) {
    let http = reqwest::Client::new();
    let mut counts = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut retried = Vec::new();
    let modes: &[bool] = if ask.stale_too {
        &[false, true]
    } else {
        &[false]
    };
    let mut asks: Vec<(String, Expectation<'_>)> = Vec::new();
    for (key, (sha, index, balance)) in t.accounts.iter().step_by(ask.step) {
        asks.push((
            format!("/v1/views/accounts/{key}"),
            Box::new(move |b: &Json| {
                b["key"] == key.as_str()
                    && b["value"]["file_sha256"] == sha.as_str()
                    && b["value"]["record_index"] == *index
                    && b["value"]["values"]["CycleEndingBalance"] == balance.as_str()
            }),
        ));
    }
    for (key, balance) in t.balances.iter().step_by(ask.step) {
        asks.push((
            format!("/v1/views/balances/{key}"),
            Box::new(move |b: &Json| {
                b["key"] == key.as_str() && b["value"]["amount"] == balance.as_str()
            }),
        ));
    }
    for (sha, client) in &t.files {
        asks.push((
            format!("/v1/files/{sha}"),
            Box::new(move |b: &Json| {
                b["arrivals"].as_array().is_some_and(|a| {
                    a.len() == 1
                        && a[0]["client_id"] == client.as_str()
                        && a[0]["status"] == "PROCESSED"
                        && a[0]["records_out"] == ROWS as u64
                }) && b["logical_file"]["current_version"] == 1
            }),
        ));
    }
    for url in urls {
        for (path, expect) in &asks {
            for &stale in modes {
                let path = if stale {
                    format!("{path}?allow_stale=true")
                } else {
                    path.clone()
                };
                let (v, why) = judge(&http, url, &path, ask.retry, expect.as_ref()).await;
                *counts.entry((stale, v)).or_insert(0) += 1;
                if v == Verdict::Wrong && wrong.len() < 10 {
                    wrong.push(format!("{url}: {why}"));
                }
                if v == Verdict::Retryable && retried.len() < 3 {
                    retried.push(format!("{url}: {why}"));
                }
            }
        }
    }
    if !retried.is_empty() {
        eprintln!("retryable answers, the first few: {retried:#?}");
    }
    (counts, wrong)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_is_answered_correctly_by_every_replica_during_and_after_a_rebalance()
-> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut d = Deployment::new(3, 1).await?;
    d.wait_settled().await?;
    let drops = month_of_accounts();
    for drop in &drops {
        d.drop_file(drop)?;
    }
    let ledger = d.wait_for_files(&drops).await?;
    d.check_ledger(&ledger, &drops)?;
    let t = truth(&drops);
    ensure!(t.accounts.len() == 6 * ROWS && t.files.len() == 6);
    let urls: Vec<String> = (0..3).map(|i| d.url(i)).collect();

    // Settled: every replica answers every key, most of them by asking the owner.
    d.check_metadata().await?;
    let settled = Ask {
        stale_too: false,
        retry: true,
        step: 1,
    };
    let (counts, wrong) = sweep(&urls, &t, settled).await;
    let keys = t.accounts.len() + t.balances.len() + t.files.len();
    ensure!(
        wrong.is_empty() && counts.get(&(false, Verdict::Right)) == Some(&(3 * keys)),
        "before the rebalance: {counts:?} {wrong:#?}"
    );

    // Scopes hold across replicas: the analyst reads bank-0, from any replica, and nothing
    // else; no token is refused.
    let bank0 = t
        .accounts
        .keys()
        .find(|k| k.starts_with("bank-0/"))
        .unwrap();
    let bank1 = t
        .accounts
        .keys()
        .find(|k| k.starts_with("bank-1/"))
        .unwrap();
    for url in &urls {
        let got = get_as(ANALYST_TOKEN, &format!("{url}/v1/views/accounts/{bank0}")).await;
        ensure!(
            got.is_some_and(|g| g.0 == 200),
            "{url}: the analyst reads bank-0"
        );
        let got = get_as(ANALYST_TOKEN, &format!("{url}/v1/views/accounts/{bank1}")).await;
        ensure!(
            got.is_some_and(|g| g.0 == 403),
            "{url}: the analyst reads no other bank"
        );
        let (status, body) = get_json(&format!("{url}/v1/views/accounts/{bank0}"))
            .await
            .context("a replica")?;
        ensure!(
            status == 401 && body["error"]["code"] == "unauthorized",
            "{body}"
        );
    }

    // During: replica 1 is killed, then started again, while every key is asked of every
    // replica over and over. Each answer is the right value or a retryable 503; a stale
    // read from a standby is the right value too (nothing changed meanwhile).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let querier = {
        let (urls, stop) = (urls.clone(), stop.clone());
        let t = truth(&drops);
        tokio::spawn(async move {
            let mut total: BTreeMap<(bool, Verdict), usize> = BTreeMap::new();
            let mut wrong = Vec::new();
            let during = Ask {
                stale_too: true,
                retry: false,
                step: 8,
            };
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (counts, w) = sweep(&urls, &t, during).await;
                for (k, n) in counts {
                    *total.entry(k).or_insert(0) += n;
                }
                wrong.extend(w);
            }
            (total, wrong)
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.kill9(1);
    d.wait_settled().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.start(1)?;
    d.wait_settled().await?;
    d.check_metadata().await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (during, wrong) = querier.await?;
    eprintln!("answers during the rebalances ((allow_stale, verdict) → count): {during:?}");
    ensure!(
        wrong.is_empty(),
        "wrong answers during the rebalance: {wrong:#?}"
    );
    ensure!(
        during.get(&(false, Verdict::Right)).is_some_and(|n| *n > 0),
        "no answer at all during the rebalance: {during:?}"
    );
    ensure!(
        during
            .get(&(true, Verdict::RightFromStandby))
            .is_some_and(|n| *n > 0),
        "no stale read was answered by a standby while the owner was down: {during:?}"
    );
    ensure!(
        !during.contains_key(&(false, Verdict::RightFromStandby)),
        "a standby answered a read that did not allow it: {during:?}"
    );

    // After: every replica, the restarted one included, answers every key again.
    let (counts, wrong) = sweep(&urls, &t, settled).await;
    ensure!(
        wrong.is_empty() && counts.get(&(false, Verdict::Right)) == Some(&(3 * keys)),
        "after the rebalance: {counts:?} {wrong:#?}"
    );
    Ok(())
}
