//! `credstream demo`: the whole pipeline on an embedded default, with no outside service.
//!
//! Kafka is librdkafka's mock cluster (in this process, on a loopback port), the schema
//! registry is the embedded one, and the landing area and raw store are directories under
//! the demo directory, which is emptied at start so every run begins clean.
//!
//! The samples are a client's month from `credstream gen month`: the account snapshots
//! either side of it, a postings file per day (one with a bad trailer, one corrected
//! later, one sent twice), a Metro 2 file, and an extract whose header drifted. The demo
//! delivers them as a client would, then prints the ledger and the month-end
//! reconciliation, and checks the report found exactly the exceptions planted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

use crate::app::{self, Role};
use crate::config::{Config, SourceConfig};
use crate::credit::{FileLedgerEntry, LEDGER_STORE, planned_topics, views};
use crate::formats::Catalog;
use crate::samples::{
    ExpectedExceptions, Metro2Spec, Month, MonthSpec, account_master_csv, write_metro2, write_month,
};
use crate::streams::StoreRegistry;

/// The client and month of the demo's samples.
const CLIENT: &str = "acme-bank";
const PERIOD: (i32, u32) = (2026, 10);

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
    // A key of the demo's own, in its directory: tokens are stable for the run.
    let key_file = dir.join("tokenisation.key");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_file)
            .and_then(|mut f| f.write_all(crate::app::random_key().expose().as_bytes()))
            .map_err(io(format!("writing {}", key_file.display())))?;
    }
    config.tokenisation.key_file = Some(key_file);
    config.kafka.partitions = 3;
    // The mock cluster cannot create topics through the admin API; they are made below.
    config.kafka.create_topics = false;
    config.registry.embedded = true;
    config.registry.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.query.listen = free_or_any(listen).await;
    config
        .sources
        .insert("landing".into(), SourceConfig::local(landing.clone(), 300));
    // Expected deliveries, for the ExpectedFileMissing alert: acme-bank's daily postings
    // arrive; a second client's never do.
    for client in [CLIENT, "globex-bank"] {
        config.deliveries.push(crate::config::DeliveryConfig {
            client: client.into(),
            category: "card.transactions".into(),
            cutoff: "06:00".into(),
            window_hours: 24,
            weekdays_only: false,
        });
    }

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
    let outcome = feed_samples(&dir, &landing, &app.stores, &stop).await;
    let expected = match outcome {
        Ok(expected) => expected,
        Err(e) => {
            app.shutdown();
            let _ = app.wait().await;
            return Err(e);
        }
    };
    print_summary(&app.stores)?;
    print_reconciliation(&app.stores, &expected)?;
    println!();
    println!("  Query API:  http://{query}/v1/files");
    println!(
        "  Report:     http://{query}/v1/reports/reconciliation?client={CLIENT}&period={}",
        month().map_or(String::new(), |m| m.to_string())
    );
    println!("  Views:      http://{query}/v1/views");
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

fn month() -> Option<Month> {
    Month::new(PERIOD.0, PERIOD.1)
}

