//! The SFTP test server itself: OpenSSH's sshd started by `support::sftp`, checked with
//! OpenSSH's own clients before the SFTP source's tests rely on it.

mod support;

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use support::sftp::{Sftpd, fingerprint_of, fingerprint_of_keys};

/// `ssh-keyscan` for the server's ed25519 host key, as an independent view of what it
/// presents. `-T` bounds the wait.
fn keyscan(sftpd: &Sftpd) -> Result<String> {
    let output = Command::new("ssh-keyscan")
        .args(["-T", "5", "-t", "ed25519", "-p"])
        .arg(sftpd.port().to_string())
        .arg(sftpd.host())
        .output()
        .context("running ssh-keyscan (Debian's openssh-client)")?;
    let keys = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success() && !keys.trim().is_empty(),
        "ssh-keyscan found no key ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(keys)
}

#[test]
fn uploads_arrive_in_the_drop_dir_and_the_host_key_is_pinned() -> Result<()> {
    let sftpd = Sftpd::start()?;
    let content: Vec<u8> = (0..100_000).map(|_| fastrand::u8(..)).collect();
    fs::write(sftpd.client_dir().join("local.bin"), &content)?;

    let listing = sftpd.sftp_batch("put local.bin arrived.bin\nls -l\npwd\n")?;

    assert_eq!(fs::read(sftpd.drop_dir().join("arrived.bin"))?, content);
    assert!(
        listing.contains("arrived.bin") && listing.contains("100000"),
        "ls -l does not show the upload:\n{listing}"
    );
    assert!(
        listing.contains(&format!("Remote working directory: {}", sftpd.remote_dir())),
        "the session did not start in the drop directory:\n{listing}"
    );

    let scanned = keyscan(&sftpd)?;
    assert!(
        scanned.contains(&format!("[127.0.0.1]:{} ssh-ed25519 ", sftpd.port())),
        "unexpected ssh-keyscan output: {scanned}"
    );
    assert!(sftpd.host_key_fingerprint().starts_with("SHA256:"));
    assert_eq!(fingerprint_of_keys(&scanned)?, sftpd.host_key_fingerprint());
    assert_eq!(
        fingerprint_of(&sftpd.known_hosts_path())?,
        sftpd.host_key_fingerprint()
    );
    assert_eq!(
        fs::read_to_string(sftpd.known_hosts_path())?.trim(),
        sftpd.known_hosts_line()
    );
    Ok(())
}

#[test]
fn a_slow_upload_leaves_a_growing_partial_file() -> Result<()> {
    let sftpd = Sftpd::start()?;
    let chunk = 10_000;
    let content: Vec<u8> = (0..4 * chunk).map(|_| fastrand::u8(..)).collect();
    let arrived = sftpd.drop_dir().join("slow.csv");

    // Watch the file from the server's side while the client uploads, as the SFTP
    // source's poller will.
    let (upload, sizes) = thread::scope(|scope| {
        let uploader = scope
            .spawn(|| sftpd.upload_slowly(&content, "slow.csv", chunk, Duration::from_secs(1)));
        let mut sizes: Vec<u64> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !uploader.is_finished() && Instant::now() < deadline {
            if let Ok(metadata) = fs::metadata(&arrived)
                && sizes.last() != Some(&metadata.len())
            {
                sizes.push(metadata.len());
            }
            thread::sleep(Duration::from_millis(20));
        }
        let upload = uploader
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the upload thread panicked")));
        (upload, sizes)
    });
    upload?;

    assert!(
        sizes.windows(2).all(|pair| pair[0] < pair[1]),
        "the file shrank during the upload: {sizes:?}"
    );
    assert!(
        sizes.len() >= 3,
        "the file was not seen growing at least twice: {sizes:?}"
    );
    // Between chunks the server holds exactly the chunks sent so far.
    for partial in [chunk, 2 * chunk, 3 * chunk] {
        assert!(
            sizes.contains(&(partial as u64)),
            "no pause at {partial} bytes was seen: {sizes:?}"
        );
    }
    assert_eq!(fs::read(&arrived)?, content);
    Ok(())
}

