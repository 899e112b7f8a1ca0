//! `credstream demo`: the whole pipeline on an embedded default, with no outside service.
//!
//! Kafka is librdkafka's mock cluster (in this process, on a loopback port), the schema
//! registry is the embedded one, and the landing area and raw store are directories under
//! the demo directory, which is emptied at start so every run begins clean.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

use crate::app::{self, Role};
use crate::config::{Config, SourceConfig, SourceKind};
use crate::credit::{FileLedgerEntry, LEDGER_STORE, planned_topics};
use crate::formats::Catalog;
use crate::samples::account_master_csv;
use crate::streams::StoreRegistry;

/// Marks a directory as the demo's own, so emptying it can never remove anything else.
const MARKER: &str = ".credstream-demo";
/// How long the demo waits for a file to be processed before giving up.
const FILE_TIMEOUT: Duration = Duration::from_secs(60);

fn io(context: String) -> impl FnOnce(std::io::Error) -> crate::Error {
    move |e| crate::Error::io(context, e)
}

/// Empties (or creates) the demo directory, refusing directories it did not make.
fn reset_dir(dir: &Path) -> Result<(), crate::Error> {
    if dir.exists() {
        let is_empty = std::fs::read_dir(dir)
            .map_err(io(format!("reading {}", dir.display())))?
            .next()
            .is_none();
        if !is_empty && !dir.join(MARKER).exists() {
            return Err(crate::config::ConfigError::Invalid(format!(
                "refusing to empty {}: it is not a credstream demo directory (no {MARKER} file); pass another --dir",
                dir.display()
            ))
            .into());
        }
        std::fs::remove_dir_all(dir).map_err(io(format!("emptying {}", dir.display())))?;
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    std::fs::write(
        dir.join(MARKER),
        "made by credstream demo; emptied at every run\n",
    )
    .map_err(io(format!("writing in {}", dir.display())))
}

/// Runs the demo; with `serve`, keeps serving after the summary until `stop`.
pub async fn run(
    dir: &Path,
    listen: SocketAddr,
    serve: bool,
    stop: CancellationToken,
) -> Result<(), crate::Error> {
    reset_dir(dir)?;
    let dir = std::path::absolute(dir).map_err(io("resolving the demo directory".into()))?;
    let landing = dir.join("landing");
    std::fs::create_dir_all(landing.join("acme-bank"))
        .map_err(io(format!("creating {}", landing.display())))?;

    let mut config = Config::default();
    config.app.id = "credstream-demo".into();
    config.app.state_dir = dir.join("state");
    config.raw_store.path = dir.join("raw");
    config.kafka.partitions = 3;
    // The mock cluster cannot create topics through the admin API; they are made below.
    config.kafka.create_topics = false;
    config.registry.embedded = true;
    config.registry.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.query.listen = free_or_any(listen).await;
    config.sources.insert(
        "landing".into(),
        SourceConfig {
            kind: SourceKind::Local,
            path: landing.clone(),
            poll_interval_ms: 300,
        },
    );

    let cluster = MockCluster::new(1)
        .map_err(|e| crate::streams::StreamsError::kafka("start the mock cluster", e))?;
    config.kafka.bootstrap_servers = cluster.bootstrap_servers();
    for topic in planned_topics(&config, &Catalog::builtin()?) {
        cluster
            .create_topic(&topic.name, topic.partitions, 1)
            .map_err(|e| {
                crate::streams::StreamsError::kafka(format!("create {}", topic.name), e)
            })?;
    }
    cluster
        .create_topic(&config.registry.topic, 1, 1)
        .map_err(|e| crate::streams::StreamsError::kafka("create the registry topic", e))?;
    println!("credstream demo in {}", dir.display());
    println!("  Kafka (mock cluster): {}", config.kafka.bootstrap_servers);

    let app = app::start(&config, &Role::ALL).await?;
    let query = app.query_addr.expect("the demo runs the query role");
    let outcome = feed_samples(&landing, &app.stores, &stop).await;
    if let Err(e) = outcome {
        app.shutdown();
        let _ = app.wait().await;
        return Err(e);
    }
    print_summary(&app.stores)?;
    println!();
    println!("  Query API:  http://{query}/v1/files");
    println!("  Metrics:    http://{query}/metrics");
    println!("  Registry:   {}/subjects", app.registry_url);
    if serve && !stop.is_cancelled() {
        println!("Serving until Ctrl-C.");
        stop.cancelled().await;
    }
    app.shutdown();
    app.wait().await?;
    drop(cluster);
    Ok(())
}

/// The requested address if it is free, else any free port (the demo must start).
async fn free_or_any(listen: SocketAddr) -> SocketAddr {
    match tokio::net::TcpListener::bind(listen).await {
        Ok(_) => listen,
        Err(_) => {
            println!("  {listen} is in use; the query API takes a free port instead");
            SocketAddr::new(listen.ip(), 0)
        }
    }
}

/// Drops the three sample files one after another, each once the previous is processed.
async fn feed_samples(
    landing: &Path,
    stores: &StoreRegistry,
    stop: &CancellationToken,
) -> Result<(), crate::Error> {
    let clean = account_master_csv(1000, 2026, "2026-10-31", &[]);
    let drifted = account_master_csv(250, 2027, "2026-11-30", &["PromotionalApr"]);
    let samples: [(&str, &str, &str); 3] = [
        (
            "acme-bank/accounts_2026-10.csv",
            &clean,
            "a clean account master",
        ),
        (
            "acme-bank/resent/accounts_2026-10.csv",
            &clean,
            "the same bytes again",
        ),
        (
            "acme-bank/accounts_2026-11.csv",
            &drifted,
            "a file whose header gained a column",
        ),
    ];
    for (n, (path, text, what)) in samples.iter().enumerate() {
        let target: PathBuf = landing.join(path);
        std::fs::create_dir_all(target.parent().expect("a file has a directory"))
            .map_err(io(format!("creating {}", target.display())))?;
        // Write under a temporary name and rename, as an uploader would.
        let tmp = target.with_extension("csv.tmp");
        std::fs::write(&tmp, text).map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &target).map_err(io(format!("renaming {}", tmp.display())))?;
        println!("  dropped {path} ({what})");
        wait_for_entries(stores, n + 1, stop).await?;
    }
    Ok(())
}

