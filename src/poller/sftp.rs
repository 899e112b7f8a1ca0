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
//! Several reads share the one session: SFTP requests carry ids, and russh-sftp matches
//! each reply to its request, so tasks may have requests in flight at once.
//!
//! Names: russh-sftp decodes every name as UTF-8 and replaces bytes that are not with
//! U+FFFD, so such a name can no longer be addressed on the server (and could alias a
//! real one); a name containing U+FFFD is refused (`not_utf8`). Types come from the
//! attributes READDIR sends, which describe the entry itself (OpenSSH's server `lstat`s):
//! a link is refused, whether to a file or to a directory, and never walked.
//!
//! Architecture Invariant: the source only lists, stats and reads, except for
//! [`Source::move_to`] (an SFTP rename, and mkdir of the done folders), which the poller
//! calls only with `move_to_done`. It never deletes or writes file contents on the server.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::keys::{PrivateKeyWithHashAlg, check_known_hosts_path, load_secret_key};
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, StatusCode};

use super::{EntryKind, Listed, Listing, PollerError, Refused, Source, Verdict};
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
            path: super::local::display_path(Path::new(path)),
            error: std::io::Error::other(message),
        }
    }

    /// The remote path of a listed file.
    fn remote(&self, listing: &Listing) -> String {
        self.remote_path(&listing.path)
    }

    /// The remote path of a path under the root. Listed paths come from names the server
    /// sent as (lossily decoded) UTF-8, judged safe, so they convert back unchanged.
    fn remote_path(&self, path: &Path) -> String {
        format!(
            "{}/{}",
            self.settings.root.trim_end_matches('/'),
            path.to_string_lossy()
        )
    }

    /// After a failed request: a status reply (no such file, permission denied) leaves
    /// the session sound, and other reads may be using it; anything else (a timeout, a
    /// broken channel) drops it so the next call reconnects.
    async fn failed(&self, error: &SftpError) {
        if !matches!(error, SftpError::Status(_)) {
            self.drop_session().await;
        }
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

    /// Every regular file under the root (path relative to the root, size, mtime ms), and
    /// the entries refused on the way.
    async fn walk(&self, sftp: &SftpSession, skip: Option<&Path>) -> Result<Walked, PollerError> {
        let root = self.settings.root.trim_end_matches('/').to_string();
        let mut files = Vec::new();
        let mut refused = Vec::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(dir) = pending.pop() {
            let remote = if dir.as_os_str().is_empty() {
                root.clone()
            } else {
                self.remote_path(&dir)
            };
            let entries = match sftp.read_dir(remote.clone()).await {
                Ok(entries) => entries,
                Err(e) => {
                    self.failed(&e).await;
                    return Err(self.err("list", &remote, e.to_string()));
                }
            };
            for entry in entries {
                let name = entry.file_name();
                match judge_entry(&dir, &name, &entry.metadata(), skip) {
                    Verdict::Ignore => {}
                    Verdict::Walk(path) => pending.push(path),
                    Verdict::Take(path, size, mtime_ms) => files.push((path, size, mtime_ms)),
                    Verdict::Refuse(r) => refused.push(r),
                }
            }
        }
        Ok((files, refused))
    }

    /// The attributes of `path` (under the root) itself, `None` if there is nothing there.
    async fn lstat(
        &self,
        sftp: &SftpSession,
        path: &Path,
    ) -> Result<Option<FileAttributes>, PollerError> {
        let remote = self.remote_path(path);
        match sftp.symlink_metadata(remote.clone()).await {
            Ok(meta) => Ok(Some(meta)),
            Err(SftpError::Status(status)) if status.status_code == StatusCode::NoSuchFile => {
                Ok(None)
            }
            Err(e) => {
                self.failed(&e).await;
                Err(self.err("move", &remote, e.to_string()))
            }
        }
    }
}

type Walked = (Vec<(PathBuf, u64, i64)>, Vec<Refused>);

/// The `S_IFMT` bits of a mode, and the values that matter here. russh-sftp's
/// `is_regular()` tests bits with `contains`, which a link (`0o120000`) also passes.
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// The type of an entry from its attributes; without a mode it is nothing to take.
fn entry_kind(meta: &FileAttributes) -> EntryKind {
    match meta.permissions.map(|mode| mode & S_IFMT) {
        Some(S_IFDIR) => EntryKind::Dir,
        Some(S_IFLNK) => EntryKind::Symlink,
        Some(S_IFREG) => EntryKind::File {
            size: meta.size.unwrap_or(0),
            mtime_ms: i64::from(meta.mtime.unwrap_or(0)) * 1000,
        },
        _ => EntryKind::Other,
    }
}

/// Judges one READDIR entry of `dir` (under the root) like a local one, after refusing a
/// name that did not survive russh-sftp's UTF-8 decoding.
fn judge_entry(dir: &Path, name: &str, meta: &FileAttributes, skip: Option<&Path>) -> Verdict {
    if name != "." && name != ".." && name.contains(char::REPLACEMENT_CHARACTER) {
        return Verdict::Refuse(Refused {
            display: super::display_entry(dir, name.as_bytes()),
            reason: "not_utf8",
        });
    }
    super::judge(dir, name.as_bytes(), entry_kind(meta), skip)
}

