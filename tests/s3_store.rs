//! The S3 raw store (`credstream::rawstore::S3RawStore`, through `aws-sdk-s3`) against
//! moto's S3 on loopback: what it writes is read back with plain REST calls (`S3Rest`),
//! not with the SDK under test.
//!
//! moto stores checksums but never verifies them (see `support::s3`), so these tests
//! check that the right checksum is *sent and stored*; that S3 refuses wrong bytes is
//! AWS's promise, not something moto can show.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use credstream::ErrorKind;
use credstream::config::{RawStoreConfig, RawStoreKind};
use credstream::rawstore::{ObjectMeta, RawStore, RawStoreError, S3RawStore, key_for, sha256_hex};
use reqwest::Method;
use sha2::{Digest, Sha256};
use support::s3::{S3Rest, S3Server, base64, object_path};
use support::unique;

const MIB: usize = 1 << 20;

/// Every object key starts with this, as `raw_store.prefix` allows.
const PREFIX: &str = "credstream/";

/// Bound on a call that must fail rather than hang: a hang fails the test instead of
/// stalling it. Not a speed assertion; the store's own timeouts are far shorter.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// The store takes credentials from the SDK's standard chain, as in production; here
/// that is the environment, set once per test process before any test builds a client.
fn credentials() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        // SAFETY: std serialises its own reads and writes of the environment; the danger
        // is C code reading it meanwhile (getaddrinfo, say). None runs here: endpoints
        // are IP literals, and this happens once per process, before any test's client.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", support::s3::ACCESS_KEY);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", support::s3::SECRET_KEY);
            std::env::remove_var("AWS_SESSION_TOKEN");
            std::env::remove_var("AWS_PROFILE");
        }
    });
}

/// A validated `s3` raw store configuration for `bucket` on `server`.
fn config(
    server: &S3Server,
    bucket: &str,
    tweak: impl FnOnce(&mut RawStoreConfig),
) -> Result<RawStoreConfig> {
    let mut config = RawStoreConfig {
        kind: RawStoreKind::S3,
        bucket: Some(bucket.to_string()),
        prefix: PREFIX.to_string(),
        region: server.region().to_string(),
        endpoint: Some(server.endpoint()),
        force_path_style: true,
        ..RawStoreConfig::default()
    };
    tweak(&mut config);
    config.validate().context("the test's raw store config")?;
    Ok(config)
}

/// One test's store: its bucket, its cache directory and a place for staged files.
struct Fixture {
    store: S3RawStore,
    rest: S3Rest,
    bucket: String,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A store on a new bucket of `server` (with Object Lock if `object_lock`).
    async fn new(
        server: &S3Server,
        object_lock: bool,
        tweak: impl FnOnce(&mut RawStoreConfig),
    ) -> Result<Fixture> {
        credentials();
        let rest = server.rest();
        let bucket = unique("raw-");
        if object_lock {
            rest.create_bucket_with_object_lock(&bucket).await?;
        } else {
            rest.create_bucket(&bucket).await?;
        }
        let dir = support::test_dir()?;
        let config = config(server, &bucket, tweak)?;
        let store = S3RawStore::connect(&config, dir.path().join("cache")).await?;
        Ok(Fixture {
            store,
            rest,
            bucket,
            dir,
        })
    }

    /// Writes `bytes` to a staged file; returns its digest and path.
    fn stage(&self, name: &str, bytes: &[u8]) -> Result<(String, PathBuf)> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes)?;
        Ok((sha256_hex(bytes), path))
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// The raw HEAD response for a store key.
    async fn head(&self, key: &str) -> Result<support::s3::S3Response> {
        self.rest
            .send(
                Method::HEAD,
                &object_path(&self.bucket, &format!("{PREFIX}{key}")),
                &[],
                Vec::new(),
            )
            .await?
            .ensure_success("HEAD")
    }

    /// The raw GET response (with stored checksums) for a store key.
    async fn get(&self, key: &str) -> Result<support::s3::S3Response> {
        self.rest
            .get_object(&self.bucket, &format!("{PREFIX}{key}"))
            .await?
            .with_context(|| format!("{key} is not in the bucket"))
    }
}

