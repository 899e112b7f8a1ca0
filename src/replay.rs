//! `credstream replay`: asks the topology to process files again from the raw store, after
//! their layout or schema was fixed.
//!
//! The files are named by digest, or found through the query API: a client's files whose
//! latest outcome is QUARANTINED or PARTIALLY_QUARANTINED. Every file's metadata is looked
//! up before any request is sent, so a wrong digest sends nothing; each request is then
//! sent only after the file's bytes were read back and checked against their digest
//! ([`ArrivalSender::replay`]). With `--wait`, the query API is polled until the topology
//! has written each replay's ledger entry.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Error;
use crate::api_client::{ApiClient, ClientError};
use crate::app::ArrivalSender;
use crate::cli::ReplayArgs;
use crate::config::{Config, ConfigError};
use crate::credit::FileArrived;
use crate::progress::{self, plural};

/// How often `--wait` asks the query API about the replays still pending.
const WAIT_POLL: Duration = Duration::from_secs(1);

/// Ledger statuses that `--quarantined` replays.
const QUARANTINED: [&str; 2] = ["QUARANTINED", "PARTIALLY_QUARANTINED"];

/// Runs `credstream replay`; `api` is needed for `--quarantined` and `--wait`.
pub async fn run(config: &Config, args: ReplayArgs, api: Option<ApiClient>) -> Result<(), Error> {
    let targets = if args.quarantined {
        let client = args.client.as_deref().unwrap_or_default();
        let api = api
            .as_ref()
            .expect("--quarantined comes with the API client");
        let targets = quarantined(api, client).await?;
        if targets.is_empty() {
            eprintln!("replay: client {client} has no file whose latest outcome is quarantined");
            return Ok(());
        }
        targets
    } else {
        digests(&args.sha256)?
    };

    let sender = ArrivalSender::connect(config).await?;
    // Every file must be in the raw store before any request goes out.
    let raw = sender.raw_store();
    for sha in &targets {
        raw.meta(&crate::rawstore::key_for(sha)?).await?;
    }
    let total = targets.len() as u64;
    let bar = progress::counter("replay", total, "files");
    let mut requested = Vec::with_capacity(targets.len());
    for sha in &targets {
        bar.set_message(sha[..12].to_string());
        let arrival = match sender.replay(sha).await {
            Ok(arrival) => arrival,
            Err(e) => {
                bar.abandon();
                eprintln!(
                    "replay: stopped at {sha}: {} requested before it; it and the {} after it were not",
                    plural(requested.len() as u64, "replay"),
                    plural(total - requested.len() as u64 - 1, "file"),
                );
                return Err(e);
            }
        };
        print_line(&format!(
            "replay requested: {} ({} bytes, client {}); follow it at /v1/files/{}",
            arrival.path, arrival.size, arrival.client_id, arrival.sha256
        ))?;
        bar.inc(1);
        requested.push(arrival);
    }
    sender.flush()?;
    bar.finish_and_clear();
    eprintln!("replay: {} requested", plural(total, "replay"));
    match (args.wait, api) {
        (true, Some(api)) => wait(&api, &requested, args.timeout).await,
        _ => Ok(()),
    }
}

/// A line on standard output, with the bars lifted.
fn print_line(line: &str) -> Result<(), Error> {
    progress::suspend(|| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").and_then(|()| out.flush())
    })
    .map_err(|e| Error::io("writing the output", e))
}

/// The `--file` digests, checked, each once, in the order given.
fn digests(given: &[String]) -> Result<Vec<String>, Error> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for sha in given {
        if crate::rawstore::key_for(sha).is_err() {
            return Err(ConfigError::Invalid(format!(
                "--file {sha:?} is not a SHA-256 in lower-case hex (64 digits)"
            ))
            .into());
        }
        if seen.insert(sha.as_str()) {
            out.push(sha.clone());
        }
    }
    Ok(out)
}

/// The digests of `client`'s files whose latest outcome is quarantined, in path order.
/// Files with a quarantined entry whose latest processing (a replay since) had another
/// outcome are named on standard output and left out.
async fn quarantined(api: &ApiClient, client: &str) -> Result<Vec<String>, Error> {
    let spinner = progress::spinner("replay: finding quarantined files", "ledger entries");
    // Digest → path, from every quarantined entry of the client.
    let mut found = BTreeMap::new();
    for status in QUARANTINED {
        let query = [("client", client), ("status", status), ("limit", "1000")];
        api.list(&["v1", "files"], &query, "files", true, |entry| {
            spinner.inc(1);
            if let Some(sha) = entry["file_sha256"].as_str() {
                found
                    .entry(sha.to_string())
                    .or_insert_with(|| entry["file_path"].as_str().unwrap_or("").to_string());
            }
            Ok(())
        })
        .await?;
    }
    let mut chosen = Vec::new();
    let mut skipped = Vec::new();
    for (sha, path) in found {
        let file = api.get(api.url(&["v1", "files", &sha], &[])).await?;
        match latest_outcome(&file["arrivals"]) {
            Some(status) if !QUARANTINED.contains(&status) => {
                skipped.push((path, sha, status.to_string()))
            }
            _ => chosen.push((path, sha)),
        }
    }
    spinner.finish_and_clear();
    skipped.sort();
    for (path, sha, status) in &skipped {
        print_line(&format!(
            "skipped: {path} ({sha}): its latest outcome is {status}"
        ))?;
    }
    chosen.sort();
    eprintln!(
        "replay: client {client}: {} to replay, {} skipped",
        plural(chosen.len() as u64, "quarantined file"),
        skipped.len()
    );
    Ok(chosen.into_iter().map(|(_, sha)| sha).collect())
}

