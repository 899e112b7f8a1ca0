//! The S3 raw store: `<bucket>/<prefix>sha256/ab/<digest>`, with the object metadata as S3
//! user metadata on the object itself.
//!
//! What it promises, beyond the [`RawStore`] contract:
//! - **Content-addressed and idempotent.** A put asks S3 (HeadObject) first and uploads only
//!   when the key is absent, so a retried or replayed put stores nothing twice.
//! - **Verified both ways.** Every upload carries the SHA-256 of its bytes
//!   (`x-amz-checksum-sha256`, per part for multipart uploads), so S3 refuses bytes that
//!   changed on the way; after the upload the object's size is checked against the file.
//!   A download is hashed as it is written and refused (`Corrupt`) unless it matches the
//!   digest its key names.
//! - **Bounded memory.** A file of one part streams from disk in a single PutObject; a
//!   larger one goes in a multipart upload with at most `upload_concurrency` parts of
//!   `part_size_mib` in memory. Downloads stream to a file in `cache_dir`.
//! - **Retried, never hung.** The SDK retries transient failures itself (its standard
//!   policy); connect and per-attempt timeouts bound every request, so an unreachable S3
//!   is an error of kind External within seconds, for the caller to retry with backoff.
//!
//! Credentials come from the AWS SDK's standard chain (environment, profile, web identity,
//! container or instance role) and are never held or printed here. The role needs
//! `s3:ListBucket` on the bucket: without it S3 answers 403 rather than 404 for an absent
//! key, and every first put fails.
//!
//! Architecture Invariant: objects are only ever created, never overwritten or deleted
//! (Object Lock, when configured, makes S3 enforce this).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
    ServerSideEncryption,
};
use futures::{StreamExt, TryStreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{ObjectMeta, RawObject, RawStore, RawStoreError, digest_of, io, key_for};
use crate::config::RawStoreConfig;
use crate::metrics::{RawStoreFailure, RawStorePut};

const MIB: u64 = 1 << 20;

/// S3 allows at most this many parts in one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// Time to open a TCP (and TLS) connection. Short: a refused or unroutable endpoint should
/// fail the attempt quickly so the SDK's retries, and then the caller's, take over.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Least time one attempt of a request may take, sending included. Larger parts get more
/// (see [`attempt_timeout`]).
const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Metadata values are HTTP header values, which S3 keeps to ASCII. Names (paths, client
/// ids) are percent-encoded: everything but RFC 3986's unreserved characters and `/`, so
/// any name (control characters, non-ASCII, `%` itself) is ASCII on S3 and decodes back
/// exactly.
const METADATA_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Raw bytes in an S3 bucket (or an S3-compatible store).
pub struct S3RawStore {
    client: Client,
    bucket: String,
    /// Put before every key (`credstream/` → `credstream/sha256/ab/<digest>`).
    prefix: String,
    /// The endpoint, for error messages.
    endpoint: String,
    sse: Option<ServerSideEncryption>,
    kms_key_id: Option<String>,
    /// Object Lock mode and retention in days for every new object.
    lock: Option<(ObjectLockMode, u32)>,
    /// Bytes per multipart part; a file of at most this size is one PutObject.
    part_size: u64,
    /// Parts uploaded at once.
    concurrency: usize,
    /// Where [`RawStore::open`] downloads to.
    cache_dir: PathBuf,
}

impl fmt::Debug for S3RawStore {
    // By hand: the SDK client's configuration is left out (it resolves credentials).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3RawStore")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("sse", &self.sse)
            .field("kms_key_id", &self.kms_key_id)
            .field("lock", &self.lock)
            .field("part_size", &self.part_size)
            .field("concurrency", &self.concurrency)
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl S3RawStore {
    /// A store for the bucket `config` names, downloading into `cache_dir`, whose
    /// leftovers (downloads a crash interrupted) are removed. No request is made: a wrong
    /// bucket or missing credentials show on the first call.
    pub async fn connect(
        config: &RawStoreConfig,
        cache_dir: PathBuf,
    ) -> Result<S3RawStore, RawStoreError> {
        let bucket = config
            .bucket
            .clone()
            .ok_or_else(|| RawStoreError::Config("bucket is required for kind = \"s3\"".into()))?;
        clear_downloads(&cache_dir);
        let part_size = config.part_size_mib * MIB;
        // The SDK's default HTTP client needs its default features; build the same client
        // with rustls on ring, which russh uses here too (aws-lc would need a C build).
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(attempt_timeout(part_size))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new(config.region.clone()))
            .timeout_config(timeouts);
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(config.force_path_style)
            .build();
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", config.region));
        let lock = config
            .object_lock_mode
            .as_deref()
            .zip(config.object_lock_days)
            .map(|(mode, days)| (ObjectLockMode::from(mode), days));
        Ok(S3RawStore {
            client: Client::from_conf(s3),
            bucket,
            prefix: config.prefix.clone(),
            endpoint,
            sse: config.sse.as_deref().map(ServerSideEncryption::from),
            kms_key_id: config.kms_key_id.clone(),
            lock,
            part_size,
            concurrency: config.upload_concurrency.max(1),
            cache_dir,
        })
    }

    /// Asks S3 for the bucket (HeadBucket), so that a wrong bucket or credentials stop
    /// `credstream run` at start rather than at the first file: a missing bucket or a
    /// refusal is a [`RawStoreError::Config`]; no answer is a `Remote` error, which the
    /// caller may tolerate (the store retries at every use).
    pub async fn check(&self) -> Result<(), RawStoreError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => {
                let status = e.raw().status().as_u16();
                let why = match status {
                    404 => "does not exist".to_string(),
                    403 => "refuses these credentials (HeadBucket: 403)".to_string(),
                    301 => "is in another region than raw_store.region".to_string(),
                    _ => format!("answers HeadBucket with HTTP {status}"),
                };
                Err(RawStoreError::Config(format!(
                    "bucket {:?} at {} {why}",
                    self.bucket, self.endpoint
                )))
            }
            Err(e) => Err(self.remote("head", &format!("bucket {}", self.bucket), &e)),
        }
    }

    /// The S3 key of a store key.
    fn object_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Retention of an object stored now, if Object Lock is configured.
    fn retention(&self) -> Option<(ObjectLockMode, DateTime)> {
        self.lock.as_ref().map(|(mode, days)| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_secs();
            let until = now + u64::from(*days) * 86_400;
            (
                mode.clone(),
                DateTime::from_secs(i64::try_from(until).expect("a date S3 can hold")),
            )
        })
    }

    /// HeadObject: `None` if there is no such object.
    async fn head(
        &self,
        key: &str,
    ) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>, RawStoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
        {
            Ok(head) => Ok(Some(head)),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(self.remote("head", key, &e)),
        }
    }

    /// One PutObject with the body streamed from `staged`.
    async fn put_whole(
        &self,
        key: &str,
        sha256: &str,
        staged: &Path,
        metadata: HashMap<String, String>,
    ) -> Result<(), RawStoreError> {
        let body = ByteStream::from_path(staged)
            .await
            .map_err(|e| io("read", key)(std::io::Error::other(e)))?;
        let (lock_mode, retain_until) = self.retention().unzip();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .body(body)
            // The algorithm too, not only the value: a PUT with Object Lock needs it (or
            // Content-MD5), and moto stores the checksum only with it.
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(base64(&hex::decode(sha256).expect("a checked digest")))
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.kms_key_id.clone())
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(retain_until)
            .set_metadata(Some(metadata))
            .send()
            .await
            .map_err(|e| self.remote("put", key, &e))?;
        Ok(())
    }

    /// A multipart upload of `staged` (`size` bytes), aborted if any step fails.
    async fn put_parts(
        &self,
        key: &str,
        staged: &Path,
        size: u64,
        metadata: HashMap<String, String>,
    ) -> Result<(), RawStoreError> {
        let object_key = self.object_key(key);
        let (lock_mode, retain_until) = self.retention().unzip();
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&object_key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.kms_key_id.clone())
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(retain_until)
            .set_metadata(Some(metadata))
            .send()
            .await
            .map_err(|e| self.remote("create upload", key, &e))?;
        let upload_id = created.upload_id.ok_or_else(|| {
            self.failed(
                "create upload",
                key,
                "S3 answered without an upload id".into(),
            )
        })?;

        let result = self
            .upload_and_complete(key, &object_key, &upload_id, staged, size)
            .await;
        if result.is_err() {
            // Best effort: parts of an upload never completed cost storage until aborted
            // (or until a bucket lifecycle rule does it).
            if let Err(e) = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&object_key)
                .upload_id(&upload_id)
                .send()
                .await
            {
                tracing::warn!(
                    key,
                    upload_id,
                    error = %causes(&e),
                    "could not abort a failed multipart upload"
                );
            }
        }
        result
    }

    async fn upload_and_complete(
        &self,
        key: &str,
        object_key: &str,
        upload_id: &str,
        staged: &Path,
        size: u64,
    ) -> Result<(), RawStoreError> {
        // One handle for all parts: positioned reads need no seeking, and every part comes
        // from the same file even if the name is replaced meanwhile.
        let file = Arc::new(std::fs::File::open(staged).map_err(io("open", key))?);
        // S3 takes at most 10,000 parts: a file too large for that many parts of the
        // configured size goes in larger parts.
        let part_size = self
            .part_size
            .max(size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB);
        let count = size.div_ceil(part_size);
        // `buffered` runs at most `concurrency` part futures at once, and a part's bytes
        // are read inside its future, so at most that many parts are in memory. It yields
        // them in order, as CompleteMultipartUpload needs.
        let parts: Vec<CompletedPart> = futures::stream::iter(0..count)
            .map(|i| {
                let offset = i * part_size;
                let len = part_size.min(size - offset);
                let number = i32::try_from(i + 1).expect("at most 10,000 parts");
                self.upload_part(key, object_key, upload_id, &file, number, offset, len)
            })
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(object_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.remote("complete upload", key, &e))?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload_part(
        &self,
        key: &str,
        object_key: &str,
        upload_id: &str,
        file: &Arc<std::fs::File>,
        number: i32,
        offset: u64,
        len: u64,
    ) -> Result<CompletedPart, RawStoreError> {
        let file = Arc::clone(file);
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            use std::os::unix::fs::FileExt;
            let mut bytes = vec![0; usize::try_from(len).expect("a part fits in memory")];
            file.read_exact_at(&mut bytes, offset)?;
            let checksum = base64(&Sha256::digest(&bytes));
            Ok((bytes, checksum))
        })
        .await
        .expect("reading a part does not panic");
        let (bytes, checksum) = read.map_err(io("read", key))?;
        let uploaded = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(object_key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&checksum)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.remote("upload part", key, &e))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(uploaded.e_tag)
            .checksum_sha256(checksum)
            .build())
    }

    /// A failed request as a [`RawStoreError::Remote`], counted. The message names the
    /// service's error, or says the endpoint did not answer.
    fn remote<E>(&self, op: &'static str, key: &str, error: &SdkError<E>) -> RawStoreError
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
    {
        let message = match error {
            // The chain of causes reads "dispatch failure: io error: … Connection
            // refused"; the SDK's debug form of it adds nothing an operator needs.
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                format!("no answer from {}: {}", self.endpoint, causes(error))
            }
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                match (error.code(), error.message()) {
                    (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
                    (Some(code), None) => format!("HTTP {status} {code}"),
                    _ => format!("HTTP {status}: {}", DisplayErrorContext(error)),
                }
            }
            _ => DisplayErrorContext(error).to_string(),
        };
        self.failed(op, key, message)
    }

    fn failed(&self, op: &'static str, key: &str, message: String) -> RawStoreError {
        RawStoreFailure {
            backend: "s3",
            op: match op {
                "head" => "head",
                "get" | "download" => "get",
                _ => "put",
            },
        }
        .emit();
        RawStoreError::Remote {
            op,
            key: key.to_string(),
            message,
        }
    }
}

