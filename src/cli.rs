//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::app::Role;
use crate::streams::DescribeFormat;

/// credstream: a stream processor for regulated credit data.
///
/// Issuer files dropped in landing areas are archived content-addressed, parsed with
/// declarative layouts, validated against Avro contracts, and written to Kafka topics,
/// with drift sent to quarantine and every file accounted for in a ledger.
#[derive(Debug, Parser)]
#[command(name = "credstream", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 success; 1 failure while running (a bug or bad state, or a request \
the query API refused); \
2 bad command line or configuration; 3 an outside system (broker, registry, store, query API) was \
unavailable or failed; 4 (parse) the file did not parse cleanly.\n\n\
Every configuration key can be set by an environment variable: CREDSTREAM_<SECTION>__<KEY>, \
e.g. CREDSTREAM_KAFKA__BOOTSTRAP_SERVERS=broker:9092."
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "CREDSTREAM_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// Log filter, in `tracing` directive syntax (e.g. `info`, `credstream=debug`).
    /// Default: `info`; `error` for `demo`, whose own output tells the story; `off` for
    /// `query`, which prints its own errors.
    #[arg(long, global = true, env = "CREDSTREAM_LOG")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline from a configuration file: all roles, or those given with --role.
    Run {
        /// The TOML configuration file.
        #[arg(long, short, env = "CREDSTREAM_CONFIG")]
        config: PathBuf,
        /// A role to run; repeat for several. Default: all.
        #[arg(long, value_enum)]
        role: Vec<Role>,
    },
    /// Run the embedded default: an in-process Kafka-protocol broker (librdkafka's mock
    /// cluster), the embedded schema registry and local directories. Generates sample files,
    /// processes them, prints a summary, then serves the query API until Ctrl-C.
    Demo {
        /// Working directory for the landing area, raw store and state; emptied first.
        #[arg(long, default_value = ".credstream-demo")]
        dir: PathBuf,
        /// Address of the query API and /metrics.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Print the summary and exit instead of serving.
        #[arg(long)]
        no_serve: bool,
    },
    /// Process files again from the raw store, after their layout or schema was fixed.
    ///
    /// Sends a replay request for each file to the topology (a `FileArrived` record with
    /// `replay` set). The topology processes the bytes as if they were new; its ledger
    /// entry names the arrival it supersedes (`replay_of`). Output keys are the same as a
    /// first processing would give (`<sha256>:<record index>`), so consumers that keep the
    /// latest value per key end as if the file had been good the first time.
    ///
    /// Name the files with --file, or let --quarantined --client find them through the
    /// query API (--api and --token-file serve --quarantined and --wait only). Every file
    /// must be in the raw store before any request is sent, and each file's bytes are read
    /// back and checked against their digest before its own request goes. Prints one line
    /// per request on standard output (and with --wait one per outcome), with a bar over
    /// the files on standard error when it is a terminal.
    Replay(ReplayArgs),
    /// Load a directory of historical files into the pipeline once, as the poller would.
    ///
    /// The first folder under --dir is each file's client id (or --client for a flat
    /// directory). Names are judged as the poller judges them: dot files and partial
    /// uploads (`.tmp`, `.part`, `.filepart`, …) are skipped, unsafe names (symbolic links,
    /// names over 255 bytes or paths over 1024) are refused, warned about and left alone,
    /// and odd characters are escaped as `%XX` in the records. Each file is read once while
    /// hashed, checked unchanged, put in the configured raw store, and only then announced
    /// by a `FileArrived` record on the arrivals topic, one file at a time in path order.
    ///
    /// Files whose bytes were delivered before (archived already) may be loaded again:
    /// the topology's dedup store makes them DUPLICATE ledger entries and counts nothing
    /// twice; likewise when a backfill is run again after a failure. Files must be
    /// complete: unlike the poller, backfill does not wait for them to settle, and a file
    /// that changes while it is read stops it. It stops at the first error, with nothing
    /// emitted for the file that failed; the files before it stay emitted.
    ///
    /// Prints one JSON line per file emitted (client_id, path, size, sha256) on standard
    /// output, a bar over the bytes on standard error when it is a terminal, and a summary
    /// line at the end.
    Backfill(BackfillArgs),
    /// Read the query API of a running deployment: the file ledger, the views, the
    /// quarantine and the reconciliation report.
    ///
    /// Prints the API's JSON: pretty by default, or one item per line with --output
    /// jsonl. API errors print as `error: <code>: <message>`, with exit code 3 when the
    /// API is unavailable or failed (5xx) or cannot be reached, and 1 otherwise.
    Query(QueryArgs),
    /// Parse one file with its layout and print its records as JSON lines, then a verdict
    /// line with counts and the trailer reconciliation. Needs no Kafka, registry or raw
    /// store. Exit code 4 when a record or the whole file would be quarantined.
    Parse {
        /// The file to parse.
        file: PathBuf,
        /// The category (layout) to parse it with; default: the one its name matches.
        #[arg(long)]
        category: Option<String>,
        /// A configuration file, for `topology.dir` (default: the built-in layouts).
        #[arg(long, short, env = "CREDSTREAM_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write realistic synthetic issuer files, deterministic for a seed: for demos, tests
    /// and benchmarks. Streams to the output, so millions of records fit in no memory.
    /// A progress bar goes to standard error when it is a terminal, and a summary line
    /// (records, bytes, time) at the end in any case.
    Gen {
        #[command(subcommand)]
        kind: GenKind,
    },
    /// Inspect the stream topology.
    Topology {
        #[command(subcommand)]
        action: TopologyAction,
    },
    /// Serve the schema registry (Confluent REST API) on its own.
    ///
    /// Its state lives in a compacted topic (`_schemas` by default), so several registry
    /// processes on one cluster agree and a restart loses nothing.
    Registry {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// Kafka bootstrap servers holding the registry's topic.
        #[arg(long, env = "CREDSTREAM_REGISTRY_BROKERS")]
        brokers: String,
        /// The topic the registry keeps its state in.
        #[arg(long, default_value = "_schemas")]
        topic: String,
        /// A librdkafka client property for the registry's producer and reader, as
        /// KEY=VALUE (repeatable), e.g. `security.protocol=SSL`.
        #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
        kafka_properties: Vec<(String, String)>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TopologyAction {
    /// Print the topology: source, processor, stores with their changelogs, sinks.
    Describe {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: DescribeFormat,
        /// Configuration whose topic prefix, application id and categories to use.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

impl Command {
    /// Roles to run for `run`.
    pub fn roles(role: &[Role]) -> Vec<Role> {
        if role.is_empty() {
            Role::ALL.to_vec()
        } else {
            role.to_vec()
        }
    }
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    if k.trim().is_empty() {
        return Err(format!("empty property name in {text:?}"));
    }
    Ok((k.trim().to_string(), v.to_string()))
}

/// `credstream replay`: --file or --quarantined, one of them.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("files").required(true).args(["sha256", "quarantined"]))]
pub struct ReplayArgs {
    /// The TOML configuration file of the deployment.
    #[arg(long, short, env = "CREDSTREAM_CONFIG")]
    pub config: PathBuf,
    /// A file to replay: its SHA-256 (lower-case hex), as in `/v1/files`. Repeatable.
    #[arg(long = "file", value_name = "SHA256")]
    pub sha256: Vec<String>,
    /// Replay the files of --client whose latest outcome is QUARANTINED or
    /// PARTIALLY_QUARANTINED, found through the query API (--api). Files replayed since
    /// with another outcome (e.g. PROCESSED) are skipped and named.
    #[arg(long, requires = "client")]
    pub quarantined: bool,
    /// The client whose quarantined files to replay (with --quarantined).
    #[arg(long, value_name = "ID", requires = "quarantined")]
    pub client: Option<String>,
    /// After sending the requests, wait until the topology has processed each replay
    /// (its ledger entry, with `replay_of` set, is in the query API) and print each outcome.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits for all the replays before failing (exit code 3) with the
    /// files still pending: a number with s, m or h (`90s`, `10m`, `1h`).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration, requires = "wait")]
    pub timeout: std::time::Duration,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `credstream backfill`.
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The TOML configuration file of the deployment: its Kafka, registry and raw store.
    #[arg(long, short, env = "CREDSTREAM_CONFIG")]
    pub config: PathBuf,
    /// The directory of historical files: `DIR/<client id>/…/<file>`, or files of one
    /// client (flat or not) with --client.
    #[arg(long)]
    pub dir: PathBuf,
    /// The client id of every file under --dir, for a directory that holds one client's
    /// files (the paths in the records are then relative to --dir).
    #[arg(long, value_name = "ID")]
    pub client: Option<String>,
    /// List what would be emitted (one JSON line per file: client_id, path, size) and the
    /// names refused, without reading a file or connecting to anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// How to reach the query API.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Base URL of the query API.
    #[arg(
        long,
        value_name = "URL",
        env = "CREDSTREAM_API",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub api: String,
    /// A file holding a token, sent as `Authorization: Bearer <token>` (surrounding
    /// whitespace ignored). Default: the CREDSTREAM_TOKEN environment variable, if set.
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
}

/// `credstream query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Output format. `pretty`: the API's JSON, indented; a list with --all is the first
    /// page's document holding the items of every page. `jsonl`: one JSON value per line,
    /// each item of a list as its page arrives, or the one document.
    #[arg(long, value_enum, default_value = "pretty", global = true)]
    pub output: OutputFormat,
    #[command(subcommand)]
    pub what: QueryCommand,
}

/// How `credstream query` prints what the API returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Indented JSON.
    Pretty,
    /// JSON lines: one item of a list per line.
    Jsonl,
}

/// What `credstream query` reads.
#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// The file ledger, one entry per arrival of a file, in key order (GET /v1/files).
    Files {
        /// Only this client's files.
        #[arg(long)]
        client: Option<String>,
        /// Only entries with this status.
        #[arg(long, ignore_case = true, value_parser = [
            "PROCESSED", "PARTIALLY_QUARANTINED", "QUARANTINED", "DUPLICATE", "SUPERSEDED",
        ])]
        status: Option<String>,
        /// Only files of this category (e.g. `card.accounts`).
        #[arg(long)]
        category: Option<String>,
        /// Only files whose name states this period: a month (`2026-10`, its days too) or
        /// a day (`2026-10-05`).
        #[arg(long)]
        period: Option<String>,
        /// Entries per page, 1 to 1000 (the API's default: 100); with --all, per request.
        #[arg(long)]
        limit: Option<usize>,
        /// Follow `next_cursor` until the last page; a count on standard error meanwhile.
        #[arg(long)]
        all: bool,
    },
    /// Every arrival of one file's bytes, and its logical file's version chain
    /// (GET /v1/files/{sha256}).
    File {
        /// The file's SHA-256, lower-case hex.
        sha256: String,
    },
    /// The views and what their keys are (GET /v1/views).
    Views,
    /// A view's entries in key order, or one entry by its key (GET /v1/views/{view} and
    /// /v1/views/{view}/{key}).
    View {
        /// The view: accounts, balances, postings or control-totals (`credstream query views`).
        name: String,
        /// One entry's key, e.g. `acme-bank/ACC202600000001` for accounts.
        key: Option<String>,
        /// Only entries whose key starts with this (e.g. a client: `acme-bank/`).
        #[arg(long, conflicts_with = "key")]
        prefix: Option<String>,
        /// Entries per page, 1 to 1000 (the API's default: 100); with --all, per request.
        #[arg(long, conflicts_with = "key")]
        limit: Option<usize>,
        /// Follow `next_cursor` until the last page; a count on standard error meanwhile.
        #[arg(long, conflicts_with = "key")]
        all: bool,
    },
    /// Quarantined records and files, with their reasons (GET /v1/quarantine).
    Quarantine {
        /// Only this client's entries.
        #[arg(long)]
        client: Option<String>,
        /// Only entries of one file of --client: its SHA-256.
        #[arg(long, value_name = "SHA256", requires = "client")]
        file: Option<String>,
        /// Only entries of this class (e.g. `TRAILER_MISMATCH`).
        #[arg(long)]
        class: Option<String>,
        /// Only entries of files of this category (e.g. `card.transactions`).
        #[arg(long)]
        category: Option<String>,
        /// Entries per page, 1 to 1000; with --all, per request.
        #[arg(long)]
        limit: Option<usize>,
        /// Follow `next_cursor` until the last page; a count on standard error meanwhile.
        #[arg(long)]
        all: bool,
    },
    /// The month-end reconciliation of a client: trailer against parsed for every file of
    /// the month, and the account roll-forward with every exception
    /// (GET /v1/reports/reconciliation).
    Report {
        /// The client.
        #[arg(long)]
        client: String,
        /// The month.
        #[arg(long, value_name = "YYYY-MM")]
        period: String,
    },
}