async fn wait_for_entries(
    stores: &StoreRegistry,
    count: usize,
    stop: &CancellationToken,
) -> Result<(), crate::Error> {
    let began = Instant::now();
    loop {
        if ledger(stores)?.len() >= count {
            return Ok(());
        }
        if stop.is_cancelled() {
            return Err(crate::streams::StreamsError::Shutdown("interrupted").into());
        }
        if began.elapsed() > FILE_TIMEOUT {
            return Err(crate::streams::StreamsError::Shutdown(
                "a sample file was not processed within 60 s; see the log above",
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ledger(stores: &StoreRegistry) -> Result<Vec<FileLedgerEntry>, crate::Error> {
    let mut entries: Vec<FileLedgerEntry> = stores
        .scan(LEDGER_STORE, b"", None, usize::MAX)?
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice(v).ok())
        .collect();
    entries.sort_by_key(|e| e.arrived_at);
    Ok(entries)
}

fn print_summary(stores: &StoreRegistry) -> Result<(), crate::Error> {
    let entries = ledger(stores)?;
    println!();
    println!(
        "{:<40} {:<12} {:>6} {:>6} {:>6}  REASON",
        "FILE", "STATUS", "IN", "OUT", "HELD"
    );
    let (mut out, mut held) = (0, 0);
    for e in &entries {
        out += e.records_out;
        held += e.records_quarantined;
        println!(
            "{:<40} {:<12} {:>6} {:>6} {:>6}  {}",
            e.file_path,
            e.status.as_str(),
            e.records_in,
            e.records_out,
            e.records_quarantined,
            e.reason.as_deref().unwrap_or("")
        );
    }
    println!();
    println!(
        "{} files; {out} records out to credstream.card.accounts; {held} records quarantined",
        entries.len()
    );
    Ok(())
}
