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
mod object;
mod s3;

pub use fs::FsRawStore;
pub use object::{MappedRaw, RawObject};
pub use s3::S3RawStore;

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
    /// A remote store refused or failed a request (S3: the service's error, or no answer).
    #[error("raw store {op} {key}: {message}")]
    Remote {
        op: &'static str,
        key: String,
        message: String,
    },
    #[error("raw object {key} is missing")]
    Missing { key: String },
    #[error("raw object {key} is corrupt: its SHA-256 is {actual}")]
    Corrupt { key: String, actual: String },
    #[error("{0:?} is not a SHA-256 in hex")]
    BadDigest(String),
    #[error("raw_store: {0}")]
    Config(String),
}

impl RawStoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RawStoreError::Io { .. } | RawStoreError::Remote { .. } => ErrorKind::External,
            RawStoreError::Missing { .. } | RawStoreError::Corrupt { .. } => ErrorKind::Internal,
            RawStoreError::BadDigest(_) => ErrorKind::Data,
            RawStoreError::Config(_) => ErrorKind::Config,
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
    /// When the poller read the file, milliseconds since the epoch (0 for objects stored
    /// before this was kept).
    #[serde(default)]
    pub received_ms: i64,
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

    /// A local file with the bytes under `key`, checked against the digest the key names
    /// while it was read (never held whole in memory). For a remote store it is a
    /// temporary copy, removed when the [`RawObject`] is dropped.
    async fn open(&self, key: &str) -> Result<RawObject, RawStoreError>;

    /// The bytes under `key`, checked, in memory: for small files and tests. Large files go
    /// through [`RawStore::open`] and [`RawObject::map`].
    async fn get(&self, key: &str) -> Result<Vec<u8>, RawStoreError> {
        let object = self.open(key).await?;
        tokio::fs::read(object.path())
            .await
            .map_err(|source| RawStoreError::Io {
                op: "read",
                key: key.to_string(),
                source,
            })
    }

    /// What was recorded with the object under `key` when it was stored.
    async fn meta(&self, key: &str) -> Result<ObjectMeta, RawStoreError>;
}

/// Wraps an I/O error of `op` on the object under `key`.
fn io<'a>(op: &'static str, key: &'a str) -> impl FnOnce(std::io::Error) -> RawStoreError + 'a {
    move |source| RawStoreError::Io {
        op,
        key: key.to_string(),
        source,
    }
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

/// Lower-case hex SHA-256 of the file at `path`, read in 1 MiB pieces.
pub async fn hash_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
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