/// A duration on the command line: a number of seconds, or a number with `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("expected a duration such as 90s, 10m or 1h, got {text:?}"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("unknown unit {unit:?} in {text:?}: use s, m or h")),
    };
    Ok(std::time::Duration::from_secs(seconds))
}

/// Kinds of synthetic file `credstream gen` writes. Every kind speaks of the same
/// accounts: account `i` of a seed has one reference and one card number in every file.
#[derive(Debug, Subcommand)]
pub enum GenKind {
    /// Account master snapshot, CSV (FR Y-14M D.1 names): category card.accounts.
    Accounts(GenAccounts),
    /// One day's posted transactions, fixed width: category card.transactions.
    ///
    /// H/D/T records of 160 bytes. Posts to the first --accounts accounts of `gen
    /// accounts` with the same --seed: their references and card numbers.
    Transactions(GenTransactions),
    /// One month's Metro 2 file, character format: category metro2.base.
    ///
    /// 426-byte base segments, some with a J1 or J2 segment, and a trailer counting
    /// them. Base record i reports account i of `gen accounts` with the same --seed: its
    /// card number, limit, and balance at the month's end in whole dollars.
    Metro2(GenMetro2),
    /// A client's month for the month-end reconciliation, with planted exceptions.
    ///
    /// Writes OUT/CLIENT/: last month's snapshot accounts_YYYY-MM.csv, one
    /// postings_YYYY-MM-DD_01.dat per day, this month's snapshot (its balances roll last
    /// month's forward by the postings), corrected postings in corrections/ (same name,
    /// superseding the first file), byte-for-byte duplicates in resent/ (never to be
    /// counted twice), and expected_exceptions.json: the held files (wrong trailer) and
    /// every account whose opening balance plus accepted postings is not its closing
    /// balance: the planted mismatches and the accounts a held file posted to. Prints the
    /// files in delivery order.
    Month(GenMonth),
}