#[async_trait::async_trait]
impl RawStore for S3RawStore {
    async fn put(
        &self,
        sha256: &str,
        staged: &Path,
        meta: &ObjectMeta,
    ) -> Result<String, RawStoreError> {
        let key = key_for(sha256)?;
        if self.head(&key).await?.is_some() {
            RawStorePut {
                backend: "s3",
                outcome: "present",
            }
            .emit();
            return Ok(key);
        }
        let size = tokio::fs::metadata(staged)
            .await
            .map_err(io("stat", &key))?
            .len();
        let metadata = encode_meta(sha256, meta);
        if size <= self.part_size {
            self.put_whole(&key, sha256, staged, metadata).await?;
        } else {
            self.put_parts(&key, staged, size, metadata).await?;
        }
        // The checksums guard the bytes; this guards against an upload that S3 (or a
        // store that ignores checksums) took short.
        let stored = self.head(&key).await?.map(|head| head.content_length);
        let wrong = match stored {
            Some(Some(n)) if u64::try_from(n) == Ok(size) => None,
            Some(Some(n)) => Some(format!("the stored object has {n} bytes, the file {size}")),
            Some(None) => Some("S3 did not say how large the stored object is".to_string()),
            None => Some("the object is not there after its upload".to_string()),
        };
        if let Some(message) = wrong {
            return Err(self.failed("verify", &key, message));
        }
        RawStorePut {
            backend: "s3",
            outcome: "stored",
        }
        .emit();
        tracing::debug!(key, size, "raw object stored");
        Ok(key)
    }

