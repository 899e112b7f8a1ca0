//! OpenSSH's sshd serving SFTP on a free loopback port, for the SFTP source's tests.
//!
//! Each [`Sftpd`] is Debian's `/usr/sbin/sshd` (package openssh-server) running as its
//! own process with a configuration, host key, client key and `known_hosts` generated
//! in a fresh temporary directory. The one login user lands in [`Sftpd::drop_dir`] and
//! can do nothing but SFTP. The clients here are OpenSSH's own `sftp`, `ssh-keygen` and
//! `ssh-keyscan` (package openssh-client), so the server is checked by tools this
//! project did not write.
//!
//! Facts about OpenSSH 9.2 (Debian 12) this module relies on (verified against it):
//! - As root, sshd (and `sshd -t`) refuses to start without its privilege-separation
//!   directory: "Missing privilege separation directory: /run/sshd". Debian's packaging
//!   creates it at boot (tmpfiles.d, mode 0755, owned by root); containers and CI images
//!   often lack it, so [`Sftpd::start`] creates it the same way.
//! - As any other user, sshd runs without privilege separation and can only log in the
//!   user it runs as, so the login user is always the current user. With `UsePAM no`
//!   it refuses an account whose shadow password starts with `!` ("account is
//!   locked"); root's `*` in Debian images is fine. PAM stays off because key
//!   authentication needs nothing from it and a non-root sshd cannot use it.
//! - `ForceCommand internal-sftp -d DIR` splits its arguments on spaces with no
//!   quoting (quotes become part of the path, and the session silently starts in the
//!   user's home instead), and `-d` expands `%`. So the temporary directory's path must
//!   contain neither; [`Sftpd::start`] checks.
//! - `ChrootDirectory` is not used: sshd requires every component of the chroot path
//!   to be owned by root and not group- or world-writable, which `/tmp` is not, and a
//!   non-root sshd cannot chroot at all. The SFTP user therefore sees the drop
//!   directory under its real, absolute path ([`Sftpd::remote_dir`]).
//! - `StrictModes no`: with it on, sshd ignores an `authorized_keys` file below a
//!   group- or world-writable directory, which `/tmp` is.
//! - Password authentication is off and cannot be offered: sshd checks passwords
//!   against the system's account database, so it would need a system account with a
//!   known password (root's is `*`, and a non-root sshd cannot read `/etc/shadow`).
//!   Creating or changing accounts would outlive the test, so only keys are used.
//! - A port clash is an exit with status 255 after "Bind to port N on 127.0.0.1 failed:
//!   Address already in use."; a successful bind logs "Server listening on 127.0.0.1
//!   port N." to stderr (with `-e`) as soon as it listens: well under a second.
//! - Killing the listener does not end established sessions: each runs in its own
//!   session (`setsid`) and lives until its client disconnects. The clients here are
//!   short-lived commands, so no session outlives a test.

// Every integration-test crate compiles its own copy of `support` and uses a different
// subset of it.
#![allow(dead_code)]