/// `credstream gen accounts`.
#[derive(Debug, clap::Args)]
pub struct GenAccounts {
    /// Data records (accounts) to write.
    #[arg(long, default_value_t = 10_000)]
    pub records: usize,
    /// Seed: the same seed and arguments always give the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Cycle end date of the snapshot (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD", default_value = "2026-10-31")]
    pub cycle_end: String,
    /// Append a trailer row with the record count and the balance total.
    #[arg(long)]
    pub trailer: bool,
    /// Make the trailer wrong (implies --trailer): one record too many, or one cent.
    #[arg(long, value_enum)]
    pub bad_trailer: Option<TrailerFaultArg>,
    /// Drift: add an undeclared column (repeatable), as a client changing its extract
    /// without notice does.
    #[arg(long = "extra-column", value_name = "NAME")]
    pub extra_columns: Vec<String>,
    /// Output file; `-` for standard output.
    #[arg(long, short, default_value = "-")]
    pub out: PathBuf,
}

/// `credstream gen transactions`.
#[derive(Debug, clap::Args)]
pub struct GenTransactions {
    /// Detail records (postings) to write, at most 9999999.
    #[arg(long, default_value_t = 10_000)]
    pub records: usize,
    /// Seed of the accounts posted to and of the postings.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The posting day: the file date and every record's PostDate (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD", default_value = "2026-10-15")]
    pub day: String,
    /// The day's file sequence, 1 to 99.
    #[arg(long, default_value_t = 1)]
    pub sequence: u8,
    /// Post to the first N accounts of the account master of --seed (its --records).
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub accounts: usize,
    /// The issuer name in the header, at most 30 characters.
    #[arg(long, default_value = "CREDSTREAM SAMPLE BANK")]
    pub issuer: String,
    /// Make the trailer wrong, so the file is held: its detail count one too many, or its
    /// debit total one cent too many.
    #[arg(long, value_enum, conflicts_with = "bad_record")]
    pub bad_trailer: Option<TrailerFaultArg>,
    /// Plant one bad record in the middle, quarantined alone (the trailer still
    /// reconciles): one byte short, or an amount that is not a number.
    #[arg(long, value_enum)]
    pub bad_record: Option<BadRecordArg>,
    /// Output file; `-` for standard output.
    #[arg(long, short, default_value = "-")]
    pub out: PathBuf,
}

