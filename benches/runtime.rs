//! Runtime benchmarks on a real, separate Tansu broker: how fast a store restores from its
//! changelog, and how long a partition is unserved when its replica is killed.
//!
//! `cargo bench --profile dev --bench runtime` (the project builds one profile). Knobs:
//! `RUNS` (default 3) and `KEYS` (default 100000). Prints a Markdown table for
//! BENCHMARKS.md with the median of the runs and, for restore, the ratio to a plain
//! librdkafka consumer reading the same changelog in the same run.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value as Json;
use support::{Credstream, env_or, free_port, get_json, median, unique, wait_for};

use credstream::samples::account_master_csv;
use credstream::streams::{TaskDb, TopicSpec, ensure_topics, restore};

fn main() -> Result<()> {
    // `cargo test --all-targets` runs bench binaries without `--bench`: compiled and
    // type-checked is all a test run needs; benchmarks run under `cargo bench` only.
    if !std::env::args().any(|a| a == "--bench") {
        println!("runtime benchmarks: run with `cargo bench --profile dev --bench runtime`");
        return Ok(());
    }
    let runs = env_or("RUNS", 3);
    let keys = env_or("KEYS", 100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (restore_rate, consume_rate) = rt.block_on(restore_benchmark(runs, keys))?;
    let (takeover, session) = rt.block_on(takeover_benchmark(runs, Victim::Newest))?;
    let (leader_takeover, _) = rt.block_on(takeover_benchmark(runs, Victim::Leader))?;
    println!();
    println!("| measure | median of {runs} | peer in the same run | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| restore from changelog, {keys} keys x 200 B | {:.0} keys/s | plain librdkafka consumer: {:.0} records/s | {:.2} |",
        restore_rate,
        consume_rate,
        restore_rate / consume_rate
    );
    println!(
        "| takeover: kill -9 to the next file of that partition queryable | {:.2} s | session.timeout.ms: {:.2} s | {:.2} |",
        takeover,
        session,
        takeover / session
    );
    println!(
        "| takeover when the victim is the group leader (Tansu 0.6.0: healed by the rejoin) | {:.2} s | session.timeout.ms: {:.2} s | {:.2} |",
        leader_takeover,
        session,
        leader_takeover / session
    );
    Ok(())
}

/// Which of the two replicas the takeover benchmark kills.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Victim {
    /// The member that joined last.
    Newest,
    /// The oldest member, which leads the group.
    Leader,
}

/// Restores a `keys`-record changelog partition into a fresh store, `runs` times, next to
/// a plain consumer reading the same partition.
async fn restore_benchmark(runs: usize, keys: usize) -> Result<(f64, f64)> {
    let tansu = support::tansu::Tansu::start()?;
    let client = support::tansu::rdkafka_client_config(&tansu.bootstrap());
    let topic = "bench-s-changelog";
    ensure_topics(
        &client,
        &[TopicSpec {
            name: topic.into(),
            partitions: 1,
            replication_factor: 1,
            compacted: true,
            exact_partitions: true,
        }],
        true,
    )
    .await?;
    eprintln!("restore: writing {keys} changelog records");
    let producer: ThreadedProducer<DefaultProducerContext> = client.create()?;
    let value = vec![b'x'; 200];
    for i in 0..keys {
        let key = format!("key-{i:012}");
        let mut record = BaseRecord::<String, Vec<u8>>::to(topic)
            .partition(0)
            .key(&key)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(300))?;

    let (mut restores, mut consumes) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let consumer: BaseConsumer = client.clone().set("group.id", unique("raw-")).create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let began = Instant::now();
        let mut read = 0;
        while read < keys {
            if let Some(m) = consumer.poll(Duration::from_millis(500)) {
                m?;
                read += 1;
            }
        }
        let consume = keys as f64 / began.elapsed().as_secs_f64();

        let dir = tempfile::tempdir()?;
        let db = TaskDb::open(dir.path(), 0, &["s".to_string()])?;
        let began = Instant::now();
        let applied = restore(&client, &db, "s", topic, 0, keys as i64)?;
        let rate = keys as f64 / began.elapsed().as_secs_f64();
        ensure!(applied == keys as u64, "restored {applied} of {keys}");
        eprintln!("restore run {run}: {rate:.0} keys/s (plain consumer {consume:.0} records/s)");
        restores.push(rate);
        consumes.push(consume);
    }
    Ok((median(restores), median(consumes)))
}

