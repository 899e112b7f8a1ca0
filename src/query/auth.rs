//! Who may ask what, and a record of every question.
//!
//! Bearer tokens are random secrets, so the configuration keeps only their SHA-256 (a
//! slow password hash buys nothing for a 256-bit random value); a presented token is hashed
//! and looked up. Each token reads the clients it names, or all (`"*"`). Replicas present
//! a shared peer token to each other's internal endpoint. Without configured tokens the API
//! is open and requests are audited as `anonymous`.
//!
//! Every request except probes and scrapes (`/healthz`, `/readyz`, `/metrics`) is appended
//! to the audit log as one JSON line: when, who, what (method, path and query, card-number
//! look-alikes masked), the outcome and how long it took.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::config::{ConfigError, QueryAuthConfig};

/// What a principal may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Clients(BTreeSet<String>),
}

/// The caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scope: Scope,
    /// Another replica, reading for a query it routes.
    pub peer: bool,
}

impl Principal {
    fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            scope: Scope::All,
            peer: false,
        }
    }

    /// May this principal read `client`'s data?
    pub fn may_read(&self, client: &str) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Clients(clients) => clients.contains(client),
        }
    }

    /// Reads every client's data.
    pub fn reads_all(&self) -> bool {
        self.scope == Scope::All
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token no configuration names.
    Unknown,
    /// A client token at a replica-to-replica endpoint.
    NotPeer,
}

impl Denied {
    pub fn as_str(self) -> &'static str {
        match self {
            Denied::Missing => "missing_token",
            Denied::Unknown => "unknown_token",
            Denied::NotPeer => "not_peer",
        }
    }
}

/// The configured tokens.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    tokens: Arc<HashMap<[u8; 32], Principal>>,
    peer_token: Option<Arc<str>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// No tokens: every request is `anonymous` and reads everything.
    pub fn open() -> Auth {
        Auth::default()
    }

    /// The tokens of `config`, with the peer token read from its file.
    pub fn from_config(config: &QueryAuthConfig) -> Result<Auth, ConfigError> {
        let mut tokens = HashMap::new();
        for t in &config.tokens {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&t.sha256, &mut hash).map_err(|_| {
                ConfigError::Invalid(format!(
                    "query.auth.tokens ({}): sha256 is not 64 hex digits",
                    t.name
                ))
            })?;
            let scope = if t.clients.iter().any(|c| c == "*") {
                Scope::All
            } else {
                Scope::Clients(t.clients.iter().cloned().collect())
            };
            tokens.insert(
                hash,
                Principal {
                    name: t.name.clone(),
                    scope,
                    peer: false,
                },
            );
        }
        let peer_token = match &config.peer_token_file {
            Some(path) => Some(read_peer_token(path)?),
            None => None,
        };
        if let Some(peer) = &peer_token {
            tokens.insert(
                digest(peer),
                Principal {
                    name: "peer".into(),
                    scope: Scope::All,
                    peer: true,
                },
            );
        }
        Ok(Auth {
            tokens: Arc::new(tokens),
            peer_token: peer_token.map(Arc::from),
        })
    }

    /// Whether requests need a token.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The token this replica presents to the others.
    pub fn peer_token(&self) -> Option<Arc<str>> {
        self.peer_token.clone()
    }

    /// The principal behind an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, Denied> {
        if !self.enabled() {
            return Ok(Principal::anonymous());
        }
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Denied::Missing)?;
        self.tokens
            .get(&digest(token))
            .cloned()
            .ok_or(Denied::Unknown)
    }
}

fn read_peer_token(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Invalid(format!(
            "query.auth.peer_token_file {}: {e}",
            path.display()
        ))
    })?;
    let token = text.trim().to_string();
    if token.len() < 32 {
        return Err(ConfigError::Invalid(format!(
            "query.auth.peer_token_file {}: the token must be at least 32 characters",
            path.display()
        )));
    }
    Ok(token)
}

/// One audited request.
#[derive(Debug, serde::Serialize)]
pub struct AuditEntry<'a> {
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    pub who: &'a str,
    pub method: &'a str,
    /// Path and query string, card-number look-alikes masked.
    pub what: String,
    pub status: u16,
    /// `denied` reason, when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied: Option<&'static str>,
    pub duration_ms: f64,
    /// The replicas whose stores answered, when not only this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_by: Option<&'a str>,
}

