//! The `ppin` method (Securosys Primus): the vendor's `ppin` tool exchanges
//! the setup password for the partition's permanent secret and writes it,
//! ciphered with the PKCS#11 password, into a secrets file.
//!
//! `ppin -a -e USER [-c CFG] -s DIR/.secrets.cfg` runs in a new session
//! (no controlling terminal, so its no-echo prompts read standard input) and
//! gets two lines on stdin: the setup password and a fresh random PKCS#11
//! password, which becomes the credential's `pin`. Neither is ever in argv
//! or the environment. DIR is a private 0700 directory removed afterwards.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::redact::{redact, tail};
use super::{Credential, EnrollError};

/// Where the Primus provider installs `ppin`.
pub const DEFAULT_PATH: &str = "/usr/local/primus/bin/ppin";

/// Random bytes in the PKCS#11 password (hex: twice as many characters).
const PASSWORD_BYTES: usize = 16;
/// Most of ppin's stdout or stderr kept for messages.
const OUTPUT_LIMIT: u64 = 64 * 1024;
/// Largest secrets file accepted (a Kubernetes Secret holds at most 1 MiB).
const SECRETS_LIMIT: u64 = 512 * 1024;
/// Characters of ppin's output quoted in an error message.
const QUOTED: usize = 400;

#[derive(Debug)]
pub struct PpinOptions {
    pub path: PathBuf,
    pub user: String,
    pub config: Option<PathBuf>,
    pub timeout: Duration,
}

/// ppin failures other than a rejected setup password (that one is
/// [`EnrollError::SetupPasswordRejected`]). Quoted output is redacted.
#[derive(Debug, thiserror::Error)]
pub enum PpinError {
    #[error("cannot run ppin {path}: {source}")]
    Spawn { path: String, source: io::Error },
    #[error("cannot prepare a private directory for ppin's secrets file: {0}")]
    TempDir(String),
    #[error("cannot draw a random PKCS#11 password from /dev/urandom: {0}")]
    Random(io::Error),
    #[error("cannot wait for ppin: {0}")]
    Wait(io::Error),
    #[error("ppin did not finish within {0} s and was stopped")]
    Timeout(u64),
    #[error("ppin cannot reach the HSM (0x80005015 network unreachable): check the cluster members' host and port and the network path from the pod; ppin said: {output}")]
    Unreachable { output: String },
    #[error("the HSM refused another connection (0x80000018 max connections exceeded); ppin said: {output}")]
    MaxConnections { output: String },
    #[error("ppin failed ({status}); ppin said: {output}")]
    Failed { status: String, output: String },
    #[error("ppin reported success but its secrets file {path} {problem}")]
    NoSecretsFile { path: String, problem: String },
}

impl PpinError {
    /// Failures an operator fixes in the configuration (exit code 2).
    pub fn is_config(&self) -> bool {
        matches!(self, PpinError::Spawn { .. })
    }
}

/// Runs ppin and returns the credential: the PKCS#11 password and the secrets file.
pub fn enroll(options: &PpinOptions, setup: &[u8]) -> Result<Credential, EnrollError> {
    let pin = random_password()?;
    let dir = PrivateDir::create()?;
    let secrets_path = dir.path().join(".secrets.cfg");
    let finished = run(options, &secrets_path, setup, &pin)?;
    let output = redact(&finished.output, &[setup, &pin]);
    if finished.status.success() {
        match read_secrets(&secrets_path) {
            Ok(secrets) => {
                return Ok(Credential {
                    pin,
                    secrets_cfg: Some(secrets),
                })
            }
            Err(problem) => {
                // Trust the words over the exit code when they say the password was refused.
                if let Verdict::Rejected(why) = classify(&output) {
                    return Err(rejected(why, &output));
                }
                return Err(PpinError::NoSecretsFile {
                    path: secrets_path.display().to_string(),
                    problem,
                }
                .into());
            }
        }
    }
    Err(failure(finished.status, &output))
}