#[async_trait::async_trait]
impl Source for SftpSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list(&self, skip: Option<&Path>) -> Result<Listed, PollerError> {
        let sftp = self.session().await?;
        let (files, refused) = self.walk(&sftp, skip).await?;
        Ok(super::listed(&self.name, files, refused))
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
                self.failed(&e).await;
                Err(self.err("open", &remote, e.to_string()))
            }
        }
    }

    async fn stat(&self, listing: &Listing) -> Result<(u64, i64), PollerError> {
        let sftp = self.session().await?;
        let remote = self.remote(listing);
        // LSTAT: a link put in the file's place reads as a change, not as its target.
        match sftp.symlink_metadata(remote.clone()).await {
            Ok(meta) => Ok((
                meta.size.unwrap_or(0),
                i64::from(meta.mtime.unwrap_or(0)) * 1000,
            )),
            Err(e) => {
                self.failed(&e).await;
                Err(self.err("stat", &remote, e.to_string()))
            }
        }
    }

    async fn move_to(&self, listing: &Listing, dest: &Path) -> Result<PathBuf, PollerError> {
        let sftp = self.session().await?;
        // The folders on the way, created one at a time; one that is a link (which the
        // server would follow) or not a folder stops the move.
        let mut dir = PathBuf::new();
        for part in dest.parent().into_iter().flat_map(Path::components) {
            dir.push(part);
            let meta = match self.lstat(&sftp, &dir).await? {
                Some(meta) => meta,
                None => {
                    let remote = self.remote_path(&dir);
                    match sftp.create_dir(remote.clone()).await {
                        Ok(()) => continue,
                        // Made by someone else meanwhile: checked below like any other.
                        Err(SftpError::Status(_)) => match self.lstat(&sftp, &dir).await? {
                            Some(meta) => meta,
                            None => {
                                return Err(self.err(
                                    "move",
                                    &remote,
                                    "cannot create the folder".into(),
                                ));
                            }
                        },
                        Err(e) => {
                            self.failed(&e).await;
                            return Err(self.err("move", &remote, e.to_string()));
                        }
                    }
                }
            };
            if !matches!(entry_kind(&meta), EntryKind::Dir) {
                return Err(self.err(
                    "move",
                    &self.remote_path(&dir),
                    "on the way to the done folder but not a folder (or a link)".into(),
                ));
            }
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        for attempt in 0..super::MOVE_ATTEMPTS {
            let candidate = super::move_candidate(dest, now_ms, attempt);
            if self.lstat(&sftp, &candidate).await?.is_some() {
                continue; // taken: never replaced
            }
            // SSH_FXP_RENAME (not OpenSSH's posix-rename extension): the server refuses to
            // replace an existing file, so a name taken meanwhile fails rather than loses it.
            let (from, to) = (self.remote(listing), self.remote_path(&candidate));
            return match sftp.rename(from.clone(), to.clone()).await {
                Ok(()) => Ok(candidate),
                Err(e) => {
                    self.failed(&e).await;
                    Err(self.err("move", &from, format!("to {to}: {e}")))
                }
            };
        }
        Err(self.err(
            "move",
            &self.remote_path(dest),
            format!("{} names tried, all taken", super::MOVE_ATTEMPTS),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(mode: u32, size: u64) -> FileAttributes {
        FileAttributes {
            size: Some(size),
            permissions: Some(mode),
            mtime: Some(1_700_000_000),
            ..FileAttributes::empty()
        }
    }

    fn verdict(dir: &str, name: &str, mode: u32) -> String {
        match judge_entry(
            Path::new(dir),
            name,
            &attrs(mode, 7),
            Some(Path::new("done")),
        ) {
            Verdict::Ignore => "ignore".into(),
            Verdict::Walk(p) => format!("walk {}", p.display()),
            Verdict::Take(p, size, mtime_ms) => format!("take {} {size} {mtime_ms}", p.display()),
            Verdict::Refuse(r) => format!("refuse {} {}", r.reason, r.display),
        }
    }

    /// What a hostile server could send in READDIR, which sshd on a real disk cannot.
    #[test]
    fn hostile_readdir_names_are_refused_and_odd_ones_taken() {
        const FILE: u32 = S_IFREG | 0o644;
        const DIR: u32 = S_IFDIR | 0o755;
        const LINK: u32 = S_IFLNK | 0o777;
        let long = "x".repeat(300);
        let cases: Vec<(&str, &str, u32, String)> = vec![
            ("acme", ".", DIR, "ignore".into()),
            ("acme", "..", DIR, "ignore".into()),
            ("acme", "", FILE, "refuse traversal acme/".into()),
            (
                "acme",
                "../../etc/passwd",
                FILE,
                "refuse traversal acme/..%2F..%2Fetc%2Fpasswd".into(),
            ),
            (
                "",
                "acme/../..",
                DIR,
                "refuse traversal acme%2F..%2F..".into(),
            ),
            (
                "acme",
                "a\0b.csv",
                FILE,
                "refuse nul_byte acme/a%00b.csv".into(),
            ),
            ("acme", &long, FILE, format!("refuse too_long acme/{long}")),
            (
                "acme",
                "bad\u{FFFD}.csv",
                FILE,
                "refuse not_utf8 acme/bad\u{FFFD}.csv".into(),
            ),
            ("acme", "passwd", LINK, "refuse symlink acme/passwd".into()),
            ("", "evil", LINK, "refuse symlink evil".into()),
            ("acme", "in", DIR, "walk acme/in".into()),
            ("acme", "done", DIR, "ignore".into()),
            ("acme", "fifo", 0o010644, "ignore".into()),
            (
                "acme",
                "line\nbreak %41.csv",
                FILE,
                "take acme/line\nbreak %41.csv 7 1700000000000".into(),
            ),
        ];
        for (dir, name, mode, expected) in cases {
            assert_eq!(verdict(dir, name, mode), expected, "{dir:?} / {name:?}");
        }
        // A link's mode has the regular-file bit too: it must still read as a link.
        assert!(matches!(entry_kind(&attrs(LINK, 11)), EntryKind::Symlink));
        assert!(matches!(
            entry_kind(&FileAttributes::empty()),
            EntryKind::Other
        ));
    }
}