    async fn open(&self, key: &str) -> Result<RawObject, RawStoreError> {
        let digest = digest_of(key).ok_or_else(|| RawStoreError::BadDigest(key.to_string()))?;
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Err(RawStoreError::Missing {
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(self.remote("get", key, &e)),
        };
        tokio::fs::create_dir_all(&self.cache_dir)
            .await
            .map_err(io("mkdir", key))?;
        let path = self
            .cache_dir
            .join(format!("{digest}.{:016x}.part", fastrand::u64(..)));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io("create", key))?;
        // From here on the file is removed when `object` is dropped, so any error below
        // leaves nothing in the cache.
        let object = RawObject::temporary(path);
        let mut hasher = Sha256::new();
        let mut body = output.body;
        while let Some(chunk) = body.try_next().await.map_err(|e| {
            self.failed(
                "download",
                key,
                format!("reading the body from {}: {}", self.endpoint, causes(&e)),
            )
        })? {
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io("write", key))?;
        }
        file.flush().await.map_err(io("write", key))?;
        let actual = hex::encode(hasher.finalize());
        if actual != digest {
            return Err(RawStoreError::Corrupt {
                key: key.to_string(),
                actual,
            });
        }
        Ok(object)
    }

    async fn meta(&self, key: &str) -> Result<ObjectMeta, RawStoreError> {
        digest_of(key).ok_or_else(|| RawStoreError::BadDigest(key.to_string()))?;
        let head = self
            .head(key)
            .await?
            .ok_or_else(|| RawStoreError::Missing {
                key: key.to_string(),
            })?;
        decode_meta(head.metadata().unwrap_or(&HashMap::new())).map_err(|message| {
            io("parse metadata", key)(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                message,
            ))
        })
    }
}

