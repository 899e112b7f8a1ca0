//! Configuration: one TOML file, every key overridable by an environment variable.
//!
//! A key `section.name` is overridden by `CREDSTREAM_SECTION__NAME` (double underscore
//! between levels), e.g. `CREDSTREAM_KAFKA__BOOTSTRAP_SERVERS=broker:9092` or
//! `CREDSTREAM_SOURCES__LANDING__PATH=/srv/drop`. Unknown keys are errors, so a typo is
//! reported instead of silently ignored.
//!
//! Architecture Invariant: configuration is read and validated once, at start-up; no other
//! module reads the environment for settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::streams::ProcessingGuarantee;

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "CREDSTREAM_";

/// Variables with the prefix that are not configuration keys.
const ENV_NOT_KEYS: &[&str] = &["log", "log_format", "config", "api", "token"];

/// Errors found while loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        // figment's message names the key and where its value came from (file or variable).
        ConfigError::Invalid(e.to_string())
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Application identity and local state.
    pub app: AppConfig,
    /// The Kafka cluster and topic naming.
    pub kafka: KafkaConfig,
    /// The schema registry to register and fetch Avro schemas.
    pub registry: RegistryConfig,
    /// Where raw file bytes are archived, content-addressed.
    pub raw_store: RawStoreConfig,
    /// Card-number tokenisation.
    pub tokenisation: TokenisationConfig,
    /// Landing areas to poll, by name.
    pub sources: BTreeMap<String, SourceConfig>,
    /// The HTTP query API and `/metrics`.
    pub query: QueryConfig,
    /// Where file categories and Avro contracts are read from.
    pub topology: TopologyConfig,
    /// Deliveries expected on a schedule: each exports its cutoff and its latest accepted
    /// file, for the `ExpectedFileMissing` alert.
    pub deliveries: Vec<DeliveryConfig>,
}

/// A delivery expected every day by a cutoff: `client` sends a file of `category`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub client: String,
    pub category: String,
    /// `HH:MM`, UTC: by then a file must have been accepted (processed, possibly with some
    /// records quarantined).
    pub cutoff: String,
    /// A file accepted within this many hours before the cutoff counts. Default 24.
    #[serde(default = "default_window_hours")]
    pub window_hours: u32,
    /// No delivery on Saturdays and Sundays: Monday's cutoff follows Friday's.
    #[serde(default)]
    pub weekdays_only: bool,
}

fn default_window_hours() -> u32 {
    24
}

impl DeliveryConfig {
    /// The cutoff as minutes after midnight UTC.
    pub fn cutoff_minutes(&self) -> Option<u32> {
        let (h, m) = self.cutoff.split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60 && self.cutoff.len() == 5).then_some(h * 60 + m)
    }

    /// The latest cutoff at or before `now_ms`, in Unix milliseconds.
    pub fn deadline_ms(&self, now_ms: i64) -> i64 {
        use chrono::{Datelike, TimeZone, Weekday};
        let minutes = i64::from(self.cutoff_minutes().unwrap_or(0));
        let now = chrono::Utc
            .timestamp_millis_opt(now_ms)
            .single()
            .unwrap_or_default();
        let mut day = now.date_naive();
        loop {
            let at = day
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc()
                .timestamp_millis()
                + minutes * 60_000;
            let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
            if at <= now_ms && !(self.weekdays_only && weekend) {
                return at;
            }
            day = day.pred_opt().expect("a day before");
        }
    }
}

/// Application identity and local state.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// Application id: the consumer group, and the prefix of changelog topic names.
    /// Replicas of one deployment share it.
    pub id: String,
    /// Directory for local state (RocksDB stores, poller state). Deleting it loses nothing:
    /// stores are restored from their changelogs.
    pub state_dir: PathBuf,
    /// `at_least_once` (default): outputs may repeat after a crash, under the same keys.
    /// `exactly_once`: outputs, state and offsets commit in one Kafka transaction; needs a
    /// broker with transactions (Kafka, Redpanda, MSK; not Tansu 0.6).
    pub processing_guarantee: ProcessingGuarantee,
    /// Warm copies of each task's stores kept on other replicas, so a failover restores
    /// only the newest changes. With `replicas - 1`, every failover is warm.
    pub num_standby_replicas: usize,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            id: "credstream".into(),
            state_dir: PathBuf::from("state"),
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            num_standby_replicas: 0,
        }
    }
}