use std::{
    env,
    fs::{self, File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::log_file_tail as log_tail;
use super::{StartFailure as Failure, start_with_retries};
use anyhow::{Context as _, Result, anyhow, bail, ensure};
use tempfile::TempDir;

/// How long one start attempt may take. sshd is listening within milliseconds; the
/// margin covers a machine busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Bound on every helper command (`ssh-keygen`, `sftp`, `sshd -t`).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

const LOG_FILE: &str = "sshd.log";
const CONFIG_FILE: &str = "sshd_config";
const KNOWN_HOSTS_FILE: &str = "known_hosts";
const CLIENT_KEY_FILE: &str = "client_key";
const AUTHORIZED_KEYS_FILE: &str = "authorized_keys";
const DROP_DIR: &str = "drop";
const CLIENT_DIR: &str = "client";

/// The only address sshd listens on.
const HOST: &str = "127.0.0.1";

/// Debian puts sshd here; it must be started by an absolute path because it re-executes
/// itself for every connection.
const SSHD_PATH: &str = "/usr/sbin/sshd";

/// Where a root sshd chroots its unprivileged pre-authentication child.
const PRIVSEP_DIR: &str = "/run/sshd";

/// A running sshd serving SFTP on 127.0.0.1, killed when dropped.
pub struct Sftpd {
    child: Child,
    port: u16,
    user: String,
    host_key: HostKey,
    /// Host keys generated so far; names each new key file.
    host_keys_made: u32,
    /// Configuration, keys, log, the drop directory and the client's working directory.
    /// Deleted on drop unless the test is panicking, in which case it is kept.
    dir: TempDir,
}

/// One generated ed25519 host key.
struct HostKey {
    /// The private key file sshd reads.
    path: PathBuf,
    /// `ssh-ed25519 AAAA…`: the public key as `known_hosts` pins it.
    public: String,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    fingerprint: String,
}

impl Sftpd {
    /// Starts sshd on a free 127.0.0.1 port with freshly generated keys; fails (never
    /// skips) if OpenSSH is missing or sshd does not start within a bound.
    pub fn start() -> Result<Sftpd> {
        let sshd = sshd_binary()?;
        for tool in ["ssh-keygen", "sftp"] {
            find_on_path(tool).ok_or_else(|| {
                anyhow!("`{tool}` was not found on PATH; install Debian's openssh-client")
            })?;
        }
        let (uid, user) = current_user()?;
        if uid == 0 {
            ensure_privsep_dir()?;
        }

        let dir = tempfile::Builder::new()
            .prefix("credstream-sftpd-")
            .tempdir()
            .context("creating a temporary directory for sshd")?;
        let root = dir.path();
        ensure!(
            !root
                .to_string_lossy()
                .contains(|c: char| c.is_whitespace() || c == '%'),
            "the temporary directory {} contains whitespace or '%', which sshd's \
             `ForceCommand internal-sftp -d` cannot take; point TMPDIR at a plain path",
            root.display()
        );
        for sub in [DROP_DIR, CLIENT_DIR] {
            fs::create_dir(root.join(sub))
                .with_context(|| format!("creating {}", root.join(sub).display()))?;
        }
        let client_key = root.join(CLIENT_KEY_FILE);
        generate_key(&client_key, "credstream-test-client")?;
        fs::copy(
            client_key.with_extension("pub"),
            root.join(AUTHORIZED_KEYS_FILE),
        )
        .context("writing authorized_keys")?;
        let host_key = generate_host_key(root, 1)?;

        let (child, port) = start_with_retries("sshd", |attempt| {
            let port = super::free_port();
            start_once(&sshd, root, port, &user, &host_key, attempt).map(|child| (child, port))
        })?;
        Ok(Sftpd {
            child,
            port,
            user,
            host_key,
            host_keys_made: 1,
            dir,
        })
    }

    /// The address sshd listens on: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The login user: the user the tests run as (sshd as non-root can log in no other).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The client's private key (ed25519, no passphrase), the only key sshd accepts.
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.path().join(CLIENT_KEY_FILE)
    }

    /// A `known_hosts` file pinning the host key sshd was started with, for
    /// `[127.0.0.1]:PORT`. [`Self::swap_host_key`] leaves it pinned to the old key.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.path().join(KNOWN_HOSTS_FILE)
    }

    /// The `known_hosts` line for the host key sshd serves now.
    pub fn known_hosts_line(&self) -> String {
        format!("[{HOST}]:{} {}", self.port, self.host_key.public)
    }

    /// The fingerprint of the host key sshd serves now, as `SHA256:…`.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.host_key.fingerprint
    }

    /// The directory the SFTP session starts in, on the local filesystem, so tests can
    /// put files there directly and check what arrived.
    pub fn drop_dir(&self) -> PathBuf {
        self.dir.path().join(DROP_DIR)
    }

    /// The drop directory as the SFTP client names it: the same absolute path, since
    /// there is no chroot. Relative remote names resolve against it too.
    pub fn remote_dir(&self) -> String {
        self.drop_dir().to_string_lossy().into_owned()
    }

    /// The working directory of [`Self::sftp_batch`]: relative local paths in batch
    /// commands (`put`, `get`) resolve here.
    pub fn client_dir(&self) -> PathBuf {
        self.dir.path().join(CLIENT_DIR)
    }

    /// The sshd configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join(CONFIG_FILE)
    }

    /// The file that receives sshd's log (stderr, `LogLevel VERBOSE`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// Generates a new host key and restarts sshd with it on the same port. The file at
    /// [`Self::known_hosts_path`] still pins the old key, so clients using it must now
    /// refuse the server. Sessions already established keep running.
    pub fn swap_host_key(&mut self) -> Result<()> {
        let sshd = sshd_binary()?;
        let next = self.host_keys_made + 1;
        let host_key = generate_host_key(self.dir.path(), next)?;
        self.host_keys_made = next;
        // The new configuration is checked before the old server goes away.
        write_config(self.dir.path(), self.port, &self.user, &host_key)?;
        check_config(&sshd, &self.config_path()).map_err(Failure::into_error)?;
        self.stop();

        // The port was ours a moment ago; only another process probing for a free port
        // can hold it now, and only briefly.
        let mut attempt = 0;
        let child = loop {
            attempt += 1;
            let label = format!("restart with host key {next}, attempt {attempt}");
            match spawn_and_wait(&sshd, self.dir.path(), self.port, &label) {
                Ok(child) => break child,
                Err(Failure::PortClash(_)) if attempt < 10 => {
                    thread::sleep(Duration::from_millis(200));
                }
                Err(failure) => {
                    return Err(failure
                        .into_error()
                        .context(format!("restarting sshd on port {}", self.port)));
                }
            }
        };
        self.child = child;
        self.host_key = host_key;
        Ok(())
    }

    /// Ends every established session (the listener's descendants, found through
    /// `/proc/<pid>/task/*/children`), as a dropped connection would: clients must connect
    /// again. The listener keeps running.
    pub fn drop_sessions(&self) -> Result<usize> {
        fn children(pid: u32) -> Vec<u32> {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                return Vec::new();
            };
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|text| {
                    text.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect()
        }
        let mut found = Vec::new();
        let mut queue = children(self.child.id());
        while let Some(pid) = queue.pop() {
            queue.extend(children(pid));
            found.push(pid);
        }
        for pid in &found {
            // SIGKILL through kill(1): no libc in the tests.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        Ok(found.len())
    }

    /// Runs OpenSSH's `sftp` client in batch mode with `commands` (one per line),
    /// trusting only the key in [`Self::known_hosts_path`]. Returns its stdout (each
    /// command echoed after `sftp> `, then its output); fails with its stderr and the
    /// server log's tail if any command fails.
    pub fn sftp_batch(&self, commands: &str) -> Result<String> {
        self.sftp_batch_with_known_hosts(&self.known_hosts_path(), commands)
    }

    /// [`Self::sftp_batch`] trusting the host keys in `known_hosts` instead.
    pub fn sftp_batch_with_known_hosts(
        &self,
        known_hosts: &Path,
        commands: &str,
    ) -> Result<String> {
        let mut command = Command::new("sftp");
        command
            // No user or system ssh_config: a developer's settings must not change
            // what the tests see.
            .args(["-F", "/dev/null"])
            .args(["-b", "-"])
            .arg("-i")
            .arg(self.client_key_path())
            .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no"])
            .args(["-o", "ConnectTimeout=10"])
            .args(["-P", &self.port.to_string()])
            .arg(format!("{}@{HOST}", self.user))
            .current_dir(self.client_dir());
        let output = run_bounded(&mut command, commands.as_bytes(), COMMAND_TIMEOUT)?;
        if !output.status.success() {
            let log = log_tail(&self.log_path());
            let hint = if log.contains("account is locked") {
                "\nhint: sshd runs with UsePAM no, which refuses an account whose shadow \
                 password starts with '!'"
            } else {
                ""
            };
            bail!(
                "sftp failed ({}) running:\n{commands}\nstdout:\n{}\nstderr:\n{}{hint}\n\
                 sshd log {}:\n{log}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.log_path().display(),
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Uploads `content` to `remote_name` (relative to the drop directory) over SFTP,
    /// `chunk_size` bytes at a time with `pause` between chunks, the way a slow sender
    /// leaves a growing, partial file on the server.
    ///
    /// Each chunk is appended to a local staging file and sent with a new `sftp`
    /// session: `put` for the first, then `reput`, which resumes the upload from the
    /// remote file's current size. Between chunks the remote file holds exactly the
    /// chunks sent so far.
    pub fn upload_slowly(
        &self,
        content: &[u8],
        remote_name: &str,
        chunk_size: usize,
        pause: Duration,
    ) -> Result<()> {
        ensure!(chunk_size > 0, "chunk_size must be positive");
        ensure!(!content.is_empty(), "nothing to upload");
        let staging = tempfile::Builder::new()
            .prefix("upload-")
            .tempdir_in(self.client_dir())
            .context("creating a staging directory for a slow upload")?;
        let local = staging.path().join("growing");
        let local_arg = quote_sftp_arg(&local.to_string_lossy())?;
        let remote_arg = quote_sftp_arg(remote_name)?;
        let mut file =
            File::create(&local).with_context(|| format!("creating {}", local.display()))?;
        for (index, chunk) in content.chunks(chunk_size).enumerate() {
            if index > 0 {
                thread::sleep(pause);
            }
            file.write_all(chunk)
                .and_then(|()| file.flush())
                .with_context(|| format!("appending to {}", local.display()))?;
            let verb = if index == 0 { "put" } else { "reput" };
            self.sftp_batch(&format!("{verb} {local_arg} {remote_arg}\n"))
                .with_context(|| format!("uploading chunk {} of {remote_name}", index + 1))?;
        }
        Ok(())
    }

    /// Kills the listener and reaps it.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sftpd {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            // The test failed: keep the directory and show the log's end next to the
            // panic message.
            self.dir.disable_cleanup(true);
            eprintln!(
                "sshd directory kept at {}; last lines of its log:\n{}",
                self.dir.path().display(),
                log_tail(&self.log_path())
            );
        }
    }
}

/// Writes the port-specific files, checks the configuration and starts sshd on `port`.
fn start_once(
    sshd: &Path,
    root: &Path,
    port: u16,
    user: &str,
    host_key: &HostKey,
    attempt: u32,
) -> Result<Child, Failure> {
    write_config(root, port, user, host_key).map_err(Failure::Fatal)?;
    fs::write(
        root.join(KNOWN_HOSTS_FILE),
        format!("[{HOST}]:{port} {}\n", host_key.public),
    )
    .context("writing known_hosts")
    .map_err(Failure::Fatal)?;
    check_config(sshd, &root.join(CONFIG_FILE))?;
    spawn_and_wait(sshd, root, port, &format!("start attempt {attempt}"))
}

/// The sshd configuration: one user, keys only, SFTP only, 127.0.0.1 only.
fn write_config(root: &Path, port: u16, user: &str, host_key: &HostKey) -> Result<()> {
    let config = format!(
        "# Generated by credstream's test support (tests/support/sftp.rs).\n\
         ListenAddress {HOST}\n\
         Port {port}\n\
         HostKey {host_key}\n\
         PidFile {pid}\n\
         LogLevel VERBOSE\n\
         AllowUsers {user}\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         AuthorizedKeysFile {authorized_keys}\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         # The temporary directory is below /tmp, which is world-writable.\n\
         StrictModes no\n\
         PrintMotd no\n\
         AllowTcpForwarding no\n\
         AllowAgentForwarding no\n\
         X11Forwarding no\n\
         PermitTTY no\n\
         Subsystem sftp internal-sftp\n\
         Match User {user}\n\
         \x20   ForceCommand internal-sftp -d {drop}\n",
        host_key = host_key.path.display(),
        pid = root.join("sshd.pid").display(),
        authorized_keys = root.join(AUTHORIZED_KEYS_FILE).display(),
        drop = root.join(DROP_DIR).display(),
    );
    let path = root.join(CONFIG_FILE);
    fs::write(&path, config).with_context(|| format!("writing {}", path.display()))
}

/// `sshd -t`: reports configuration and key errors before anything is started.
fn check_config(sshd: &Path, config: &Path) -> Result<(), Failure> {
    let output = run_bounded(
        Command::new(sshd).arg("-t").arg("-f").arg(config),
        b"",
        COMMAND_TIMEOUT,
    )
    .map_err(Failure::Fatal)?;
    if output.status.success() {
        return Ok(());
    }
    Err(Failure::Fatal(anyhow!(
        "`sshd -t -f {}` rejected the configuration ({}):\n{}",
        config.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    )))
}

/// Spawns sshd in the foreground (`-D`) logging to stderr (`-e`, into the log file) and
/// waits until it says it listens on `port`. The child is killed before any error is
/// returned.
fn spawn_and_wait(sshd: &Path, root: &Path, port: u16, label: &str) -> Result<Child, Failure> {
    let log_path = root.join(LOG_FILE);
    let config = root.join(CONFIG_FILE);
    let mut command = Command::new(sshd);
    command
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .current_dir(root)
        .stdin(Stdio::null());

    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))
        .map_err(Failure::Fatal)?;
    writeln!(log, "--- credstream test support, {label}: {command:?}")
        .context("writing the sshd log")
        .map_err(Failure::Fatal)?;
    // Readiness is judged only from what this process writes.
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let stdout = log
        .try_clone()
        .context("duplicating the sshd log file handle")
        .map_err(Failure::Fatal)?;
    // The child inherits our process group, so Ctrl-C on `cargo test` reaches it too.
    let mut child = command
        .stdout(stdout)
        .stderr(log)
        .spawn()
        .with_context(|| format!("spawning {}", sshd.display()))
        .map_err(Failure::Fatal)?;

    match wait_until_listening(&mut child, port, &log_path, log_start) {
        Ok(()) => Ok(child),
        Err(failure) => Err(failure.after_killing(
            &mut child,
            &format!("sshd ({label}, port {port})"),
            &log_path,
        )),
    }
}

