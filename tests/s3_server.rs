//! The S3 test server (`support::s3`, moto as a separate process) does what the S3 raw
//! store's tests will rely on: loopback only, objects with metadata and SSE, multipart
//! uploads, Object Lock, and outages that keep the data.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use reqwest::Method;
use sha2::{Digest, Sha256};
use support::s3::{S3Rest, S3Server, base64, object_path};
use support::unique;

const MIB: usize = 1 << 20;

#[tokio::test]
async fn starts_on_loopback_and_round_trips_an_object_with_metadata_and_sse() -> Result<()> {
    let server = S3Server::start()?;
    ensure!(server.endpoint() == format!("http://127.0.0.1:{}", server.port()));
    let s3 = server.rest();
    let bucket = unique("raw-");
    s3.create_bucket(&bucket).await?;

    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let put = s3
        .put_object(
            &bucket,
            "2026/11/accounts.csv",
            body.clone(),
            &[
                ("x-amz-meta-sha256", "abc123"),
                ("x-amz-meta-source", "sftp://partner/accounts.csv"),
                ("x-amz-server-side-encryption", "AES256"),
            ],
        )
        .await?;
    ensure!(put.header("x-amz-server-side-encryption") == Some("AES256"));

    let got = s3
        .get_object(&bucket, "2026/11/accounts.csv")
        .await?
        .context("the object is missing")?;
    ensure!(got.body == body, "GET returned other bytes");
    ensure!(got.header("x-amz-server-side-encryption") == Some("AES256"));
    let metadata = got.metadata();
    ensure!(
        metadata.get("sha256").map(String::as_str) == Some("abc123")
            && metadata.get("source").map(String::as_str) == Some("sftp://partner/accounts.csv"),
        "metadata: {metadata:?}"
    );
    ensure!(s3.list_keys(&bucket, "2026/").await? == ["2026/11/accounts.csv"]);
    ensure!(s3.get_object(&bucket, "absent").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn multipart_upload_of_three_parts_is_their_concatenation() -> Result<()> {
    let server = S3Server::start()?;
    let s3 = server.rest();
    let bucket = unique("raw-");
    s3.create_bucket(&bucket).await?;
    let parts = [
        vec![b'a'; 5 * MIB],
        (0..5 * MIB).map(|i| (i % 251) as u8).collect(),
        b"the short last part".to_vec(),
    ];

    let completed = multipart_upload(&s3, &bucket, "big.dat", &parts).await?;
    ensure!(completed.status == 200, "complete: {completed:?}");
    ensure!(
        completed.xml_text("Error").is_none(),
        "CompleteMultipartUpload failed inside a 200: {}",
        String::from_utf8_lossy(&completed.body)
    );

    let got = s3
        .get_object(&bucket, "big.dat")
        .await?
        .context("the object is missing")?;
    ensure!(
        got.body == parts.concat(),
        "the object is not the parts in order"
    );
    // A multipart ETag is "<md5 of the part md5s>-<part count>".
    let etag = got.header("etag").unwrap_or_default();
    ensure!(etag.ends_with("-3\""), "ETag {etag}");

    // The minimum part size is enforced, as on AWS: a short first part fails completion.
    let small = multipart_upload(&s3, &bucket, "small.dat", &[vec![1; 10], vec![2; 10]]).await?;
    ensure!(
        small.status == 400 && small.xml_text("Code").as_deref() == Some("EntityTooSmall"),
        "a 10-byte first part was accepted: {small:?}"
    );
    Ok(())
}

#[tokio::test]
async fn pause_makes_requests_time_out_and_resume_keeps_the_data() -> Result<()> {
    let mut server = S3Server::start()?;
    let s3 = server.rest();
    let bucket = unique("raw-");
    s3.create_bucket(&bucket).await?;
    s3.put_object(&bucket, "kept", b"still here".to_vec(), &[])
        .await?;

    server.pause()?;
    let paused_at = Instant::now();
    let impatient = s3.with_timeout(Duration::from_millis(500));
    let error = impatient
        .send(Method::GET, &object_path(&bucket, "kept"), &[], Vec::new())
        .await
        .err()
        .context("a paused server answered")?;
    // The kernel accepts the connection for the frozen process, so this is a timeout,
    // not a refusal: what a hung S3 looks like.
    ensure!(error.is_timeout(), "expected a timeout, got {error:?}");
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(paused_at.elapsed())).await;

    server.resume()?;
    let got = s3.get_object(&bucket, "kept").await?.context("lost")?;
    ensure!(got.body == b"still here");
    Ok(())
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_keeps_the_data() -> Result<()> {
    let mut server = S3Server::start()?;
    let s3 = server.rest();
    let bucket = unique("raw-");
    s3.create_bucket(&bucket).await?;
    s3.put_object(&bucket, "kept", b"still here".to_vec(), &[])
        .await?;
    let port = server.port();

    server.stop()?;
    // A new client: `s3`'s pooled keep-alive connection was reset by the stop, which is
    // not what this checks — that a new connection is refused.
    let error = server
        .rest()
        .send(Method::GET, &object_path(&bucket, "kept"), &[], Vec::new())
        .await
        .err()
        .context("a stopped server answered")?;
    ensure!(
        error.is_connect(),
        "expected a refused connection, got {error:?}"
    );

    server.restart()?;
    ensure!(server.port() == port);
    let got = s3.get_object(&bucket, "kept").await?.context("lost")?;
    ensure!(got.body == b"still here");
    s3.put_object(&bucket, "after", b"new".to_vec(), &[])
        .await?;
    ensure!(s3.list_keys(&bucket, "").await? == ["after", "kept"]);
    Ok(())
}

#[tokio::test]
async fn listens_on_127_0_0_1_only() -> Result<()> {
    let mut server = S3Server::start()?;
    let listeners = listening_addresses(server.port())?;
    ensure!(
        listeners == ["127.0.0.1"],
        "port {} is listened on at {listeners:?}",
        server.port()
    );
    // And again after a restart, which binds anew. (Whether the port is free while the
    // server is stopped is not asserted here: a server of a test running alongside may
    // take the freed port, and `stop_refuses_connections…` covers the stop.)
    server.stop()?;
    server.restart()?;
    let listeners = listening_addresses(server.port())?;
    ensure!(listeners == ["127.0.0.1"], "after a restart: {listeners:?}");
    Ok(())
}

/// The behaviour of moto 5.2.5 that the S3 raw store's tests depend on, or must know is
/// missing (see `support::s3`'s module comment).
#[tokio::test]
async fn moto_behaviour_the_s3_store_tests_rely_on() -> Result<()> {
    let server = S3Server::start()?;
    let s3 = server.rest();

    // SSE-KMS with a key id: stored and echoed (nothing is encrypted).
    let bucket = unique("raw-");
    s3.create_bucket(&bucket).await?;
    let key_id = "arn:aws:kms:eu-west-2:123456789012:key/credstream-test";
    let kms = [
        ("x-amz-server-side-encryption", "aws:kms"),
        ("x-amz-server-side-encryption-aws-kms-key-id", key_id),
    ];
    let put = s3.put_object(&bucket, "kms", b"x".to_vec(), &kms).await?;
    let got = s3.get_object(&bucket, "kms").await?.context("missing")?;
    for response in [&put, &got] {
        ensure!(response.header("x-amz-server-side-encryption") == Some("aws:kms"));
        ensure!(response.header("x-amz-server-side-encryption-aws-kms-key-id") == Some(key_id));
    }

    // A SHA-256 checksum is stored and returned, but never verified: a wrong one is
    // accepted. If this starts failing, moto verifies checksums now; update support::s3.
    let body = b"file contents".to_vec();
    let right = base64(&Sha256::digest(&body));
    let wrong = base64(&Sha256::digest(b"other contents"));
    for (key, checksum) in [("right", &right), ("wrong", &wrong)] {
        let put = s3
            .put_object(
                &bucket,
                key,
                body.clone(),
                &[
                    ("x-amz-sdk-checksum-algorithm", "SHA256"),
                    ("x-amz-checksum-sha256", checksum),
                ],
            )
            .await?;
        ensure!(put.header("x-amz-checksum-sha256") == Some(checksum.as_str()));
        let got = s3.get_object(&bucket, key).await?.context("missing")?;
        ensure!(got.header("x-amz-checksum-sha256") == Some(checksum.as_str()));
    }
    // Nor is Content-MD5: sixteen zero bytes are not the MD5 of this body.
    s3.put_object(
        &bucket,
        "wrong-md5",
        body.clone(),
        &[("content-md5", &base64(&[0; 16]))],
    )
    .await?;

    // Object Lock: retention given on PUT is kept, and a retained version cannot be
    // deleted.
    let locked = unique("locked-");
    s3.create_bucket_with_object_lock(&locked).await?;
    let put = s3
        .put_object(
            &locked,
            "retained",
            body.clone(),
            &[
                ("x-amz-sdk-checksum-algorithm", "SHA256"),
                ("x-amz-checksum-sha256", &right),
                ("x-amz-object-lock-mode", "COMPLIANCE"),
                (
                    "x-amz-object-lock-retain-until-date",
                    "2099-01-01T00:00:00Z",
                ),
            ],
        )
        .await?;
    let version = put.header("x-amz-version-id").context("no version id")?;
    let head = s3
        .send(
            Method::HEAD,
            &object_path(&locked, "retained"),
            &[],
            Vec::new(),
        )
        .await?
        .ensure_success("HEAD")?;
    let got = s3
        .get_object(&locked, "retained")
        .await?
        .context("missing")?;
    for response in [&put, &head, &got] {
        ensure!(response.header("x-amz-object-lock-mode") == Some("COMPLIANCE"));
        ensure!(
            response.header("x-amz-object-lock-retain-until-date") == Some("2099-01-01T00:00:00Z")
        );
    }
    let delete = s3
        .send(
            Method::DELETE,
            &format!("{}?versionId={version}", object_path(&locked, "retained")),
            &[],
            Vec::new(),
        )
        .await?;
    ensure!(
        delete.status == 403 && delete.xml_text("Code").as_deref() == Some("AccessDenied"),
        "deleting a retained version: {delete:?}"
    );
    // Without a checksum algorithm or Content-MD5, a PUT with retention is refused, as on
    // AWS.
    let bare = s3
        .send(
            Method::PUT,
            &object_path(&locked, "bare"),
            &[
                ("content-type", "application/octet-stream"),
                ("x-amz-object-lock-mode", "COMPLIANCE"),
                (
                    "x-amz-object-lock-retain-until-date",
                    "2099-01-01T00:00:00Z",
                ),
            ],
            body,
        )
        .await?;
    ensure!(
        bare.xml_text("Code").as_deref() == Some("MissingUploadObjectWithObjectLockHeaders"),
        "{bare:?}"
    );
    Ok(())
}

/// CreateMultipartUpload, UploadPart for each of `parts`, CompleteMultipartUpload; the
/// completion's response, whatever its status.
async fn multipart_upload(
    s3: &S3Rest,
    bucket: &str,
    key: &str,
    parts: &[Vec<u8>],
) -> Result<support::s3::S3Response> {
    let path = object_path(bucket, key);
    let upload_id = s3
        .send(Method::POST, &format!("{path}?uploads"), &[], Vec::new())
        .await?
        .ensure_success("CreateMultipartUpload")?
        .xml_text("UploadId")
        .context("no UploadId")?;
    let mut complete = String::from("<CompleteMultipartUpload>");
    for (i, part) in parts.iter().enumerate() {
        let number = i + 1;
        let uploaded = s3
            .send(
                Method::PUT,
                &format!("{path}?partNumber={number}&uploadId={upload_id}"),
                &[("content-type", "application/octet-stream")],
                part.clone(),
            )
            .await?
            .ensure_success("UploadPart")?;
        let etag = uploaded.header("etag").context("a part without ETag")?;
        complete.push_str(&format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"
        ));
    }
    complete.push_str("</CompleteMultipartUpload>");
    Ok(s3
        .send(
            Method::POST,
            &format!("{path}?uploadId={upload_id}"),
            &[("content-type", "application/xml")],
            complete.into_bytes(),
        )
        .await?)
}

/// The local addresses listening on TCP `port`, from the kernel's socket tables (what
/// `ss -ltn` reads): IPv4 as dotted quads, IPv6 as hex.
fn listening_addresses(port: u16) -> Result<Vec<String>> {
    const LISTEN: &str = "0A";
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).with_context(|| format!("reading {table}"))?;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((address, hex_port)) = local.split_once(':') else {
                continue;
            };
            if *state != LISTEN || u16::from_str_radix(hex_port, 16)? != port {
                continue;
            }
            out.push(if address.len() == 8 {
                // IPv4, little-endian hex.
                let n = u32::from_str_radix(address, 16)?;
                std::net::Ipv4Addr::from(n.swap_bytes()).to_string()
            } else {
                address.to_owned()
            });
        }
    }
    Ok(out)
}