/// The Kafka cluster and topic naming.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Prefix of every topic name credstream reads or writes (not of changelogs).
    pub topic_prefix: String,
    /// Partition count of the topics credstream creates.
    pub partitions: i32,
    /// Replication factor of the topics credstream creates.
    pub replication_factor: i32,
    /// Create missing topics at start-up. Turn off where topics are managed elsewhere.
    pub create_topics: bool,
    /// Consumer session timeout; a replica silent for this long loses its partitions.
    pub session_timeout_ms: u32,
    /// Longest time one input record (one file) may take to process before the group
    /// considers the replica stuck.
    pub max_poll_interval_ms: u32,
    /// Extra librdkafka properties for every client, e.g. `"security.protocol" = "ssl"`.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic_prefix: "credstream.".into(),
            partitions: 6,
            replication_factor: 1,
            create_topics: true,
            session_timeout_ms: 10_000,
            max_poll_interval_ms: 600_000,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The full name of a credstream topic, e.g. `file-arrivals` → `credstream.file-arrivals`.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{}", self.topic_prefix, name)
    }
}

/// The schema registry.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Base URL of a Confluent-compatible registry. Ignored when `embedded` is on.
    pub url: String,
    /// Serve the embedded registry from this process at `listen` and use it.
    pub embedded: bool,
    /// Address of the embedded registry.
    pub listen: SocketAddr,
    /// The compacted topic the embedded registry keeps its state in.
    pub topic: String,
    /// Basic authentication: the user (API key)...
    pub username: Option<String>,
    /// ...and its password (API secret), given directly (best from the environment,
    /// `CREDSTREAM_REGISTRY__PASSWORD`) or read from a file.
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// Bearer-token authentication, instead of basic.
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust for an `https` registry, in addition to the
    /// system's.
    pub ca_file: Option<PathBuf>,
}

/// The key card numbers are tokenised with. Give it in a file (`key_file`) or the
/// environment (`CREDSTREAM_TOKENISATION__KEY`); it is never logged.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenisationConfig {
    pub key: Option<Secret>,
    pub key_file: Option<PathBuf>,
}

impl TokenisationConfig {
    /// The tokeniser, if a key is configured.
    pub fn tokeniser(&self) -> Result<Option<crate::tokenise::Tokeniser>, ConfigError> {
        let Some(key) = secret_setting("tokenisation.key", &self.key, &self.key_file)? else {
            return Ok(None);
        };
        crate::tokenise::Tokeniser::new(&key)
            .map(Some)
            .map_err(|e| ConfigError::Invalid(format!("tokenisation: {e}")))
    }
}

/// A secret setting: printed and serialised as `***`, never in clear.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value, for the one place that hands it to a client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Reads a secret from `file`, or takes `value`; `name` is the full key for messages.
fn secret_setting(
    name: &str,
    value: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid(format!(
            "{name} and {name}_file are both set; use one"
        ))),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            Ok(Some(Secret(
                text.trim_end_matches(['\r', '\n']).to_string(),
            )))
        }
        (None, None) => Ok(None),
    }
}

/// A registry secret (`registry.<key>` or `registry.<key>_file`).
fn secret(
    key: &str,
    value: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    secret_setting(&format!("registry.{key}"), value, file)
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            url: "http://127.0.0.1:8081".into(),
            embedded: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            topic: "_schemas".into(),
            username: None,
            password: None,
            password_file: None,
            bearer_token: None,
            bearer_token_file: None,
            ca_file: None,
        }
    }
}