/// How long one attempt may take: at least a minute, and two seconds per MiB of a part, so
/// a large part is not cut off on a slow (0.5 MiB/s) link.
fn attempt_timeout(part_size: u64) -> Duration {
    MIN_ATTEMPT_TIMEOUT.max(Duration::from_secs(2 * part_size / MIB))
}

/// An error and its sources, as `error: cause: root cause`.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The user metadata stored with an object (S3 prefixes each name with `x-amz-meta-`).
fn encode_meta(sha256: &str, meta: &ObjectMeta) -> HashMap<String, String> {
    let (path, truncated) = encode_path(&meta.original_path);
    let mut metadata = HashMap::from([
        ("sha256".to_string(), sha256.to_string()),
        ("client-id".to_string(), encode_name(&meta.client_id)),
        ("original-path".to_string(), path),
        ("mtime-ms".to_string(), meta.mtime_ms.to_string()),
        ("size".to_string(), meta.size.to_string()),
        ("received-ms".to_string(), meta.received_ms.to_string()),
    ]);
    if truncated {
        metadata.insert("original-path-truncated".to_string(), "true".to_string());
    }
    metadata
}

/// Removes partial downloads (`*.part`) a previous process left in `dir`; each process has
/// its own cache directory (under its state directory), so none is in use.
fn clear_downloads(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "part") {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed a download left by an earlier run")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover download")
                }
            }
        }
    }
}

