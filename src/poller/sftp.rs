//! A landing area on an SFTP server: `<root>/<client id>/…/<file>`, read only.
//!
//! The server's host key is checked against a known_hosts file before anything else: no
//! trust on first use. A key that differs from the pinned one refuses the connection with
//! an error naming the known_hosts line, and counts in
//! `credstream_sftp_host_key_mismatch_total`. A host missing from the file is refused too.
//!
//! One SSH connection and SFTP session serve every listing and read; a broken one is
//! dropped and the next call reconnects, after a delay that doubles with each failure (up
//! to a minute) so a down server is not hammered.
//!
//! Architecture Invariant: the source only lists, stats and reads. It never writes,
//! renames or deletes on the server.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::keys::{PrivateKeyWithHashAlg, check_known_hosts_path, load_secret_key};
use russh_sftp::client::SftpSession;

use super::local::skipped;
use super::{Listing, PollerError, Source};
use crate::config::Secret;

/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How to reach and authenticate to an SFTP server.
#[derive(Clone, Debug)]
pub struct SftpSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The directory whose subdirectories are clients, as the server names it.
    pub root: String,
    /// known_hosts file pinning the server's host key.
    pub known_hosts: PathBuf,
    /// Private key file (OpenSSH format), if key authentication is used.
    pub key_file: Option<PathBuf>,
    /// Password, if password authentication is used.
    pub password: Option<Secret>,
}

/// An SFTP source.
pub struct SftpSource {
    name: String,
    settings: SftpSettings,
    state: tokio::sync::Mutex<ConnectionState>,
}

#[derive(Default)]
struct ConnectionState {
    session: Option<Arc<SftpSession>>,
    /// Kept alive with the session.
    handle: Option<russh::client::Handle<HostKeyCheck>>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// Checks the server's host key against the known_hosts file, and says why it refused.
struct HostKeyCheck {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    refusal: Arc<Mutex<Option<String>>>,
}

impl russh::client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.refusal.lock().expect("not poisoned") = Some(
                "the server presented a certificate; only pinned host keys are accepted".into(),
            );
            return Ok(false);
        };
        let fingerprint = key.fingerprint(russh::keys::HashAlg::Sha256);
        let refusal = match check_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
            Ok(true) => return Ok(true),
            Ok(false) => format!(
                "host key {fingerprint} of {}:{} is not in {}; add the server's key there \
                 (no key is trusted on first use)",
                self.host,
                self.port,
                self.known_hosts.display()
            ),
            Err(russh::keys::Error::KeyChanged { line }) => format!(
                "HOST KEY MISMATCH: {}:{} presented {fingerprint}, which differs from the key \
                 pinned at line {line} of {}; refusing to connect (a changed server key, or \
                 someone in the middle)",
                self.host,
                self.port,
                self.known_hosts.display()
            ),
            Err(e) => format!(
                "cannot check the host key against {}: {e}",
                self.known_hosts.display()
            ),
        };
        *self.refusal.lock().expect("not poisoned") = Some(refusal);
        Ok(false)
    }
}

impl SftpSource {
    pub fn new(name: &str, settings: SftpSettings) -> SftpSource {
        SftpSource {
            name: name.to_string(),
            settings,
            state: Default::default(),
        }
    }

    fn err(&self, op: &'static str, path: &str, message: String) -> PollerError {
        PollerError::Source {
            source_name: self.name.clone(),
            op,
            path: path.to_string(),
            error: std::io::Error::other(message),
        }
    }

    /// The remote path of a listed file.
    fn remote(&self, listing: &Listing) -> String {
        format!(
            "{}/{}",
            self.settings.root.trim_end_matches('/'),
            listing.path.to_string_lossy()
        )
    }

    /// The session, connecting first if there is none (and the backoff allows).
    async fn session(&self) -> Result<Arc<SftpSession>, PollerError> {
        let mut state = self.state.lock().await;
        if let (Some(session), Some(handle)) = (&state.session, &state.handle)
            && !handle.is_closed()
        {
            return Ok(session.clone());
        }
        state.session = None;
        state.handle = None;
        if let Some(at) = state.retry_at
            && Instant::now() < at
        {
            return Err(self.err(
                "connect",
                &self.settings.host,
                format!(
                    "not retrying for another {:?} after {} failed attempts",
                    at - Instant::now(),
                    state.failures
                ),
            ));
        }
        match self.connect().await {
            Ok((handle, session)) => {
                if state.failures > 0 {
                    tracing::info!(source = %self.name, host = %self.settings.host, attempts = state.failures + 1, "SFTP connection restored");
                }
                state.failures = 0;
                state.retry_at = None;
                let session = Arc::new(session);
                state.session = Some(session.clone());
                state.handle = Some(handle);
                Ok(session)
            }
            Err(e) => {
                state.failures += 1;
                let backoff = Duration::from_secs(1u64 << state.failures.min(6)).min(MAX_BACKOFF);
                state.retry_at = Some(Instant::now() + backoff);
                Err(e)
            }
        }
    }

    /// Forgets the session after a failed operation, so the next call reconnects.
    async fn drop_session(&self) {
        let mut state = self.state.lock().await;
        state.session = None;
        state.handle = None;
    }