/// Where raw file bytes are archived.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStoreConfig {
    /// Backend: `fs` (a local or mounted directory) or `s3` (S3 or an S3-compatible store).
    pub kind: RawStoreKind,
    /// Root directory of the `fs` backend.
    pub path: PathBuf,
    /// `s3`: the bucket.
    pub bucket: Option<String>,
    /// `s3`: a key prefix (e.g. `credstream/`), before `sha256/ab/<digest>`.
    pub prefix: String,
    /// `s3`: the region.
    pub region: String,
    /// `s3`: the endpoint URL of an S3-compatible store (MinIO, Ceph, …); default: AWS.
    pub endpoint: Option<String>,
    /// `s3`: path-style addressing (`<endpoint>/<bucket>/<key>`), which most
    /// S3-compatible stores need.
    pub force_path_style: bool,
    /// `s3`: server-side encryption, `AES256` or `aws:kms`.
    pub sse: Option<String>,
    /// `s3`: the KMS key id (or ARN) for `sse = "aws:kms"`; default: the bucket's key.
    pub kms_key_id: Option<String>,
    /// `s3`: Object Lock mode for new objects, `GOVERNANCE` or `COMPLIANCE` (the bucket
    /// must have Object Lock enabled)...
    pub object_lock_mode: Option<String>,
    /// ...and how many days each object is retained.
    pub object_lock_days: Option<u32>,
    /// `s3`: size of a multipart-upload part, MiB (5 to 5120). Files up to one part go in
    /// one PUT.
    pub part_size_mib: u64,
    /// `s3`: parts uploaded at once; memory is about `part_size_mib ×` this.
    pub upload_concurrency: usize,
    /// `s3`: where objects are downloaded to for parsing (removed after each file).
    /// Default: `<state_dir>/raw-cache`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RawStoreConfig {
    fn default() -> Self {
        RawStoreConfig {
            kind: RawStoreKind::Fs,
            path: PathBuf::from("raw"),
            bucket: None,
            prefix: String::new(),
            region: "us-east-1".into(),
            endpoint: None,
            force_path_style: false,
            sse: None,
            kms_key_id: None,
            object_lock_mode: None,
            object_lock_days: None,
            part_size_mib: 16,
            upload_concurrency: 2,
            cache_dir: None,
        }
    }
}

impl RawStoreConfig {
    /// Checks the `s3` settings; nothing to check for `fs`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(format!("raw_store.{m}")));
        if self.kind != RawStoreKind::S3 {
            return Ok(());
        }
        if self.bucket.as_deref().is_none_or(|b| b.trim().is_empty()) {
            return invalid("bucket is required for kind = \"s3\"".into());
        }
        if let Some(sse) = &self.sse
            && sse != "AES256"
            && sse != "aws:kms"
        {
            return invalid(format!(
                "sse must be \"AES256\" or \"aws:kms\", got {sse:?}"
            ));
        }
        if self.kms_key_id.is_some() && self.sse.as_deref() != Some("aws:kms") {
            return invalid("kms_key_id needs sse = \"aws:kms\"".into());
        }
        match (&self.object_lock_mode, self.object_lock_days) {
            (None, None) => {}
            (Some(m), Some(d)) if (m == "GOVERNANCE" || m == "COMPLIANCE") && d > 0 => {}
            (Some(m), Some(_)) if m != "GOVERNANCE" && m != "COMPLIANCE" => {
                return invalid(format!(
                    "object_lock_mode must be \"GOVERNANCE\" or \"COMPLIANCE\", got {m:?}"
                ));
            }
            _ => {
                return invalid(
                    "object_lock_mode and object_lock_days (above 0) go together".into(),
                );
            }
        }
        if !(5..=5120).contains(&self.part_size_mib) {
            return invalid(format!(
                "part_size_mib must be 5 to 5120 (S3's limits), got {}",
                self.part_size_mib
            ));
        }
        if self.upload_concurrency == 0 {
            return invalid("upload_concurrency must be at least 1".into());
        }
        if let Some(e) = &self.endpoint
            && !e.starts_with("http://")
            && !e.starts_with("https://")
        {
            return invalid(format!("endpoint must be an http(s) URL, got {e:?}"));
        }
        Ok(())
    }
}

/// Raw store backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawStoreKind {
    /// A local directory.
    Fs,
    /// S3, or an S3-compatible store. Credentials come from the AWS SDK's standard chain
    /// (environment, profile, web identity, instance or container role).
    S3,
}