fn object_meta(original_path: &str, size: usize) -> ObjectMeta {
    ObjectMeta {
        client_id: "acme".into(),
        original_path: original_path.into(),
        mtime_ms: 1_767_225_600_123,
        size: size as u64,
        received_ms: 1_767_225_660_456,
    }
}

/// `len` bytes that are not a short repeating pattern, so a misplaced part would show.
fn varied_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    std::iter::repeat_with(|| rng.u8(..)).take(len).collect()
}

/// The files in `dir` (none if it does not exist).
fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

#[tokio::test]
async fn a_small_file_round_trips_with_its_metadata_under_its_digest() -> Result<()> {
    let server = S3Server::start()?;
    let fx = Fixture::new(&server, false, |_| {}).await?;
    let bytes = b"account,balance\n4111,100.00\n".to_vec();
    let (sha, staged) = fx.stage("accounts.csv", &bytes)?;
    // A landing-area name as hostile as names get: traversal, non-ASCII, `%`, control
    // characters. It must come back exactly, and reach S3 as plain ASCII.
    let hostile = "acme/../../etc/pä%ss\u{1}wd\n.csv";
    let meta = object_meta(hostile, bytes.len());

    let key = fx.store.put(&sha, &staged, &meta).await?;
    ensure!(key == key_for(&sha)?, "key {key}");
    ensure!(
        fx.rest.list_keys(&fx.bucket, "").await? == [format!("{PREFIX}{key}")],
        "the bucket holds something else"
    );

    let object = fx.store.open(&key).await?;
    let path = object.path().to_path_buf();
    ensure!(path.starts_with(fx.cache_dir()), "downloaded to {path:?}");
    ensure!(std::fs::read(&path)? == bytes, "open returned other bytes");
    drop(object);
    ensure!(!path.exists(), "the downloaded copy outlived its RawObject");
    ensure!(files_in(&fx.cache_dir())?.is_empty());
    ensure!(fx.store.get(&key).await? == bytes);
    ensure!(
        files_in(&fx.cache_dir())?.is_empty(),
        "get left a file behind"
    );

    ensure!(
        fx.store.meta(&key).await? == meta,
        "metadata changed on the way"
    );

    // What S3 holds: ASCII metadata headers, and the SHA-256 as the object's checksum.
    let head = fx.head(&key).await?;
    let stored = head.metadata();
    for (name, value) in head.headers.iter() {
        if name.as_str().starts_with("x-amz-meta-") {
            ensure!(
                value.as_bytes().iter().all(u8::is_ascii_graphic),
                "{name} is not printable ASCII: {value:?}"
            );
        }
    }
    ensure!(
        stored.get("original-path").map(String::as_str)
            == Some("acme/../../etc/p%C3%A4%25ss%01wd%0A.csv"),
        "metadata: {stored:?}"
    );
    ensure!(stored.get("sha256") == Some(&sha), "metadata: {stored:?}");
    ensure!(stored.get("client-id").map(String::as_str) == Some("acme"));
    ensure!(stored.get("size") == Some(&bytes.len().to_string()));
    let got = fx.get(&key).await?;
    ensure!(got.body == bytes);
    ensure!(
        got.header("x-amz-checksum-sha256") == Some(base64(&Sha256::digest(&bytes)).as_str()),
        "stored checksum {:?}",
        got.header("x-amz-checksum-sha256")
    );

    // An empty file is a file too: one PutObject of no bytes.
    let (empty_sha, empty) = fx.stage("empty.csv", b"")?;
    let empty_key = fx
        .store
        .put(&empty_sha, &empty, &object_meta("acme/empty.csv", 0))
        .await?;
    ensure!(fx.store.get(&empty_key).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_file_larger_than_a_part_goes_up_in_parts_and_comes_back_whole() -> Result<()> {
    let server = S3Server::start()?;
    // moto, like S3, refuses parts below 5 MiB (but the last).
    let fx = Fixture::new(&server, false, |c| {
        c.part_size_mib = 5;
        c.upload_concurrency = 2;
    })
    .await?;
    let bytes = varied_bytes(12 * MIB + 12_345, 1);
    let (sha, staged) = fx.stage("big.dat", &bytes)?;
    let meta = object_meta("acme/2026/big.dat", bytes.len());

    let key = fx.store.put(&sha, &staged, &meta).await?;
    ensure!(key == key_for(&sha)?);

    let got = fx.get(&key).await?;
    ensure!(
        got.body.len() == bytes.len(),
        "{} bytes stored",
        got.body.len()
    );
    ensure!(got.body == bytes, "the stored object is not the file");
    // A multipart ETag is "<md5 of the part md5s>-<part count>": 5 + 5 + 2 MiB.
    let etag = got.header("etag").unwrap_or_default();
    ensure!(
        etag.ends_with("-3\""),
        "ETag {etag}: not a three-part upload"
    );
    // The checksum of a multipart object is over the parts' checksums, also "-3".
    let checksum = got.header("x-amz-checksum-sha256").unwrap_or_default();
    ensure!(checksum.ends_with("-3"), "stored checksum {checksum:?}");
    ensure!(
        got.metadata().get("sha256") == Some(&sha),
        "metadata: {:?}",
        got.metadata()
    );
    // Nothing left half-done.
    let uploads = fx
        .rest
        .send(
            Method::GET,
            &format!("/{}?uploads", fx.bucket),
            &[],
            Vec::new(),
        )
        .await?
        .ensure_success("ListMultipartUploads")?;
    ensure!(
        uploads.xml_texts("UploadId").is_empty(),
        "uploads left open: {:?}",
        uploads.xml_texts("UploadId")
    );

    let object = fx.store.open(&key).await?;
    ensure!(
        std::fs::read(object.path())? == bytes,
        "open returned other bytes"
    );
    ensure!(fx.store.meta(&key).await? == meta);
    Ok(())
}

#[tokio::test]
async fn a_second_put_of_the_same_bytes_uploads_nothing() -> Result<()> {
    let server = S3Server::start()?;
    let fx = Fixture::new(&server, false, |_| {}).await?;
    // With versioning on, every upload would be a version of its own.
    fx.rest
        .send(
            Method::PUT,
            &format!("/{}?versioning", fx.bucket),
            &[("content-type", "application/xml")],
            b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>".to_vec(),
        )
        .await?
        .ensure_success("PutBucketVersioning")?;
    let bytes = b"the same bytes, twice".to_vec();
    let (sha, staged) = fx.stage("first.csv", &bytes)?;
    let first = object_meta("acme/first.csv", bytes.len());
    let key = fx.store.put(&sha, &staged, &first).await?;
    let before = fx.head(&key).await?;

    // The second put names a file that does not exist: it must not even be read.
    let again = fx
        .store
        .put(
            &sha,
            &fx.dir.path().join("gone.csv"),
            &object_meta("acme/again.csv", bytes.len()),
        )
        .await?;
    ensure!(again == key);

    let versions = fx
        .rest
        .send(
            Method::GET,
            &format!("/{}?versions", fx.bucket),
            &[],
            Vec::new(),
        )
        .await?
        .ensure_success("ListObjectVersions")?;
    ensure!(
        versions.xml_texts("VersionId").len() == 1,
        "versions: {}",
        String::from_utf8_lossy(&versions.body)
    );
    let after = fx.head(&key).await?;
    for header in ["etag", "last-modified", "x-amz-version-id"] {
        ensure!(
            before.header(header) == after.header(header),
            "{header} changed: {:?} → {:?}",
            before.header(header),
            after.header(header)
        );
    }
    ensure!(
        fx.store.meta(&key).await? == first,
        "the first put's metadata was replaced"
    );
    Ok(())
}

#[tokio::test]
async fn objects_carry_the_configured_server_side_encryption() -> Result<()> {
    let server = S3Server::start()?;
    let bytes = b"encrypted at rest".to_vec();

    let aes = Fixture::new(&server, false, |c| c.sse = Some("AES256".into())).await?;
    let (sha, staged) = aes.stage("a.csv", &bytes)?;
    let key = aes
        .store
        .put(&sha, &staged, &object_meta("acme/a.csv", bytes.len()))
        .await?;
    let head = aes.head(&key).await?;
    ensure!(
        head.header("x-amz-server-side-encryption") == Some("AES256"),
        "headers: {:?}",
        head.headers
    );

    let key_id = "arn:aws:kms:eu-west-2:123456789012:key/credstream-test";
    let kms = Fixture::new(&server, false, |c| {
        c.sse = Some("aws:kms".into());
        c.kms_key_id = Some(key_id.into());
        c.part_size_mib = 5;
    })
    .await?;
    let key = kms
        .store
        .put(&sha, &staged, &object_meta("acme/a.csv", bytes.len()))
        .await?;
    let head = kms.head(&key).await?;
    ensure!(head.header("x-amz-server-side-encryption") == Some("aws:kms"));
    ensure!(
        head.header("x-amz-server-side-encryption-aws-kms-key-id") == Some(key_id),
        "headers: {:?}",
        head.headers
    );

    // A multipart upload asks for encryption when it is created.
    let big = varied_bytes(5 * MIB + 1, 2);
    let (big_sha, big_staged) = kms.stage("big.dat", &big)?;
    let big_key = kms
        .store
        .put(
            &big_sha,
            &big_staged,
            &object_meta("acme/big.dat", big.len()),
        )
        .await?;
    let head = kms.head(&big_key).await?;
    ensure!(
        head.header("etag").unwrap_or_default().ends_with("-2\""),
        "not a multipart upload: {:?}",
        head.header("etag")
    );
    ensure!(
        head.header("x-amz-server-side-encryption") == Some("aws:kms")
            && head.header("x-amz-server-side-encryption-aws-kms-key-id") == Some(key_id),
        "headers of the multipart object: {:?}",
        head.headers
    );
    Ok(())
}

#[tokio::test]
async fn objects_are_retained_under_the_configured_object_lock() -> Result<()> {
    let server = S3Server::start()?;
    let fx = Fixture::new(&server, true, |c| {
        c.object_lock_mode = Some("GOVERNANCE".into());
        c.object_lock_days = Some(1);
    })
    .await?;
    let bytes = b"kept for a day".to_vec();
    let (sha, staged) = fx.stage("locked.csv", &bytes)?;
    let put_at = SystemTime::now();
    let key = fx
        .store
        .put(&sha, &staged, &object_meta("acme/locked.csv", bytes.len()))
        .await?;

    // moto does not implement GetObjectRetention (`?retention` answers 500); HEAD returns
    // the retention given on upload.
    let head = fx.head(&key).await?;
    ensure!(
        head.header("x-amz-object-lock-mode") == Some("GOVERNANCE"),
        "headers: {:?}",
        head.headers
    );
    let until = head
        .header("x-amz-object-lock-retain-until-date")
        .context("no retain-until date")?;
    let until: SystemTime = chrono::DateTime::parse_from_rfc3339(until)
        .with_context(|| format!("retain-until {until:?}"))?
        .with_timezone(&chrono::Utc)
        .into();
    let day = Duration::from_secs(86_400);
    // A day after the put, to the second the store rounded to (the bound is loose: it is
    // about the date, not about how long the put took).
    let earliest = put_at + day - Duration::from_secs(60);
    let latest = SystemTime::now() + day + Duration::from_secs(60);
    ensure!(
        earliest <= until && until <= latest,
        "retained until {until:?}, not about a day after {put_at:?}"
    );

    // The lock is real: the version cannot be deleted.
    let version = head.header("x-amz-version-id").context("no version id")?;
    let delete = fx
        .rest
        .send(
            Method::DELETE,
            &format!(
                "{}?versionId={version}",
                object_path(&fx.bucket, &format!("{PREFIX}{key}"))
            ),
            &[],
            Vec::new(),
        )
        .await?;
    ensure!(
        delete.status == 403,
        "deleting a retained version: {delete:?}"
    );
    ensure!(fx.store.get(&key).await? == bytes);
    Ok(())
}

#[tokio::test]
async fn damaged_bytes_are_refused_and_leave_nothing_in_the_cache() -> Result<()> {
    let server = S3Server::start()?;
    let fx = Fixture::new(&server, false, |_| {}).await?;
    let bytes = b"account,balance\n4111,100.00\n".to_vec();
    let (sha, staged) = fx.stage("a.csv", &bytes)?;
    let key = fx
        .store
        .put(&sha, &staged, &object_meta("acme/a.csv", bytes.len()))
        .await?;

    // Someone (or something) replaces the object's bytes behind the store's back.
    let damaged = b"account,balance\n4111,999.00\n".to_vec();
    fx.rest
        .put_object(&fx.bucket, &format!("{PREFIX}{key}"), damaged.clone(), &[])
        .await?;
    match fx.store.open(&key).await {
        Err(RawStoreError::Corrupt { key: k, actual }) => {
            ensure!(k == key && actual == sha256_hex(&damaged), "{k} {actual}");
        }
        other => anyhow::bail!("expected Corrupt, got {other:?}"),
    }
    ensure!(
        files_in(&fx.cache_dir())?.is_empty(),
        "left behind: {:?}",
        files_in(&fx.cache_dir())?
    );

    let absent = key_for(&sha256_hex(b"never stored"))?;
    ensure!(
        matches!(
            fx.store.open(&absent).await,
            Err(RawStoreError::Missing { .. })
        ),
        "open of an absent key"
    );
    ensure!(
        matches!(
            fx.store.meta(&absent).await,
            Err(RawStoreError::Missing { .. })
        ),
        "meta of an absent key"
    );
    ensure!(matches!(
        fx.store.open("sha256/../../etc/passwd").await,
        Err(RawStoreError::BadDigest(_))
    ));
    ensure!(matches!(
        fx.store
            .put("../../etc/passwd", &staged, &object_meta("x", 1))
            .await,
        Err(RawStoreError::BadDigest(_))
    ));
    Ok(())
}

#[tokio::test]
async fn an_outage_is_an_external_error_and_the_put_succeeds_once_s3_is_back() -> Result<()> {
    let mut server = S3Server::start()?;
    let fx = Fixture::new(&server, false, |_| {}).await?;
    let bytes = b"arrived during an outage".to_vec();
    let (sha, staged) = fx.stage("outage.csv", &bytes)?;
    let meta = object_meta("acme/outage.csv", bytes.len());

    server.stop()?;
    let error = tokio::time::timeout(HANG_GUARD, fx.store.put(&sha, &staged, &meta))
        .await
        .context("put hung while S3 was down")?
        .err()
        .context("put succeeded while S3 was down")?;
    ensure!(error.kind() == ErrorKind::External, "{error:?}");
    let message = error.to_string();
    ensure!(
        matches!(error, RawStoreError::Remote { .. })
            && message.contains(&format!("no answer from {}", server.endpoint())),
        "{message}"
    );
    let error = tokio::time::timeout(HANG_GUARD, fx.store.open(&key_for(&sha)?))
        .await
        .context("open hung while S3 was down")?
        .err()
        .context("open succeeded while S3 was down")?;
    ensure!(error.kind() == ErrorKind::External, "{error:?}");

    server.restart()?;
    let key = fx.store.put(&sha, &staged, &meta).await?;
    ensure!(fx.store.get(&key).await? == bytes);
    ensure!(fx.store.meta(&key).await? == meta);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_a_configuration_error_and_a_present_one_checks_out() -> Result<()> {
    let server = S3Server::start()?;
    let fx = Fixture::new(&server, false, |_| {}).await?;
    fx.store.check().await?;

    let mut wrong = config(&server, &fx.bucket, |_| {})?;
    wrong.bucket = Some(unique("no-such-"));
    let store = S3RawStore::connect(&wrong, fx.dir.path().join("cache-2")).await?;
    let err = store
        .check()
        .await
        .err()
        .context("a missing bucket checked out")?;
    ensure!(err.kind() == ErrorKind::Config, "{err}");
    ensure!(err.to_string().contains("does not exist"), "{err}");
    Ok(())
}
