//! The local-directory raw store: `<root>/sha256/ab/<digest>`, with the object metadata
//! beside it as `<digest>.meta.json`.

use std::path::{Path, PathBuf};

use super::{ObjectMeta, RawObject, RawStore, RawStoreError, digest_of, hash_file, io, key_for};

/// Raw bytes in a local (or mounted) directory.
#[derive(Debug, Clone)]
pub struct FsRawStore {
    root: PathBuf,
}

impl FsRawStore {
    pub fn new(root: impl Into<PathBuf>) -> FsRawStore {
        FsRawStore { root: root.into() }
    }

    /// Where `key` lives. Keys are checked digests, so this cannot leave the root.
    fn path(&self, key: &str) -> Result<PathBuf, RawStoreError> {
        digest_of(key)
            .map(|_| self.root.join(key))
            .ok_or_else(|| RawStoreError::BadDigest(key.to_string()))
    }
}

#[async_trait::async_trait]
impl RawStore for FsRawStore {
    async fn put(
        &self,
        sha256: &str,
        staged: &Path,
        meta: &ObjectMeta,
    ) -> Result<String, RawStoreError> {
        let key = key_for(sha256)?;
        let path = self.path(&key)?;
        if tokio::fs::try_exists(&path)
            .await
            .map_err(io("stat", &key))?
        {
            return Ok(key);
        }
        let dir = path.parent().expect("keys have a directory");
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(io("mkdir", &key))?;
        // Copy to a temporary name, flush to disk, then rename: readers see the whole
        // object or none of it, and a crash leaves at most a stray temporary file.
        let tmp = dir.join(format!(".{sha256}.{}.tmp", std::process::id()));
        let meta_json = serde_json::to_vec_pretty(meta).expect("metadata serialises");
        let result: Result<(), std::io::Error> = async {
            tokio::fs::copy(staged, &tmp).await?;
            tokio::fs::File::open(&tmp).await?.sync_all().await?;
            tokio::fs::write(dir.join(format!("{sha256}.meta.json")), &meta_json).await?;
            tokio::fs::rename(&tmp, &path).await?;
            tokio::fs::File::open(dir).await?.sync_all().await
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io("write", &key)(e));
        }
        Ok(key)
    }

    async fn open(&self, key: &str) -> Result<RawObject, RawStoreError> {
        let path = self.path(key)?;
        let actual = match hash_file(&path).await {
            Ok(actual) => actual,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RawStoreError::Missing {
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(io("read", key)(e)),
        };
        if Some(actual.as_str()) != digest_of(key) {
            return Err(RawStoreError::Corrupt {
                key: key.to_string(),
                actual,
            });
        }
        Ok(RawObject::in_place(path))
    }

    async fn meta(&self, key: &str) -> Result<ObjectMeta, RawStoreError> {
        let path = self.path(key)?;
        let digest = digest_of(key).expect("valid keys name a digest");
        let meta_path = path
            .parent()
            .expect("keys have a directory")
            .join(format!("{digest}.meta.json"));
        let text = match tokio::fs::read(&meta_path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RawStoreError::Missing {
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(io("read metadata", key)(e)),
        };
        serde_json::from_slice(&text).map_err(|e| {
            io("parse metadata", key)(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rawstore::sha256_hex;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            client_id: "acme".into(),
            original_path: "acme/a.csv".into(),
            mtime_ms: 1,
            size: 5,
            received_ms: 2,
        }
    }

    #[tokio::test]
    async fn put_is_content_addressed_idempotent_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("staged");
        std::fs::write(&staged, b"hello").unwrap();
        let store = FsRawStore::new(dir.path().join("raw"));
        let sha = sha256_hex(b"hello");
        let key = store.put(&sha, &staged, &meta()).await.unwrap();
        assert_eq!(key, key_for(&sha).unwrap());
        assert_eq!(store.put(&sha, &staged, &meta()).await.unwrap(), key);
        assert_eq!(store.get(&key).await.unwrap(), b"hello");

        // Bit rot (or tampering) is detected on read.
        std::fs::write(dir.path().join("raw").join(&key), b"hellO").unwrap();
        assert!(matches!(
            store.get(&key).await,
            Err(RawStoreError::Corrupt { .. })
        ));
        let missing = key_for(&sha256_hex(b"other")).unwrap();
        assert!(matches!(
            store.get(&missing).await,
            Err(RawStoreError::Missing { .. })
        ));
        assert!(matches!(
            store.get("sha256/../../etc/passwd").await,
            Err(RawStoreError::BadDigest(_))
        ));
    }
}