/// The audit log: JSON lines appended to a file.
#[derive(Clone, Debug)]
pub struct Audit {
    file: Arc<Mutex<std::fs::File>>,
    path: PathBuf,
}

impl Audit {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Audit> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Audit {
            file: Arc::new(Mutex::new(file)),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry as a line. A failed write is logged loudly; the answer is not
    /// withheld for it.
    pub fn record(&self, entry: &AuditEntry<'_>) {
        let mut line = serde_json::to_vec(entry).expect("audit entries serialise");
        line.push(b'\n');
        let written = self.file.lock().expect("audit lock").write_all(&line);
        if let Err(e) = written {
            tracing::error!(path = %self.path.display(), error = %e, "could not write the audit log");
        }
    }
}

/// Path and query with anything that looks like a card number masked.
pub fn audited_target(uri: &axum::http::Uri) -> String {
    let target = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or_else(|| uri.path());
    let decoded = percent_decode(target);
    crate::formats::mask_card_numbers(&decoded)
}

/// `%XX` decoded (lossy), so an encoded card number is masked too.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    fn config(dir: &Path) -> QueryAuthConfig {
        let peer = dir.join("peer");
        std::fs::write(&peer, "p".repeat(40)).unwrap();
        QueryAuthConfig {
            tokens: vec![
                TokenConfig {
                    name: "acme-analyst".into(),
                    sha256: hex::encode(digest("acme-secret")),
                    clients: vec!["acme-bank".into()],
                },
                TokenConfig {
                    name: "ops".into(),
                    sha256: hex::encode(digest("ops-secret")),
                    clients: vec!["*".into()],
                },
            ],
            peer_token_file: Some(peer),
        }
    }

    #[test]
    fn tokens_are_matched_by_their_hash_and_scoped_to_their_clients() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::from_config(&config(dir.path())).unwrap();
        let analyst = auth.authenticate(Some("Bearer acme-secret")).unwrap();
        assert_eq!(analyst.name, "acme-analyst");
        assert!(analyst.may_read("acme-bank") && !analyst.may_read("other-bank"));
        assert!(!analyst.peer);
        let ops = auth.authenticate(Some("Bearer ops-secret")).unwrap();
        assert!(ops.reads_all() && ops.may_read("other-bank"));
        let peer = auth.authenticate(Some(&format!("Bearer {}", "p".repeat(40))));
        assert!(peer.unwrap().peer);
        assert_eq!(auth.authenticate(None), Err(Denied::Missing));
        assert_eq!(auth.authenticate(Some("Basic abc")), Err(Denied::Missing));
        assert_eq!(
            auth.authenticate(Some("Bearer acme-secret2")),
            Err(Denied::Unknown)
        );
        // Open when no token is configured.
        let open = Auth::open().authenticate(None).unwrap();
        assert_eq!(open.name, "anonymous");
        assert!(open.reads_all());
    }

    #[test]
    fn a_short_peer_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        std::fs::write(c.peer_token_file.as_ref().unwrap(), "short").unwrap();
        c.tokens.clear();
        let e = Auth::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("at least 32"), "{e}");
    }

    #[test]
    fn audited_targets_mask_card_numbers_even_percent_encoded() {
        let uri: axum::http::Uri =
            "/v1/views/accounts/acme-bank/4111111111111111?x=%34111111111111111"
                .parse()
                .unwrap();
        let target = audited_target(&uri);
        assert!(!target.contains("4111111111111111"), "{target}");
        assert!(
            target.starts_with("/v1/views/accounts/acme-bank/"),
            "{target}"
        );
    }

    #[test]
    fn the_audit_log_appends_one_json_line_per_request() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::open(&dir.path().join("audit/query.jsonl")).unwrap();
        for status in [200, 403] {
            audit.record(&AuditEntry {
                at: "2026-11-27T00:00:00.000Z".into(),
                who: "ops",
                method: "GET",
                what: "/v1/files".into(),
                status,
                denied: None,
                duration_ms: 1.5,
                served_by: None,
            });
        }
        let text = std::fs::read_to_string(audit.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["status"], 403);
        assert_eq!(lines[0]["who"], "ops");
    }
}
