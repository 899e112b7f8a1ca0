//! Content-addressed storage of raw file bytes: the archive every figure traces back to.
//!
//! The key of a file is derived from the SHA-256 of its bytes, so the same bytes are stored
//! once and a key names exactly one content. A put is idempotent (present: skipped) and
//! atomic (a reader never sees a partial object).
//!
//! Architecture Invariant: the raw store is written before any record about the file is
//! emitted, and is the only place a card number may rest in clear. It knows nothing of
//! Kafka, formats or categories.

mod fs;

pub use fs::FsRawStore;

use std::path::Path;

use crate::ErrorKind;

/// Raw store errors.
#[derive(Debug, thiserror::Error)]
pub enum RawStoreError {
    #[error("raw store {op} {key}: {source}")]
    Io {
        op: &'static str,
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("raw object {key} is missing")]
    Missing { key: String },
    #[error("raw object {key} is corrupt: its SHA-256 is {actual}")]
    Corrupt { key: String, actual: String },
    #[error("{0:?} is not a SHA-256 in hex")]
    BadDigest(String),
}

impl RawStoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RawStoreError::Io { .. } => ErrorKind::External,
            RawStoreError::Missing { .. } | RawStoreError::Corrupt { .. } => ErrorKind::Internal,
            RawStoreError::BadDigest(_) => ErrorKind::Data,
        }
    }
}

/// What the store remembers of a file besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectMeta {
    /// Client id the file arrived for.
    pub client_id: String,
    /// Path in the landing area, escaped to UTF-8.
    pub original_path: String,
    /// Modification time at the source, milliseconds since the epoch.
    pub mtime_ms: i64,
    pub size: u64,
}

/// A place for raw bytes, addressed by their SHA-256.
#[async_trait::async_trait]
pub trait RawStore: Send + Sync + std::fmt::Debug {
    /// Stores the file at `staged` (a local file whose SHA-256 is `sha256`) unless an
    /// object with that digest is already there. Returns the key either way.
    async fn put(
        &self,
        sha256: &str,
        staged: &Path,
        meta: &ObjectMeta,
    ) -> Result<String, RawStoreError>;

    /// The bytes under `key`, checked against the digest the key names.
    async fn get(&self, key: &str) -> Result<Vec<u8>, RawStoreError>;

    /// What was recorded with the object under `key` when it was stored.
    async fn meta(&self, key: &str) -> Result<ObjectMeta, RawStoreError>;
}

/// The key of a digest: `sha256/<first two hex digits>/<digest>`. The fan-out keeps
/// directories (and S3 prefixes) small.
pub fn key_for(sha256: &str) -> Result<String, RawStoreError> {
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(RawStoreError::BadDigest(sha256.to_string()));
    }
    Ok(format!("sha256/{}/{}", &sha256[..2], sha256))
}

/// The digest a key names.
pub fn digest_of(key: &str) -> Option<&str> {
    let digest = key.strip_prefix("sha256/")?.split('/').nth(1)?;
    key_for(digest).ok().filter(|k| k == key).map(|_| digest)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_derived_from_valid_digests_only() {
        let d = sha256_hex(b"abc");
        assert_eq!(
            d,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let key = key_for(&d).unwrap();
        assert_eq!(key, format!("sha256/ba/{d}"));
        assert_eq!(digest_of(&key), Some(d.as_str()));
        assert!(key_for("../../etc/passwd").is_err());
        assert!(key_for(&d.to_uppercase()).is_err());
        assert_eq!(digest_of("sha256/zz/../x"), None);
    }
}