#[test]
fn a_swapped_host_key_is_refused() -> Result<()> {
    let mut sftpd = Sftpd::start()?;
    sftpd.sftp_batch("ls\n")?;
    let port = sftpd.port();
    let old_fingerprint = sftpd.host_key_fingerprint().to_owned();

    sftpd.swap_host_key()?;

    assert_eq!(sftpd.port(), port, "the server moved to another port");
    assert_ne!(sftpd.host_key_fingerprint(), old_fingerprint);
    assert_eq!(
        fingerprint_of_keys(&keyscan(&sftpd)?)?,
        sftpd.host_key_fingerprint(),
        "the server does not present the new key"
    );
    assert_eq!(fingerprint_of(&sftpd.known_hosts_path())?, old_fingerprint);

    let refused = sftpd
        .sftp_batch("ls\n")
        .expect_err("the client accepted a host key that known_hosts does not pin");
    let message = format!("{refused:#}");
    assert!(
        message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            && message.contains("Host key verification failed"),
        "the refusal does not name the changed host key:\n{message}"
    );

    let trusting_new = sftpd.client_dir().join("known_hosts_new");
    fs::write(&trusting_new, format!("{}\n", sftpd.known_hosts_line()))?;
    let listing = sftpd.sftp_batch_with_known_hosts(&trusting_new, "pwd\n")?;
    assert!(
        listing.contains(&sftpd.remote_dir()),
        "unexpected output after trusting the new key:\n{listing}"
    );
    Ok(())
}

#[test]
fn sshd_listens_on_loopback_only() -> Result<()> {
    let sftpd = Sftpd::start()?;
    let port = sftpd.port();

    let config = fs::read_to_string(sftpd.config_path())?;
    let listen: Vec<&str> = config
        .lines()
        .filter(|line| {
            line.trim_start()
                .to_ascii_lowercase()
                .starts_with("listenaddress")
        })
        .collect();
    assert_eq!(listen, ["ListenAddress 127.0.0.1"]);

    // sshd's own reading of the configuration (`-T` prints the effective settings).
    let output = Command::new("/usr/sbin/sshd")
        .arg("-T")
        .arg("-f")
        .arg(sftpd.config_path())
        .output()
        .context("running sshd -T")?;
    ensure!(
        output.status.success(),
        "sshd -T failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let effective = String::from_utf8_lossy(&output.stdout);
    let effective: Vec<&str> = effective
        .lines()
        .filter(|line| line.starts_with("listenaddress "))
        .collect();
    assert_eq!(effective, [format!("listenaddress 127.0.0.1:{port}")]);

    // What the kernel says is listening on the port.
    let listeners = tcp_listeners(port)?;
    assert_eq!(listeners, ["127.0.0.1"], "sockets listening on port {port}");
    Ok(())
}

/// The local addresses of the TCP sockets listening on `port`, from /proc/net/tcp and
/// /proc/net/tcp6 (the tables `ss -ltn` reads).
fn tcp_listeners(port: u16) -> Result<Vec<String>> {
    const LISTEN: &str = "0A";
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(Path::new(table)) else {
            continue; // no IPv6 on this machine
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let (address, local_port) = local
                .split_once(':')
                .with_context(|| format!("unexpected line in {table}: {line}"))?;
            if *state != LISTEN || u16::from_str_radix(local_port, 16)? != port {
                continue;
            }
            found.push(decode_proc_address(address)?);
        }
    }
    Ok(found)
}

/// /proc/net prints an address as 32-bit words in host byte order, in hex.
fn decode_proc_address(hex: &str) -> Result<String> {
    let words = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16))
        .collect::<Result<Vec<u32>, _>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    Ok(match bytes.len() {
        4 => Ipv4Addr::from([bytes[0], bytes[1], bytes[2], bytes[3]]).to_string(),
        16 => {
            let bytes: [u8; 16] = bytes.try_into().expect("16 bytes");
            Ipv6Addr::from(bytes).to_string()
        }
        _ => bail!("unexpected address {hex}"),
    })
}