    async fn connect(
        &self,
    ) -> Result<(russh::client::Handle<HostKeyCheck>, SftpSession), PollerError> {
        let s = &self.settings;
        let target = format!("{}@{}:{}", s.user, s.host, s.port);
        let refusal = Arc::new(Mutex::new(None));
        let handler = HostKeyCheck {
            host: s.host.clone(),
            port: s.port,
            known_hosts: s.known_hosts.clone(),
            refusal: refusal.clone(),
        };
        if !s.known_hosts.is_file() {
            return Err(self.err(
                "connect",
                &target,
                format!(
                    "known_hosts file {} does not exist; the server's host key must be pinned there",
                    s.known_hosts.display()
                ),
            ));
        }
        let config = Arc::new(russh::client::Config {
            inactivity_timeout: Some(Duration::from_secs(300)),
            keepalive_interval: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        let connected = tokio::time::timeout(
            Duration::from_secs(30),
            russh::client::connect(config, (s.host.as_str(), s.port), handler),
        )
        .await;
        let mut handle = match connected {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => {
                let why = refusal.lock().expect("not poisoned").take();
                return Err(match why {
                    Some(why) => {
                        if why.starts_with("HOST KEY MISMATCH") {
                            crate::metrics::SftpHostKeyMismatch { source: &self.name }.emit();
                        }
                        tracing::error!(source = %self.name, target = %target, "{why}");
                        self.err("connect", &target, why)
                    }
                    None => self.err("connect", &target, e.to_string()),
                });
            }
            Err(_) => {
                return Err(self.err("connect", &target, "timed out after 30 s".into()));
            }
        };
        let authenticated = match (&s.key_file, &s.password) {
            (Some(path), _) => {
                let key = load_secret_key(path, None).map_err(|e| {
                    self.err(
                        "connect",
                        &target,
                        format!("cannot read the private key {}: {e}", path.display()),
                    )
                })?;
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| self.err("connect", &target, e.to_string()))?
                    .flatten();
                handle
                    .authenticate_publickey(
                        s.user.clone(),
                        PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                    )
                    .await
            }
            (None, Some(password)) => {
                handle
                    .authenticate_password(s.user.clone(), password.expose())
                    .await
            }
            (None, None) => {
                return Err(self.err(
                    "connect",
                    &target,
                    "neither a key file nor a password is configured".into(),
                ));
            }
        }
        .map_err(|e| self.err("connect", &target, e.to_string()))?;
        if !authenticated.success() {
            return Err(self.err(
                "connect",
                &target,
                "the server refused the credentials".into(),
            ));
        }
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| self.err("connect", &target, e.to_string()))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| self.err("connect", &target, e.to_string()))?;
        let session = SftpSession::new(channel.into_stream())
            .await
            .map_err(|e| self.err("connect", &target, format!("SFTP: {e}")))?;
        tracing::info!(source = %self.name, target = %target, "SFTP connected; host key matches the pinned one");
        Ok((handle, session))
    }

    /// Every regular file under the root: (path relative to the root, size, mtime ms).
    async fn walk(&self, sftp: &SftpSession) -> Result<Vec<(PathBuf, u64, i64)>, PollerError> {
        let root = self.settings.root.trim_end_matches('/').to_string();
        let mut files = Vec::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(dir) = pending.pop() {
            let remote = if dir.as_os_str().is_empty() {
                root.clone()
            } else {
                format!("{root}/{}", dir.to_string_lossy())
            };
            let entries = sftp
                .read_dir(remote.clone())
                .await
                .map_err(|e| self.err("list", &remote, e.to_string()))?;
            for entry in entries {
                let name = entry.file_name();
                if name == "." || name == ".." || skipped(std::ffi::OsStr::new(&name)) {
                    continue;
                }
                let path = dir.join(&name);
                let meta = entry.metadata();
                if meta.is_dir() {
                    pending.push(path);
                } else if meta.is_regular() {
                    files.push((
                        path,
                        meta.size.unwrap_or(0),
                        i64::from(meta.mtime.unwrap_or(0)) * 1000,
                    ));
                }
            }
        }
        Ok(files)
    }
}

#[async_trait::async_trait]
impl Source for SftpSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list(&self) -> Result<Vec<Listing>, PollerError> {
        let sftp = self.session().await?;
        let files = match self.walk(&sftp).await {
            Ok(files) => files,
            Err(e) => {
                self.drop_session().await;
                return Err(e);
            }
        };
        Ok(super::client_listings(&self.name, files))
    }

    async fn open(
        &self,
        listing: &Listing,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, PollerError> {
        let sftp = self.session().await?;
        let remote = self.remote(listing);
        match sftp.open(remote.clone()).await {
            Ok(file) => Ok(Box::new(file)),
            Err(e) => {
                self.drop_session().await;
                Err(self.err("open", &remote, e.to_string()))
            }
        }
    }

    async fn stat(&self, listing: &Listing) -> Result<(u64, i64), PollerError> {
        let sftp = self.session().await?;
        let remote = self.remote(listing);
        match sftp.metadata(remote.clone()).await {
            Ok(meta) => Ok((
                meta.size.unwrap_or(0),
                i64::from(meta.mtime.unwrap_or(0)) * 1000,
            )),
            Err(e) => {
                self.drop_session().await;
                Err(self.err("stat", &remote, e.to_string()))
            }
        }
    }
}