/// The status of the latest processing among a file's ledger entries (`arrivals` of
/// `/v1/files/{sha256}`): DUPLICATE entries are audit events, not outcomes.
fn latest_outcome(arrivals: &Value) -> Option<&str> {
    arrivals
        .as_array()?
        .iter()
        .filter(|e| e["status"] != "DUPLICATE")
        .max_by_key(|e| {
            (
                e["processed_at"].as_i64().unwrap_or(0),
                e["arrived_at"].as_i64().unwrap_or(0),
            )
        })
        .and_then(|e| e["status"].as_str())
}

/// The ledger entry the topology wrote for `requested`: the one of the same bytes that
/// arrived when the request was sent (the ledger's `arrived_at` is the record's
/// `detected_at`), with `replay_of` set unless no earlier arrival existed.
fn replay_entry<'a>(file: &'a Value, requested: &FileArrived) -> Option<&'a Value> {
    file["arrivals"].as_array()?.iter().find(|e| {
        e["arrived_at"].as_i64() == Some(requested.detected_at) && e["status"] != "DUPLICATE"
    })
}

/// Polls the query API until every replay in `requested` has its ledger entry, printing
/// each outcome; fails after `timeout` naming the ones still pending.
async fn wait(api: &ApiClient, requested: &[FileArrived], timeout: Duration) -> Result<(), Error> {
    let began = Instant::now();
    let bar = progress::counter("waiting", requested.len() as u64, "replays processed");
    let mut pending: Vec<&FileArrived> = requested.iter().collect();
    let mut outcomes = BTreeMap::<String, u64>::new();
    loop {
        let mut still = Vec::new();
        for arrival in pending {
            let url = api.url(&["v1", "files", &arrival.sha256], &[]);
            let file = match api.get(url).await {
                Ok(file) => file,
                Err(e) if e.is_not_found() => {
                    still.push(arrival);
                    continue;
                }
                // A replica restarting or rebalancing: ask again at the next round.
                Err(e) if e.kind() == crate::ErrorKind::External => {
                    tracing::warn!(error = %e, "the query API did not answer; asking again");
                    still.push(arrival);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let Some(entry) = replay_entry(&file, arrival) else {
                still.push(arrival);
                continue;
            };
            let status = entry["status"].as_str().unwrap_or("?").to_string();
            let mut line = format!(
                "replayed: {} ({}): {status}, {} records in, {} out, {} quarantined",
                arrival.path,
                arrival.sha256,
                entry["records_in"],
                entry["records_out"],
                entry["records_quarantined"],
            );
            if let Some(reason) = entry["reason"].as_str() {
                line.push_str(&format!("; {reason}"));
            }
            print_line(&line)?;
            *outcomes.entry(status).or_default() += 1;
            bar.inc(1);
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if began.elapsed() >= timeout {
            bar.abandon();
            return Err(ClientError::WaitTimedOut {
                waited_s: began.elapsed().as_secs(),
                pending: pending
                    .iter()
                    .map(|a| format!("{} ({})", a.path, a.sha256))
                    .collect(),
            }
            .into());
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
    bar.finish_and_clear();
    let outcomes: Vec<String> = outcomes.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    eprintln!(
        "replay: {} processed in {:.1} s ({})",
        plural(requested.len() as u64, "replay"),
        began.elapsed().as_secs_f64(),
        outcomes.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digests_are_checked_and_kept_once_in_order() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        assert_eq!(
            digests(&[b.clone(), a.clone(), b.clone()]).unwrap(),
            [b.clone(), a]
        );
        let e = digests(&[b, "B".repeat(64)]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
    }

    #[test]
    fn the_latest_outcome_ignores_duplicates_and_follows_replays() {
        let arrivals = json!([
            {"status": "QUARANTINED", "processed_at": 10, "arrived_at": 1},
            {"status": "PROCESSED", "processed_at": 30, "arrived_at": 3, "replay_of": "p0-1"},
            {"status": "DUPLICATE", "processed_at": 40, "arrived_at": 4},
        ]);
        assert_eq!(latest_outcome(&arrivals), Some("PROCESSED"));
        let arrivals = json!([
            {"status": "QUARANTINED", "processed_at": 10, "arrived_at": 1},
            {"status": "DUPLICATE", "processed_at": 40, "arrived_at": 4},
        ]);
        assert_eq!(latest_outcome(&arrivals), Some("QUARANTINED"));
        assert_eq!(latest_outcome(&json!([])), None);
    }

    #[test]
    fn a_replay_is_found_by_the_time_its_request_was_sent() {
        let requested = FileArrived {
            client_id: "acme".into(),
            source: "replay".into(),
            path: "acme/a.csv".into(),
            size: 1,
            mtime: 0,
            sha256: "a".repeat(64),
            raw_key: String::new(),
            detected_at: 2000,
            replay: true,
        };
        let file = json!({"arrivals": [
            {"status": "QUARANTINED", "arrived_at": 1000},
            {"status": "PROCESSED", "arrived_at": 2000, "replay_of": "p0-1"},
        ]});
        assert_eq!(
            replay_entry(&file, &requested).unwrap()["status"],
            "PROCESSED"
        );
        let file = json!({"arrivals": [{"status": "QUARANTINED", "arrived_at": 1000}]});
        assert!(replay_entry(&file, &requested).is_none());
    }
}