/// `credstream gen metro2`.
#[derive(Debug, clap::Args)]
pub struct GenMetro2 {
    /// Base records: the first N accounts of the account master of --seed.
    #[arg(long, default_value_t = 1_000)]
    pub records: usize,
    /// Seed of the accounts reported.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The month reported (YYYY-MM): every record's date of account information is its
    /// last day.
    #[arg(long, value_name = "YYYY-MM", default_value = "2026-10")]
    pub month: String,
    /// Make the trailer wrong: total base records one too many.
    #[arg(long, value_enum)]
    pub bad_trailer: Option<Metro2TrailerFaultArg>,
    /// Output file; `-` for standard output.
    #[arg(long, short, default_value = "-")]
    pub out: PathBuf,
}

/// `credstream gen month`.
#[derive(Debug, clap::Args)]
pub struct GenMonth {
    /// Directory to write CLIENT/ in; OUT/CLIENT must not exist or be empty.
    #[arg(long, short)]
    pub out: PathBuf,
    /// The client: the name of the directory under --out, as a landing area names clients.
    #[arg(long, default_value = "ACME")]
    pub client: String,
    /// The month reconciled (YYYY-MM); the previous month's snapshot is written too.
    #[arg(long, value_name = "YYYY-MM", default_value = "2026-10")]
    pub month: String,
    /// Seed of the accounts and everything else.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Accounts in each snapshot.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub accounts: usize,
    /// Postings in each day's file.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub postings_per_day: usize,
    /// Accounts whose month-end balance is written 1.00 to 50.00 off.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub balance_mismatches: usize,
    /// A day (1-31) whose postings file gets a wrong trailer, so it is held and its
    /// postings are missing from the roll-forward (repeatable).
    #[arg(long = "bad-trailer-day", value_name = "DAY")]
    pub bad_trailer_days: Vec<u32>,
    /// A day (1-31) whose postings file is sent again, corrected, in corrections/
    /// (repeatable). The correction supersedes the first file.
    #[arg(long = "correction-day", value_name = "DAY")]
    pub correction_days: Vec<u32>,
    /// Files of the month sent a second time, byte for byte, in resent/.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub duplicates: usize,
}