/// One landing area.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Source type: `local` (a directory) or `sftp` (a server, read only).
    pub kind: SourceKind,
    /// Root directory (on the server, for `sftp`). Files are expected at
    /// `<root>/<client id>/…`.
    pub path: PathBuf,
    /// Time between two listings; a file is emitted once two listings agree on its size and
    /// modification time.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How long a file must keep its size and modification time before it is read, besides
    /// two consecutive listings agreeing. Make it longer than an uploader's longest pause.
    /// Default: nothing more for `local`, nor with a `marker_suffix` (the marker says the
    /// file is whole); otherwise for `sftp`, whose modification times have one-second
    /// resolution, 10 s or three poll intervals, whichever is longer.
    #[serde(default)]
    pub stable_ms: Option<u64>,
    /// Globs on a file's path under the root (`acme/in/a.csv`; `*` crosses `/`): only
    /// matching files are candidates. Default: every file.
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs of files that are never candidates, e.g. `*/archive/*`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// When set (e.g. `.done` or `.ok`), a file is taken only once the uploader has put
    /// `<file><suffix>` beside it, and then at the first listing that sees the marker;
    /// marker files are never taken themselves.
    #[serde(default)]
    pub marker_suffix: Option<String>,
    /// When set (e.g. `done`), a file is moved after it was emitted to
    /// `<root>/<client>/<move_to_done>/<rest of its path>` — the only write a source ever
    /// makes; files under that folder are never candidates. Default: files stay in place.
    #[serde(default)]
    pub move_to_done: Option<String>,
    /// How many stable files are read (and archived) at once.
    #[serde(default = "default_max_concurrent_reads")]
    pub max_concurrent_reads: usize,
    /// `local`: react to filesystem events (inotify) as well as polling. A file its writer
    /// closed, or renamed into place, is then taken at once, with no second listing (the
    /// quiet period still applies); the polls go on for anything events miss. Default: on
    /// for `local`; `sftp` sources can only be polled.
    #[serde(default)]
    pub watch: Option<bool>,
    /// `sftp`: the server.
    #[serde(default)]
    pub host: Option<String>,
    /// `sftp`: its port.
    #[serde(default = "default_sftp_port")]
    pub port: u16,
    /// `sftp`: the login.
    #[serde(default)]
    pub user: Option<String>,
    /// `sftp`: known_hosts file pinning the server's host key (required: no key is
    /// trusted on first use).
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// `sftp`: private key file for key authentication.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// `sftp`: password (prefer `password_file`, or `CREDSTREAM_SOURCES__<NAME>__PASSWORD`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// `sftp`: file holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

fn default_max_concurrent_reads() -> usize {
    4
}

fn default_sftp_port() -> u16 {
    22
}

impl SourceConfig {
    /// How long a file must stay unchanged before it is read (`stable_ms` or its default).
    pub fn quiet_period(&self) -> std::time::Duration {
        let ms = self.stable_ms.unwrap_or(match self.kind {
            _ if self.marker_suffix.is_some() => 0,
            SourceKind::Local => 0,
            SourceKind::Sftp => (3 * self.poll_interval_ms).max(10_000),
        });
        std::time::Duration::from_millis(ms)
    }

    /// A local directory source polled every `poll_interval_ms`.
    pub fn local(path: PathBuf, poll_interval_ms: u64) -> SourceConfig {
        SourceConfig {
            kind: SourceKind::Local,
            path,
            poll_interval_ms,
            stable_ms: None,
            include: Vec::new(),
            exclude: Vec::new(),
            marker_suffix: None,
            move_to_done: None,
            max_concurrent_reads: default_max_concurrent_reads(),
            watch: None,
            host: None,
            port: default_sftp_port(),
            user: None,
            known_hosts: None,
            key_file: None,
            password: None,
            password_file: None,
        }
    }