/// Most bytes of encoded path kept in metadata: S3 allows 2 KiB of user metadata in all,
/// and encoding can triple a name's length. The full path is in the arrival record and
/// the ledger either way.
const MAX_ENCODED_PATH: usize = 1024;

/// The encoded path, cut at a character so that it fits, and whether it was cut.
fn encode_path(path: &str) -> (String, bool) {
    let encoded = encode_name(path);
    if encoded.len() <= MAX_ENCODED_PATH {
        return (encoded, false);
    }
    let mut kept = String::with_capacity(MAX_ENCODED_PATH);
    for ch in path.chars() {
        let mut buf = [0u8; 4];
        let piece = encode_name(ch.encode_utf8(&mut buf));
        if kept.len() + piece.len() > MAX_ENCODED_PATH {
            break;
        }
        kept.push_str(&piece);
    }
    (kept, true)
}

/// [`ObjectMeta`] from the user metadata [`encode_meta`] wrote.
fn decode_meta(metadata: &HashMap<String, String>) -> Result<ObjectMeta, String> {
    let text = |name: &str| {
        metadata
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("no {name} in the object's metadata"))
    };
    let name = |field: &str| {
        let value = text(field)?;
        percent_decode_str(value)
            .decode_utf8()
            .map(|name| name.into_owned())
            .map_err(|e| format!("{field} {value:?} in the object's metadata: {e}"))
    };
    fn number<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, String>
    where
        T::Err: fmt::Display,
    {
        value
            .parse()
            .map_err(|e| format!("{field} {value:?} in the object's metadata: {e}"))
    }
    Ok(ObjectMeta {
        client_id: name("client-id")?,
        original_path: name("original-path")?,
        mtime_ms: number("mtime-ms", text("mtime-ms")?)?,
        size: number("size", text("size")?)?,
        // Absent on objects stored before it was kept, as in the fs store.
        received_ms: match metadata.get("received-ms") {
            Some(value) => number("received-ms", value)?,
            None => 0,
        },
    })
}

/// A name as an ASCII metadata value (see [`METADATA_VALUE`]).
fn encode_name(name: &str) -> String {
    utf8_percent_encode(name, METADATA_VALUE).to_string()
}

/// Standard base64 with padding, as S3 wants checksums.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlong_path_is_cut_at_a_character_to_fit_s3s_metadata_limit() {
        let long = format!("acme/{}.csv", "é".repeat(400)); // 2 400 encoded bytes
        let (encoded, truncated) = encode_path(&long);
        assert!(
            truncated && encoded.len() <= MAX_ENCODED_PATH,
            "{}",
            encoded.len()
        );
        let decoded = percent_decode_str(&encoded).decode_utf8().unwrap();
        assert!(long.starts_with(decoded.as_ref()) && decoded.len() > 300);
        assert_eq!(encode_path("acme/a.csv"), ("acme/a.csv".to_string(), false));
    }

    #[test]
    fn checksums_are_standard_base64() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        // S3's example: the SHA-256 of "abc".
        assert_eq!(
            base64(&Sha256::digest(b"abc")),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn any_name_is_stored_as_ascii_and_read_back_exactly() {
        let meta = ObjectMeta {
            client_id: "acme corp".into(),
            original_path: "acme/../../etc/pä%ss\u{1}wd\n.csv".into(),
            mtime_ms: -5,
            size: 42,
            received_ms: 7,
        };
        let stored = encode_meta(&"ab".repeat(32), &meta);
        for value in stored.values() {
            assert!(
                value.bytes().all(|b| b.is_ascii_graphic()),
                "not printable ASCII: {value:?}"
            );
        }
        assert_eq!(
            stored["original-path"],
            "acme/../../etc/p%C3%A4%25ss%01wd%0A.csv"
        );
        assert_eq!(decode_meta(&stored).unwrap(), meta);

        let mut older = stored.clone();
        older.remove("received-ms");
        assert_eq!(decode_meta(&older).unwrap().received_ms, 0);
        older.remove("size");
        assert!(decode_meta(&older).unwrap_err().contains("size"));
    }

    #[test]
    fn attempts_get_time_for_large_parts() {
        assert_eq!(attempt_timeout(16 * MIB), MIN_ATTEMPT_TIMEOUT);
        assert_eq!(attempt_timeout(5120 * MIB), Duration::from_secs(10_240));
    }
}