/// What ppin's output says went wrong.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The setup password is wrong or expired: never retried (lockout).
    Rejected(&'static str),
    Unreachable,
    MaxConnections,
    Unknown,
}

/// Words that, on a line about the setup password, mean it was refused.
const REFUSALS: &[&str] = &[
    "wrong",
    "invalid",
    "incorrect",
    "expired",
    "rejected",
    "denied",
    "not valid",
    "not accepted",
    "mismatch",
];

/// Classifies ppin's (redacted) output. The vendor's error codes decide
/// first; then a line about the setup password with a word of refusal.
pub fn classify(output: &str) -> Verdict {
    let lower = output.to_ascii_lowercase();
    if lower.contains("80005017") {
        return Verdict::Rejected("0x80005017 setup password rejected");
    }
    if lower.contains("80005018") {
        return Verdict::Rejected("0x80005018 setup password expired");
    }
    if lower.contains("80005015") {
        return Verdict::Unreachable;
    }
    if lower.contains("80000018") {
        return Verdict::MaxConnections;
    }
    // Prompts name the user, whose name may hold any word: leave them out.
    let refused = output
        .lines()
        .map(|line| without_prompts(line).to_ascii_lowercase())
        .any(|line| line.contains("setup password") && REFUSALS.iter().any(|word| line.contains(word)));
    if refused {
        return Verdict::Rejected("ppin says the setup password is wrong or expired");
    }
    Verdict::Unknown
}

/// The part of ppin's output worth quoting: its banner and prompts dropped, the end kept.
pub fn quote(output: &str) -> String {
    let mut kept = String::new();
    for line in output.lines() {
        let line = without_prompts(line);
        let line = line.trim();
        if line.is_empty() || line.chars().all(|c| c == '*') || line.eq_ignore_ascii_case("Primus Permanent PIN") {
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    if kept.is_empty() {
        return "(no output)".into();
    }
    tail(&kept, QUOTED)
}

/// `line` without "Provide … password for 'USER':" prompts (they end with no newline,
/// so the next output shares their line).
fn without_prompts(line: &str) -> String {
    let mut rest = line;
    let mut out = String::new();
    while let Some(start) = rest.find("Provide ") {
        let Some(end) = rest[start..].find("':") else { break };
        out.push_str(&rest[..start]);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

fn failure(status: ExitStatus, output: &str) -> EnrollError {
    let quoted = quote(output);
    match classify(output) {
        Verdict::Rejected(why) => rejected(why, output),
        Verdict::Unreachable => PpinError::Unreachable { output: quoted }.into(),
        Verdict::MaxConnections => PpinError::MaxConnections { output: quoted }.into(),
        Verdict::Unknown => PpinError::Failed {
            status: status.to_string(),
            output: quoted,
        }
        .into(),
    }
}

fn rejected(why: &str, output: &str) -> EnrollError {
    EnrollError::SetupPasswordRejected(format!("ppin: {why}; ppin said: {}", quote(output)))
}

/// A finished ppin run: its status and its stdout then stderr, lossily decoded.
struct Finished {
    status: ExitStatus,
    output: String,
}

fn run(options: &PpinOptions, secrets_path: &Path, setup: &[u8], pin: &[u8]) -> Result<Finished, PpinError> {
    let mut cmd = Command::new(&options.path);
    cmd.arg("-a").arg("-e").arg(&options.user);
    if let Some(config) = &options.config {
        cmd.arg("-c").arg(config);
    }
    cmd.arg("-s")
        .arg(secrets_path)
        .env("SECUROSYS_SECRETS_CONF", secrets_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: runs in the forked child before exec; setsid(2) is async-signal-safe
    // and touches no memory of the parent. A new session has no controlling
    // terminal, so ppin's getpass-style prompts read stdin, and its process
    // group can be stopped as a whole on timeout.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| PpinError::Spawn {
        path: options.path.display().to_string(),
        source,
    })?;

    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        spawn_reader(0, out, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        spawn_reader(1, err, tx);
    } else {
        drop(tx);
    }

    // The answers to its two prompts. A ppin that exits before reading them
    // closes the pipe (EPIPE): its exit status and output tell why.
    if let Some(mut stdin) = child.stdin.take() {
        let mut input = Zeroizing::new(Vec::with_capacity(setup.len() + pin.len() + 2));
        input.extend_from_slice(setup);
        input.push(b'\n');
        input.extend_from_slice(pin);
        input.push(b'\n');
        if let Err(e) = stdin.write_all(&input) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                stop(&mut child);
                return Err(PpinError::Wait(e));
            }
        }
    }

    let status = wait(&mut child, options.timeout)?;
    let mut streams = [Vec::new(), Vec::new()];
    // Output ends when ppin's process group closes its ends; do not hang on a
    // descendant that keeps them open.
    let grace = Instant::now() + Duration::from_secs(5);
    for _ in 0..2 {
        match rx.recv_timeout(grace.saturating_duration_since(Instant::now())) {
            Ok((which, bytes)) => streams[which] = bytes,
            Err(_) => break,
        }
    }
    let output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&streams[0]),
        String::from_utf8_lossy(&streams[1])
    );
    Ok(Finished { status, output })
}