    /// The SFTP settings of an `sftp` source, secrets read from their files.
    pub fn sftp(&self, name: &str) -> Result<crate::poller::SftpSettings, ConfigError> {
        let need = |v: &Option<String>, key: &str| {
            v.clone().ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "sources.{name}.{key} is required for kind = \"sftp\""
                ))
            })
        };
        let password = secret_setting(
            &format!("sources.{name}.password"),
            &self.password,
            &self.password_file,
        )?;
        if self.key_file.is_none() && password.is_none() {
            return Err(ConfigError::Invalid(format!(
                "sources.{name} needs key_file or password_file (or password) for kind = \"sftp\""
            )));
        }
        Ok(crate::poller::SftpSettings {
            host: need(&self.host, "host")?,
            port: self.port,
            user: need(&self.user, "user")?,
            root: self.path.to_string_lossy().into_owned(),
            known_hosts: self.known_hosts.clone().ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "sources.{name}.known_hosts is required for kind = \"sftp\": the server's host key must be pinned"
                ))
            })?,
            key_file: self.key_file.clone(),
            password,
        })
    }
}

fn default_poll_interval_ms() -> u64 {
    1000
}

/// Source types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A local directory.
    Local,
    /// An SFTP server.
    Sftp,
}

/// The HTTP query API.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Listen address of the query API and `/metrics`.
    pub listen: SocketAddr,
    /// `host:port` other replicas reach this one's API at, for routing queries. Default:
    /// the listen address.
    pub advertised: Option<String>,
    /// Every query is appended here as a JSON line (who, what, when, outcome). Default:
    /// `<app.state_dir>/audit/query.jsonl`.
    pub audit_log: Option<PathBuf>,
    /// Bearer tokens. Without any, the API is open (requests are audited as `anonymous`).
    pub auth: QueryAuthConfig,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            advertised: None,
            audit_log: None,
            auth: QueryAuthConfig::default(),
        }
    }
}

/// Bearer-token authentication of the query API. `/healthz`, `/readyz` and `/metrics`
/// stay open for probes and scrapers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryAuthConfig {
    /// Tokens, stored as the hex SHA-256 of the token (tokens are random, at least 32
    /// bytes, e.g. `openssl rand -hex 32`; store `printf %s "$TOKEN" | sha256sum`).
    pub tokens: Vec<TokenConfig>,
    /// The token replicas present to each other when routing a query (a file holding
    /// the token itself, the same on every replica). Required when `tokens` is not empty.
    pub peer_token_file: Option<PathBuf>,
}

/// One bearer token and what it may read.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it: named in the audit log.
    pub name: String,
    /// Lower-case hex SHA-256 of the token.
    pub sha256: String,
    /// Clients whose data it may read; `"*"` for all.
    pub clients: Vec<String>,
}

/// Where categories and contracts come from, and how large files update the views.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopologyConfig {
    /// Directory of category files (`*.toml`). Unset: the ones built into the binary,
    /// which are the repository's `topologies/`.
    pub dir: Option<PathBuf>,
    /// Directory of Avro contracts (`*.avsc`). Unset: the built-in `avro/`.
    pub avro_dir: Option<PathBuf>,
    /// A snapshot file (accounts) whose trailer reconciled applies its view updates this
    /// many accounts at a time, as it is read, so memory stays flat however many accounts
    /// it has. A file with more accounts than this is visible half-applied in the views
    /// while it is processed (its ledger entry comes last); a smaller one appears at once.
    /// 20 000 by default: on the e2e bench (1 M accounts) chunks of 10–20 k ran ~12 %
    /// faster with ~10 % less CPU and ~90 MiB less peak memory than 50 k — a smaller
    /// chunk's staged maps and write batch stay in cache and reuse memory already mapped.
    pub view_chunk_accounts: usize,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            dir: None,
            avro_dir: None,
            view_chunk_accounts: 20_000,
        }
    }
}