/// Writes the samples under `<dir>/staging` and delivers them to the landing area as a
/// client would: the month's files, then the corrections, then the resent ones, each batch
/// once the previous is processed. Returns the exceptions the report must find.
async fn feed_samples(
    dir: &Path,
    landing: &Path,
    stores: &StoreRegistry,
    stop: &CancellationToken,
) -> Result<ExpectedExceptions, crate::Error> {
    let staging = dir.join("staging");
    let month = month().expect("a valid month");
    let mut spec = MonthSpec::new(CLIENT, month, 2026);
    spec.accounts = 500;
    spec.postings_per_day = 200;
    spec.balance_mismatches = 2;
    spec.bad_trailer_days = vec![12];
    spec.corrections = vec![5];
    spec.duplicates = 1;
    let manifest = write_month(&staging, &spec)
        .map_err(io(format!("writing samples in {}", staging.display())))?;
    let extra = |name: &str, bytes: Vec<u8>| -> Result<PathBuf, crate::Error> {
        let path = manifest.client_dir.join(name);
        std::fs::write(&path, bytes).map_err(io(format!("writing {}", path.display())))?;
        Ok(path)
    };
    let metro2_spec = Metro2Spec::new(month, spec.seed, spec.accounts);
    let mut metro2 = Vec::new();
    write_metro2(&mut metro2, &metro2_spec, |_| {})
        .map_err(io("generating the Metro 2 sample".into()))?;
    let metro2 = extra(&metro2_spec.file_name(), metro2)?;
    let drifted = extra(
        "accounts_extract.csv",
        account_master_csv(250, 2027, "2026-10-31", &["PromotionalApr"]).into_bytes(),
    )?;
    let originals: Vec<PathBuf> = manifest
        .files
        .iter()
        .filter(|f| !manifest.corrections.contains(f) && !manifest.duplicates.contains(f))
        .cloned()
        .chain([metro2, drifted])
        .collect();
    let mut delivered = 0;
    for (batch, what) in [
        (
            &originals,
            "the month's files, a Metro 2 file and a drifted extract",
        ),
        (&manifest.corrections, "a corrected postings file"),
        (&manifest.duplicates, "a file sent a second time"),
    ] {
        for file in batch {
            let path = file
                .strip_prefix(&staging)
                .expect("samples are under staging");
            let target = landing.join(path);
            std::fs::create_dir_all(target.parent().expect("a file has a directory"))
                .map_err(io(format!("creating {}", target.display())))?;
            // Copy under a temporary name and rename, as an uploader would.
            let tmp = target.with_extension("tmp");
            std::fs::copy(file, &tmp).map_err(io(format!("writing {}", tmp.display())))?;
            std::fs::rename(&tmp, &target).map_err(io(format!("renaming {}", tmp.display())))?;
        }
        delivered += batch.len();
        println!("  dropped {} files: {what}", batch.len());
        wait_for_entries(stores, delivered, stop).await?;
    }
    Ok(manifest.expected)
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
        "{:<48} {:<22} {:>6} {:>6} {:>6}  REASON",
        "FILE", "STATUS", "IN", "OUT", "HELD"
    );
    let (mut out, mut held) = (0, 0);
    for e in &entries {
        out += e.records_out;
        held += e.records_quarantined;
        println!(
            "{:<48} {:<22} {:>6} {:>6} {:>6}  {}",
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
        "{} files; {out} records out; {held} records quarantined",
        entries.len()
    );
    Ok(())
}

/// Prints the month-end reconciliation and whether it found exactly what was planted.
fn print_reconciliation(
    stores: &StoreRegistry,
    expected: &ExpectedExceptions,
) -> Result<(), crate::Error> {
    let report = views::reconciliation(stores, CLIENT, &expected.period, usize::MAX)
        .map_err(crate::credit::CreditError::Report)?;
    let roll = &report["roll_forward"];
    println!();
    println!(
        "Reconciliation of {CLIENT} for {}: {} — {} accounts rolled forward, {} matched; \
         opening {} + postings {} vs closing {}",
        expected.period,
        report["verdict"].as_str().unwrap_or_default(),
        roll["accounts"],
        roll["matched"],
        roll["opening_total"].as_str().unwrap_or_default(),
        roll["postings_total"].as_str().unwrap_or_default(),
        roll["closing_total"].as_str().unwrap_or_default(),
    );
    const SHOWN: usize = 12;
    let mut found = Vec::new();
    let exceptions = report["exceptions"].as_array().cloned().unwrap_or_default();
    for (i, e) in exceptions.iter().enumerate() {
        let kind = e["kind"].as_str().unwrap_or_default();
        let line = match kind {
            "BALANCE_MISMATCH" => format!(
                "{} opening {} + postings {} != closing {} (difference {})",
                e["account"].as_str().unwrap_or_default(),
                e["opening"].as_str().unwrap_or_default(),
                e["postings"].as_str().unwrap_or_default(),
                e["closing"].as_str().unwrap_or_default(),
                e["difference"].as_str().unwrap_or_default()
            ),
            "FILE_HELD" => format!(
                "{} ({})",
                e["path"].as_str().unwrap_or_default(),
                e["reason"].as_str().unwrap_or_default()
            ),
            _ => e.to_string(),
        };
        if i < SHOWN {
            println!("  {kind:<18} {line}");
        } else if i == SHOWN {
            println!(
                "  … and {} more: see the report at the URL below",
                exceptions.len() - SHOWN
            );
        }
        found.push(match kind {
            "BALANCE_MISMATCH" => format!(
                "{} {}",
                e["account"].as_str().unwrap_or_default(),
                e["difference"].as_str().unwrap_or_default()
            ),
            "FILE_HELD" => e["path"]
                .as_str()
                .and_then(|p| p.rsplit('/').next())
                .unwrap_or_default()
                .to_string(),
            _ => e.to_string(),
        });
    }
    let mut planted: Vec<String> = expected
        .balance_mismatches
        .iter()
        .map(|b| format!("{} {}", b.account, b.difference))
        .chain(expected.files_held.iter().cloned())
        .collect();
    planted.sort();
    found.sort();
    if let Some(note) = report["note"].as_str() {
        println!("  Note: {note}");
    }
    println!(
        "The report {} the {} exceptions the samples planted.",
        if found == planted {
            "found exactly"
        } else {
            "DID NOT find exactly"
        },
        planted.len()
    );
    Ok(())
}
