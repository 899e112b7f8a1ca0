//! The production stack for end-to-end tests and benchmarks: Tansu, the registry,
//! Debian's sshd serving the drop, moto as the S3 archive, and `credstream run` configured
//! with an SFTP source and the S3 raw store. Every service listens on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value as Json;

use super::s3::S3Server;
use super::sftp::Sftpd;
use super::{Credstream, free_port, get_json, unique, wait_for};

/// The bucket the archive is kept in.
pub const BUCKET: &str = "raw-archive";

/// Broker, registry, sshd, moto and the pipeline's configuration.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub tansu: super::tansu::Tansu,
    pub _registry: Credstream,
    pub sftpd: Sftpd,
    pub s3: S3Server,
    pub config: PathBuf,
    pub query: String,
    pub prefix: String,
    pub pipeline: Option<Credstream>,
}

impl Stack {
    pub async fn new() -> Result<Stack> {
        let dir = super::test_dir()?;
        let tansu = super::tansu::Tansu::start()?;
        let (registry, registry_url) =
            super::start_registry(dir.path(), &tansu.bootstrap()).await?;
        let sftpd = Sftpd::start()?;
        std::fs::create_dir_all(sftpd.drop_dir().join("acme-bank"))?;
        let s3 = S3Server::start()?;
        s3.rest().create_bucket(BUCKET).await?;
        let prefix = unique("t") + ".";
        let port = free_port();
        let root = dir.path();
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
partitions = 2
session_timeout_ms = 6000

{tansu_properties}
[registry]
url = "{registry_url}"

[raw_store]
kind = "s3"
bucket = "{BUCKET}"
prefix = "archive/"
endpoint = "{endpoint}"
region = "{region}"
force_path_style = true
sse = "AES256"
part_size_mib = 5

[sources.bank-sftp]
kind = "sftp"
host = "127.0.0.1"
port = {sftp_port}
user = "{user}"
path = "{remote}"
known_hosts = "{known_hosts}"
key_file = "{key}"
poll_interval_ms = 500

[query]
listen = "127.0.0.1:{port}"

{tokenisation}
"#,
                app_id = unique("app-"),
                tokenisation = super::tokenisation_section(root)?,
                tansu_properties = super::tansu::PIPELINE_PROPERTIES,
                state = root.join("state").display(),
                bootstrap = tansu.bootstrap(),
                endpoint = s3.endpoint(),
                region = s3.region(),
                sftp_port = sftpd.port(),
                user = sftpd.user(),
                remote = sftpd.remote_dir(),
                known_hosts = sftpd.known_hosts_path().display(),
                key = sftpd.client_key_path().display(),
            ),
        )?;
        Ok(Stack {
            dir,
            tansu,
            _registry: registry,
            sftpd,
            s3,
            config,
            query: format!("http://127.0.0.1:{port}"),
            prefix,
            pipeline: None,
        })
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// S3 credentials for the AWS SDK's standard chain: here, the environment.
    fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.s3.access_key().to_string()),
            ("AWS_SECRET_ACCESS_KEY", self.s3.secret_key().to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// Starts another poller (`credstream run --role poller`) on the same drop, with its
    /// own state directory `state-<n>`, logging to `poller-<n>.log`.
    pub fn spawn_poller(&self, n: usize) -> Result<Credstream> {
        let config = self.config.display().to_string();
        let mut env = self.aws_env();
        let state = self.root().join(format!("state-{n}"));
        env.push(("CREDSTREAM_APP__STATE_DIR", state.display().to_string()));
        Credstream::spawn_with_env(
            &["run", "--config", &config, "--role", "poller"],
            &env,
            &self.root().join(format!("poller-{n}.log")),
        )
    }

    /// Starts `credstream run` and waits until it is ready.
    pub async fn start(&mut self) -> Result<()> {
        let log = self.root().join("run.log");
        let config = self.config.display().to_string();
        let env = self.aws_env();
        let mut process = Credstream::spawn_with_env(&["run", "--config", &config], &env, &log)?;
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

    pub fn log_tail(&self) -> String {
        self.pipeline
            .as_ref()
            .map(Credstream::log_tail)
            .unwrap_or_default()
    }

    /// Puts a file on the server the way an uploader that renames does: the whole file
    /// appears at once.
    pub fn upload(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let target = self.sftpd.drop_dir().join(path);
        std::fs::create_dir_all(target.parent().context("a parent")?)?;
        let tmp = target.with_extension("filepart");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &target)?;
        Ok(())
    }

    /// The ledger, by path, once it lists `n` files.
    pub async fn wait_files(&self, n: usize, within: Duration) -> Result<BTreeMap<String, Json>> {
        let url = format!("{}/v1/files", self.query);
        let files = wait_for(within, &format!("{n} ledger entries"), || {
            let url = url.clone();
            async move {
                let (status, body) = get_json(&url).await?;
                let files = body["files"].as_array()?.clone();
                (status == 200 && files.len() >= n).then_some(files)
            }
        })
        .await
        .map_err(|e| e.context(self.log_tail()))?;
        ensure!(files.len() == n, "expected {n} ledger entries: {files:#?}");
        Ok(files
            .into_iter()
            .map(|f| (f["file_path"].as_str().unwrap_or_default().to_string(), f))
            .collect())
    }

    pub async fn ledger_len(&self) -> Result<usize> {
        let (_, body) = get_json(&format!("{}/v1/files", self.query))
            .await
            .context("the query API answers")?;
        Ok(body["files"].as_array().map_or(0, Vec::len))
    }

    pub async fn metrics(&self) -> Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.query))
            .await?
            .text()
            .await?)
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The object under a ledger entry's raw key, straight from the S3 server.
    pub async fn object(&self, raw_key: &str) -> Result<Option<super::s3::S3Response>> {
        self.s3
            .rest()
            .get_object(BUCKET, &format!("archive/{raw_key}"))
            .await
    }
}

/// The value of the first sample line starting with `prefix` in Prometheus text.
pub fn metric_value(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