/// Waits, within [`READY_TIMEOUT`], for sshd's own "Server listening" line, which it
/// logs after `listen()` succeeds. It proves that this child, not some other process,
/// holds the port.
fn wait_until_listening(
    child: &mut Child,
    port: u16,
    log_path: &Path,
    log_start: u64,
) -> Result<(), Failure> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let listening = format!("Server listening on {HOST} port {port}.");
    loop {
        let log = read_from(log_path, log_start);
        let status = child
            .try_wait()
            .context("polling the sshd process")
            .map_err(Failure::Fatal)?;
        if let Some(status) = status {
            let error = anyhow!("sshd exited early with {status}");
            return Err(if log.contains("Address already in use") {
                Failure::PortClash(error)
            } else {
                Failure::Fatal(error)
            });
        }
        if log.contains(&listening) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Failure::Fatal(anyhow!(
                "sshd did not log {listening:?} within {READY_TIMEOUT:?}"
            )));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Generates the host key numbered `number` (`host_key_N`) and reads back its public
/// line and fingerprint.
fn generate_host_key(root: &Path, number: u32) -> Result<HostKey> {
    let path = root.join(format!("host_key_{number}"));
    generate_key(&path, &format!("credstream-test-host-{number}"))?;
    let public_path = path.with_extension("pub");
    let public_line = fs::read_to_string(&public_path)
        .with_context(|| format!("reading {}", public_path.display()))?;
    // `ssh-ed25519 AAAA… comment`: known_hosts takes the type and the key.
    let public = public_line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let fingerprint = fingerprint_of(&public_path)?;
    Ok(HostKey {
        path,
        public,
        fingerprint,
    })
}