impl Config {
    /// Loads `path` (if given), applies `CREDSTREAM_…` overrides from the environment and
    /// validates the result.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, Env::prefixed(ENV_PREFIX))
    }

    fn load_with_env(path: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            // Check the file ourselves: figment treats a missing file as an empty one.
            std::fs::File::open(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = env.ignore(ENV_NOT_KEYS).split("__");
        let config: Config = figment.merge(env).extract()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: non-empty names, sane numbers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.app.id.trim().is_empty() {
            return invalid("app.id must not be empty".into());
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return invalid("kafka.bootstrap_servers must not be empty".into());
        }
        if self.kafka.partitions < 1 {
            return invalid(format!(
                "kafka.partitions must be at least 1, got {}",
                self.kafka.partitions
            ));
        }
        if self.topology.view_chunk_accounts < 1 {
            return invalid("topology.view_chunk_accounts must be at least 1, got 0".into());
        }
        if self.kafka.replication_factor < 1 {
            return invalid(format!(
                "kafka.replication_factor must be at least 1, got {}",
                self.kafka.replication_factor
            ));
        }
        if !self.registry.embedded && !self.registry.url.starts_with("http") {
            return invalid(format!(
                "registry.url must be an http(s) URL, got {:?}",
                self.registry.url
            ));
        }
        self.raw_store.validate()?;
        for (i, d) in self.deliveries.iter().enumerate() {
            if d.cutoff_minutes().is_none() {
                return invalid(format!(
                    "deliveries[{i}].cutoff must be HH:MM (UTC), got {:?}",
                    d.cutoff
                ));
            }
            if d.window_hours == 0 || d.client.is_empty() || d.category.is_empty() {
                return invalid(format!(
                    "deliveries[{i}] needs a client, a category and window_hours above 0"
                ));
            }
        }
        for (i, t) in self.query.auth.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return invalid(format!(
                    "query.auth.tokens[{i}] ({}): sha256 must be the 64 hex digits of the token's SHA-256",
                    t.name
                ));
            }
            if t.clients.is_empty() {
                return invalid(format!(
                    "query.auth.tokens[{i}] ({}): clients must name at least one client, or \"*\"",
                    t.name
                ));
            }
        }
        if !self.query.auth.tokens.is_empty() && self.query.auth.peer_token_file.is_none() {
            return invalid(
                "query.auth.peer_token_file is required with query.auth.tokens: replicas \
                 present it to each other when routing queries"
                    .into(),
            );
        }
        for (name, source) in &self.sources {
            if source.max_concurrent_reads == 0 {
                return invalid(format!(
                    "sources.{name}.max_concurrent_reads must be above 0"
                ));
            }
            if source.move_to_done.as_deref().is_some_and(|d| {
                d.is_empty() || d.split('/').any(|c| c.is_empty() || c == "." || c == "..")
            }) {
                return invalid(format!(
                    "sources.{name}.move_to_done must be a folder name such as \"done\""
                ));
            }
            if source.poll_interval_ms == 0 {
                return invalid(format!("sources.{name}.poll_interval_ms must be above 0"));
            }
            if source.kind == SourceKind::Sftp && source.watch == Some(true) {
                return invalid(format!(
                    "sources.{name}.watch: an sftp source has no filesystem events to watch; it is polled every poll_interval_ms"
                ));
            }
            if let Err(e) = crate::poller::PathFilter::new(&source.include, &source.exclude) {
                return invalid(format!("sources.{name}: {e}"));
            }
            if source
                .marker_suffix
                .as_deref()
                .is_some_and(|m| m.is_empty() || m.contains('/'))
            {
                return invalid(format!(
                    "sources.{name}.marker_suffix must be a non-empty name suffix such as \".done\""
                ));
            }
            match source.kind {
                SourceKind::Sftp => {
                    source.sftp(name)?;
                }
                SourceKind::Local => {
                    if source.host.is_some()
                        || source.user.is_some()
                        || source.known_hosts.is_some()
                        || source.key_file.is_some()
                        || source.password.is_some()
                        || source.password_file.is_some()
                    {
                        return invalid(format!(
                            "sources.{name}: host, user, known_hosts, key_file and password are for kind = \"sftp\""
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// How to reach the registry: URL, authentication (secrets read from their files)
    /// and extra CA certificates.
    pub fn registry_client(&self) -> Result<crate::schema::RegistrySettings, ConfigError> {
        use crate::schema::RegistryAuth;
        let r = &self.registry;
        let password = secret("password", &r.password, &r.password_file)?;
        let token = secret("bearer_token", &r.bearer_token, &r.bearer_token_file)?;
        let auth = match (&r.username, password, token) {
            (Some(_), _, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "registry.username and registry.bearer_token are both set; use one".into(),
                ));
            }
            (None, Some(_), _) => {
                return Err(ConfigError::Invalid(
                    "registry.password is set without registry.username".into(),
                ));
            }
            (Some(user), password, None) => RegistryAuth::Basic {
                username: user.clone(),
                password,
            },
            (None, None, Some(token)) => RegistryAuth::Bearer(token),
            (None, None, None) => RegistryAuth::None,
        };
        let ca_pem = match &r.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        Ok(crate::schema::RegistrySettings {
            url: self.registry_url(),
            auth,
            ca_pem,
        })
    }

    /// The registry URL to use: the embedded one's address when embedded.
    pub fn registry_url(&self) -> String {
        if self.registry.embedded {
            format!("http://{}", self.registry.listen)
        } else {
            self.registry.url.trim_end_matches('/').to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_deadline_is_the_latest_passed_cutoff() {
        let at = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_millis()
        };
        let mut d = DeliveryConfig {
            client: "acme-bank".into(),
            category: "card.transactions".into(),
            cutoff: "06:00".into(),
            window_hours: 24,
            weekdays_only: false,
        };
        // Wednesday 2026-11-25.
        assert_eq!(
            d.deadline_ms(at("2026-11-25T07:00:00Z")),
            at("2026-11-25T06:00:00Z")
        );
        assert_eq!(
            d.deadline_ms(at("2026-11-25T05:59:59Z")),
            at("2026-11-24T06:00:00Z")
        );
        assert_eq!(
            d.deadline_ms(at("2026-11-25T06:00:00Z")),
            at("2026-11-25T06:00:00Z")
        );
        // Monday 2026-11-30 before the cutoff: Friday's, when weekends have none.
        d.weekdays_only = true;
        assert_eq!(
            d.deadline_ms(at("2026-11-30T05:00:00Z")),
            at("2026-11-27T06:00:00Z")
        );
        for bad in ["6:00", "24:00", "06:60", "0600", "06:00:00"] {
            d.cutoff = bad.into();
            assert_eq!(d.cutoff_minutes(), None, "{bad}");
        }
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("credstream.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn file_values_and_defaults_combine() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            r#"
            [kafka]
            bootstrap_servers = "k1:9092"
            [sources.landing]
            kind = "local"
            path = "/srv/drop"
            "#,
        );
        let config = Config::load_with_env(Some(&path), Env::prefixed("CS_TEST_NONE_")).unwrap();
        assert_eq!(config.kafka.bootstrap_servers, "k1:9092");
        assert_eq!(config.kafka.topic_prefix, "credstream.");
        assert_eq!(config.sources["landing"].path, PathBuf::from("/srv/drop"));
        assert_eq!(config.sources["landing"].poll_interval_ms, 1000);
    }

    #[test]
    // Jail's closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn environment_overrides_nested_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "[sources.landing]\nkind = \"local\"\npath = \"/a\"\n",
        );
        // A unique prefix keeps this test independent of the real environment.
        let vars = [
            ("CS_T1_KAFKA__BOOTSTRAP_SERVERS", "k2:9093"),
            ("CS_T1_KAFKA__PARTITIONS", "3"),
            ("CS_T1_SOURCES__LANDING__POLL_INTERVAL_MS", "250"),
        ];
        figment::Jail::expect_with(|jail| {
            for (k, v) in vars {
                jail.set_env(k, v);
            }
            let config = Config::load_with_env(Some(&path), Env::prefixed("CS_T1_")).unwrap();
            assert_eq!(config.kafka.bootstrap_servers, "k2:9093");
            assert_eq!(config.kafka.partitions, 3);
            assert_eq!(config.sources["landing"].poll_interval_ms, 250);
            Ok(())
        });
    }

    #[test]
    fn sftp_sources_need_a_pinned_host_key_and_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let path = write(dir.path(), text);
            Config::load_with_env(Some(&path), Env::prefixed("CS_TEST_NONE_"))
        };
        let base = "[sources.bank]\nkind = \"sftp\"\npath = \"/drop\"\nhost = \"sftp.bank\"\nuser = \"cs\"\n";
        let err = load(&format!("{base}key_file = \"/k\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sources.bank.known_hosts is required"),
            "{err}"
        );
        let err = load(&format!("{base}known_hosts = \"/kh\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs key_file or password_file"), "{err}");
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "hunter2-but-longer\n").unwrap();
        let config = load(&format!(
            "{base}known_hosts = \"/kh\"\npassword_file = \"{}\"\nport = 2222\npoll_interval_ms = 1000\n",
            secret.display()
        ))
        .unwrap();
        let source = &config.sources["bank"];
        let settings = source.sftp("bank").unwrap();
        assert_eq!((settings.host.as_str(), settings.port), ("sftp.bank", 2222));
        assert_eq!(settings.root, "/drop");
        assert_eq!(settings.password.unwrap().expose(), "hunter2-but-longer");
        assert!(!format!("{config:?}").contains("hunter2"));
        // SFTP mtimes have one-second resolution: by default a file must stay unchanged
        // for 10 s, not just two listings.
        assert_eq!(source.quiet_period(), std::time::Duration::from_secs(10));
        // With a marker the uploader says when the file is whole: no quiet period.
        let marked = load(&format!(
            "{base}known_hosts = \"/kh\"\npassword_file = \"{}\"\nmarker_suffix = \".done\"\n",
            secret.display()
        ))
        .unwrap();
        assert_eq!(
            marked.sources["bank"].quiet_period(),
            std::time::Duration::ZERO
        );
        let err = load(&format!(
            "{base}known_hosts = \"/kh\"\npassword_file = \"{}\"\nwatch = true\n",
            secret.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("sources.bank.watch: an sftp source has no filesystem events"),
            "{err}"
        );
        let err = load("[sources.l]\nkind = \"local\"\npath = \"/a\"\nhost = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("are for kind = \"sftp\""), "{err}");
        let err = load("[sources.l]\nkind = \"local\"\npath = \"/a\"\ninclude = [\"[\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sources.l: glob \"[\""), "{err}");
    }

    #[test]
    fn unknown_key_is_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "[kafka]\nbootstrap_server = \"typo\"\n");
        let err = Config::load_with_env(Some(&path), Env::prefixed("CS_TEST_NONE_"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bootstrap_server"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "[kafka]\npartitions = 0\n");
        let err = Config::load_with_env(Some(&path), Env::prefixed("CS_TEST_NONE_"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafka.partitions"), "{err}");

        let path = write(dir.path(), "[kafka]\npartitions = \"many\"\n");
        let err = Config::load_with_env(Some(&path), Env::prefixed("CS_TEST_NONE_"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("partitions"), "{err}");

        let path = write(dir.path(), "[topology]\nview_chunk_accounts = 0\n");
        let err = Config::load_with_env(Some(&path), Env::prefixed("CS_TEST_NONE_"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("topology.view_chunk_accounts"), "{err}");
        let path = write(dir.path(), "[app]\nid = \"x\"\n");
        let config = Config::load_with_env(Some(&path), Env::prefixed("CS_TEST_NONE_")).unwrap();
        assert_eq!(config.topology.view_chunk_accounts, 20_000);
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load_with_env(
            Some(Path::new("/nonexistent/credstream.toml")),
            Env::prefixed("CS_TEST_NONE_"),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }

    #[test]
    fn the_tokenisation_key_comes_from_a_file_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("pan.key");
        std::fs::write(&key, "k".repeat(40) + "\n").unwrap();
        let config = TokenisationConfig {
            key: None,
            key_file: Some(key),
        };
        let tokeniser = config.tokeniser().unwrap().expect("a key is configured");
        assert_eq!(tokeniser.token("4111111111111111").unwrap().len(), 64);
        assert!(!format!("{config:?}{tokeniser:?}").contains("kkkk"));
        let short = TokenisationConfig {
            key: Some(Secret::new("short-secret")),
            key_file: None,
        };
        let err = short.tokeniser().unwrap_err().to_string();
        assert!(
            err.contains("at least 32") && !err.contains("short-secret"),
            "{err}"
        );
        assert!(TokenisationConfig::default().tokeniser().unwrap().is_none());
    }
}