/// Kills the replica owning a client's partition, drops a file for that client, and times
/// until the surviving replica serves its ledger entry.
async fn takeover_benchmark(runs: usize, kill: Victim) -> Result<(f64, f64)> {
    const SESSION_MS: u64 = 6000;
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let tansu = support::tansu::Tansu::start()?;
    let (_registry, registry_url) = support::start_registry(root, &tansu.bootstrap()).await?;
    std::fs::create_dir_all(root.join("landing"))?;
    let config = root.join("credstream.toml");
    std::fs::write(
        &config,
        format!(
            "[app]\nid = \"{app}\"\nstate_dir = \"{root}/state-poller\"\n\
             [kafka]\nbootstrap_servers = \"{b}\"\ntopic_prefix = \"{p}\"\npartitions = 4\nsession_timeout_ms = {SESSION_MS}\n\
             {tansu_properties}\
             [registry]\nurl = \"{registry_url}\"\n[raw_store]\npath = \"{root}/raw\"\n\
             [sources.landing]\nkind = \"local\"\npath = \"{root}/landing\"\npoll_interval_ms = 100\n\
             {tokenisation}",
            tokenisation = support::tokenisation_section(root)?,
            tansu_properties = support::tansu::PIPELINE_PROPERTIES,
            app = unique("takeover-"),
            root = root.display(),
            b = tansu.bootstrap(),
            p = unique("b") + ".",
        ),
    )?;
    let cfg = config.display().to_string();
    let _poller = Credstream::spawn(
        &["run", "--config", &cfg, "--role", "poller"],
        &root.join("poller.log"),
    )?;
    let ports = [free_port(), free_port()];
    let start = |i: usize, run: usize| {
        Credstream::spawn_with_env(
            &[
                "run", "--config", &cfg, "--role", "topology", "--role", "query",
            ],
            &[
                (
                    "CREDSTREAM_APP__STATE_DIR",
                    format!("{}/state-{i}", root.display()),
                ),
                (
                    "CREDSTREAM_QUERY__LISTEN",
                    format!("127.0.0.1:{}", ports[i]),
                ),
            ],
            &root.join(format!("replica-{i}-{run}.log")),
        )
    };
    let mut replicas = [Some(start(0, 0)?), Some(start(1, 0)?)];
    let mut times = Vec::new();
    for run in 0..runs {
        // Both replicas hold partitions.
        let owners = wait_for(Duration::from_secs(120), "two settled replicas", || async {
            let mut owned = Vec::new();
            for port in ports {
                let (s, body) = get_json(&format!("http://127.0.0.1:{port}/readyz")).await?;
                let parts: Vec<i64> = body["partitions"]
                    .as_array()?
                    .iter()
                    .filter_map(Json::as_i64)
                    .collect();
                if s != 200 || parts.is_empty() {
                    return None;
                }
                owned.push(parts);
            }
            (owned.iter().map(Vec::len).sum::<usize>() == 4).then_some(owned)
        })
        .await?;
        // Replica 1 is always the newest member (it is the one restarted), so killing the
        // leader alternates: replica 0 first, then replica 1 (restarted after replica 0
        // had come back), and so on. Tansu 0.6.0 strands a dead leader's partitions until
        // a member rejoins; see BENCHMARKS.md.
        let victim = match kill {
            Victim::Newest => 1,
            Victim::Leader => run % 2,
        };
        let survivor = 1 - victim;
        let client = (0..)
            .map(|n| format!("client-{run}-{n}"))
            .find(|c| {
                let p = credstream::streams::partition_for_key(c.as_bytes(), 4) as i64;
                owners[victim].contains(&p)
            })
            .context("a client of the victim's partitions")?;
        let began = Instant::now();
        if let Some(mut p) = replicas[victim].take() {
            p.kill9();
        }
        drop_file(
            root,
            &format!("{client}/accounts_{run}.csv"),
            &account_master_csv(10, run as u64, "2026-10-31", &[]),
        )?;
        let url = format!(
            "http://127.0.0.1:{}/v1/files?client={client}",
            ports[survivor]
        );
        let served = wait_for(
            Duration::from_secs(120),
            "the survivor to serve the file",
            || async {
                let (s, body) = get_json(&url).await?;
                (s == 200 && body["files"].as_array()?.len() == 1).then_some(())
            },
        )
        .await;
        if let Err(e) = served {
            let tail = replicas[survivor]
                .as_ref()
                .map(Credstream::log_tail)
                .unwrap_or_default();
            drop(replicas);
            let kept = dir.keep();
            let _ = std::fs::copy(tansu.log_path(), kept.join("tansu.log"));
            return Err(e.context(format!(
                "logs kept in {}; survivor log:\n{tail}",
                kept.display()
            )));
        }
        let took = began.elapsed().as_secs_f64();
        eprintln!("takeover run {run} ({kill:?}): {took:.2} s");
        times.push(took);
        replicas[victim] = Some(start(victim, run + 1)?);
    }
    Ok((median(times), SESSION_MS as f64 / 1000.0))
}

fn drop_file(root: &Path, path: &str, text: &str) -> Result<()> {
    let target = root.join("landing").join(path);
    std::fs::create_dir_all(target.parent().unwrap())?;
    let tmp = target.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &target)?;
    Ok(())
}