/// `ssh-keygen -t ed25519 -N ''`: a new key pair at `path` and `path.pub`.
fn generate_key(path: &Path, comment: &str) -> Result<()> {
    let output = run_bounded(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
        b"",
        COMMAND_TIMEOUT,
    )?;
    ensure!(
        output.status.success(),
        "ssh-keygen could not create {} ({}): {}",
        path.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The `SHA256:…` fingerprint `ssh-keygen -lf` prints for the first key in `path` (a
/// public key or a `known_hosts` file).
pub fn fingerprint_of(path: &Path) -> Result<String> {
    fingerprint_with_input(path, b"")
}

/// The `SHA256:…` fingerprint of the first key in `keys` (public key or `known_hosts`
/// lines, as `ssh-keyscan` prints them).
pub fn fingerprint_of_keys(keys: &str) -> Result<String> {
    fingerprint_with_input(Path::new("-"), keys.as_bytes())
}

fn fingerprint_with_input(path: &Path, input: &[u8]) -> Result<String> {
    let output = run_bounded(
        Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(path),
        input,
        COMMAND_TIMEOUT,
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "`ssh-keygen -lf {}` failed ({}): {}",
        path.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // "256 SHA256:… comment (ED25519)"
    stdout
        .split_whitespace()
        .find(|word| word.starts_with("SHA256:"))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no SHA256 fingerprint in ssh-keygen's output: {stdout}"))
}

/// Quotes one argument of an `sftp` batch command: double quotes, with `\` and `"`
/// escaped, as sftp's own parser reads them.
fn quote_sftp_arg(arg: &str) -> Result<String> {
    ensure!(
        !arg.contains(['\n', '\r']),
        "an sftp batch argument cannot contain a line break: {arg:?}"
    );
    Ok(format!(
        "\"{}\"",
        arg.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Runs `command` with `input` on stdin, collecting stdout and stderr; kills it and
/// fails if it runs longer than `timeout`.
fn run_bounded(command: &mut Command, input: &[u8], timeout: Duration) -> Result<Output> {
    let program = format!("{:?}", command.get_program());
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {program}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    // Threads keep a child that writes a lot from blocking on a full pipe.
    let writer = thread::spawn(move || {
        // A child that exits without reading all of its input is not an error here.
        let _ = stdin.write_all(&input);
    });
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr is piped")));

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("polling a child process")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => bail!(
            "{program} ran longer than {timeout:?} and was killed; stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// `/usr/sbin/sshd`, else an absolute `sshd` on PATH.
fn sshd_binary() -> Result<PathBuf> {
    let debian = PathBuf::from(SSHD_PATH);
    if debian.is_file() {
        return Ok(debian);
    }
    find_on_path("sshd")
        .filter(|path| path.is_absolute())
        .ok_or_else(|| {
            anyhow!(
                "sshd was not found at {SSHD_PATH} or on PATH; install Debian's \
                 openssh-server (`apt-get install openssh-server`)"
            )
        })
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let paths = env::var_os("PATH")?;
    env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The uid and name of the user the tests run as (`id -u`, `id -un`).
fn current_user() -> Result<(u32, String)> {
    let id = |flag: &str| -> Result<String> {
        let output = run_bounded(Command::new("id").arg(flag), b"", COMMAND_TIMEOUT)?;
        ensure!(
            output.status.success(),
            "`id {flag}` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let uid = id("-u")?;
    let uid = uid
        .parse()
        .with_context(|| format!("`id -u` printed {uid:?}"))?;
    Ok((uid, id("-un")?))
}

/// Creates `/run/sshd` (root-owned, 0755) if missing, as Debian's packaging does at
/// boot. A root sshd will not start without it.
fn ensure_privsep_dir() -> Result<()> {
    let dir = Path::new(PRIVSEP_DIR);
    if dir.is_dir() {
        return Ok(());
    }
    // Tests start servers concurrently; `create_dir_all` tolerates losing that race.
    fs::create_dir_all(dir)
        .with_context(|| format!("creating sshd's privilege-separation directory {PRIVSEP_DIR}"))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {PRIVSEP_DIR}"))
}

/// The log from byte `start` on (lossy UTF-8); empty if it cannot be read.
fn read_from(path: &Path, start: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_default()
}