/// What a bad trailer gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TrailerFaultArg {
    /// One record too many.
    Count,
    /// One cent too many (accounts: the balance total; transactions: the debit total).
    Sum,
}

/// What a bad Metro 2 trailer gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Metro2TrailerFaultArg {
    /// Total base records one too many.
    Count,
}

/// What a planted bad record gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BadRecordArg {
    /// The record is 159 bytes (WRONG_RECORD_LENGTH).
    WrongLength,
    /// The amount has a comma among its digits (TYPE_MISMATCH).
    BadAmount,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_take_seconds_minutes_or_hours() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn replay_takes_files_or_quarantined_and_not_both() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["credstream", "replay", "-c", "c.toml"].iter().chain(args))
        };
        let sha = "a".repeat(64);
        let Command::Replay(r) = parse(&["--file", &sha, "--file", &sha]).unwrap().command else {
            panic!("not a replay");
        };
        assert_eq!(r.sha256.len(), 2);
        assert!(!r.wait);
        assert!(parse(&[]).is_err(), "nothing to replay");
        assert!(parse(&["--quarantined"]).is_err(), "no --client");
        assert!(
            parse(&["--client", "acme"]).is_err(),
            "--client without --quarantined"
        );
        assert!(parse(&["--file", &sha, "--quarantined", "--client", "a"]).is_err());
        assert!(
            parse(&["--file", &sha, "--timeout", "1m"]).is_err(),
            "--timeout without --wait"
        );
        let Command::Replay(r) = parse(&["--quarantined", "--client", "acme", "--wait"])
            .unwrap()
            .command
        else {
            panic!("not a replay");
        };
        assert_eq!(r.timeout, Duration::from_secs(600));
        assert_eq!(r.client.as_deref(), Some("acme"));
    }

    #[test]
    fn query_options_may_follow_the_subcommand() {
        let cli = Cli::try_parse_from([
            "credstream",
            "query",
            "files",
            "--all",
            "--output",
            "jsonl",
            "--api",
            "http://h:1",
        ])
        .unwrap();
        let Command::Query(q) = cli.command else {
            panic!("not a query");
        };
        assert_eq!(q.output, OutputFormat::Jsonl);
        assert_eq!(q.api.api, "http://h:1");
        assert!(matches!(q.what, QueryCommand::Files { all: true, .. }));
        assert!(
            Cli::try_parse_from(["credstream", "query", "view", "accounts", "k", "--all"]).is_err(),
            "a key and --all"
        );
    }
}
