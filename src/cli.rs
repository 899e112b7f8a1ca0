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
    after_help = "Exit codes: 0 success; 1 failure while running (a bug or bad state); \
2 bad command line or configuration; 3 an outside system (broker, registry, store) was unavailable; \
4 (parse) the file did not parse cleanly.\n\n\
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
    /// Default: `info`, or `error` for `demo`, whose own output tells the story.
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
    /// Process a file again from the raw store, after its layout or schema was fixed.
    ///
    /// Sends a replay request for the file to the topology (a `FileArrived` record with
    /// `replay` set). The topology processes the bytes as if they were new; its ledger
    /// entry names the arrival it supersedes (`replay_of`). Output keys are the same as a
    /// first processing would give (`<sha256>:<record index>`), so consumers that keep the
    /// latest value per key end as if the file had been good the first time.
    Replay {
        /// The TOML configuration file of the deployment.
        #[arg(long, short, env = "CREDSTREAM_CONFIG")]
        config: PathBuf,
        /// The file's SHA-256 (lower-case hex), as in `/v1/files`.
        #[arg(long = "file", value_name = "SHA256")]
        sha256: String,
    },
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
    /// and benchmarks. Streams to the output, so millions of records fit in no memory;
    /// progress goes to standard error every 100 000 records.
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