fn spawn_reader(which: usize, mut stream: impl Read + Send + 'static, tx: mpsc::Sender<(usize, Vec<u8>)>) {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = (&mut stream).take(OUTPUT_LIMIT).read_to_end(&mut kept);
        // Drain the rest so ppin never blocks on a full pipe.
        let _ = io::copy(&mut stream, &mut io::sink());
        let _ = tx.send((which, kept));
    });
}

fn wait(child: &mut Child, timeout: Duration) -> Result<ExitStatus, PpinError> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                stop(child);
                return Err(PpinError::Timeout(timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                stop(child);
                return Err(PpinError::Wait(e));
            }
        }
    }
}

/// Kills ppin's process group (it leads its own session) and reaps ppin.
fn stop(child: &mut Child) {
    match libc::pid_t::try_from(child.id()) {
        // pid > 1: never signal group 0 (our own) or -1 (everything).
        Ok(pid) if pid > 1 => {
            // SAFETY: plain syscall; the group is the one ppin leads.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        _ => {
            let _ = child.kill();
        }
    }
    let _ = child.wait();
}

/// The future `pin`: no module is loaded in this method, so the kernel's RNG.
fn random_password() -> Result<Zeroizing<Vec<u8>>, PpinError> {
    let mut raw = Zeroizing::new(vec![0u8; PASSWORD_BYTES]);
    urandom(&mut raw).map_err(PpinError::Random)?;
    Ok(super::hex(&raw))
}

fn urandom(buf: &mut [u8]) -> io::Result<()> {
    File::open("/dev/urandom")?.read_exact(buf)
}

fn read_secrets(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let file = File::open(path).map_err(|e| format!("cannot be opened: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot be examined: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.len() > SECRETS_LIMIT {
        return Err(format!("is larger than {SECRETS_LIMIT} bytes"));
    }
    let mut data = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.take(SECRETS_LIMIT + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if data.is_empty() {
        return Err("is empty".into());
    }
    Ok(data)
}

/// A 0700 directory under the temp dir (TMPDIR), removed on drop.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create() -> Result<Self, PpinError> {
        let base = std::env::temp_dir();
        let mut last = None;
        for _ in 0..8 {
            let mut raw = [0u8; 8];
            urandom(&mut raw).map_err(PpinError::Random)?;
            let path = base.join(format!("hsm-enroll-{}", String::from_utf8_lossy(&super::hex(&raw))));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let dir = PrivateDir(path);
                    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o700))
                        .map_err(|e| PpinError::TempDir(format!("{}: {e}", dir.0.display())))?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(PpinError::TempDir(format!("{}: {e}", path.display()))),
            }
        }
        Err(PpinError::TempDir(format!(
            "{}: {}",
            base.display(),
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
#[path = "ppin_tests.rs"]
mod tests;
