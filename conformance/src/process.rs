//! Re-running the current test in a child process.
//!
//! A PKCS#11 module is loaded once per process and SoftHSM reads
//! `SOFTHSM2_CONF` at C_Initialize, so every module-using part of a test runs
//! in its own child: the test binary itself, started with
//! `--exact <this test>` and environment variables that tell the test
//! function which part to play.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Set in a child: which part of the test to run (`direct`, `shim`, an app role).
pub const ROLE_ENV: &str = "HSMBRIDGE_CONFORMANCE_ROLE";
/// Set in a child: the PKCS#11 module to load.
pub const MODULE_ENV: &str = "HSMBRIDGE_CONFORMANCE_MODULE";
/// Overrides the per-child time limit (seconds).
pub const TIMEOUT_ENV: &str = "HSMBRIDGE_CONFORMANCE_TIMEOUT_SECS";

/// The role this process plays, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// The module a child must load.
pub fn module_path() -> std::path::PathBuf {
    std::env::var_os(MODULE_ENV)
        .map(Into::into)
        .unwrap_or_else(|| panic!("{MODULE_ENV} is not set in this child"))
}

/// The running test's name (libtest names the test thread after it).
pub fn test_name() -> String {
    let thread = std::thread::current();
    match thread.name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => panic!("call this from a #[test] thread (libtest names it after the test)"),
    }
}

fn timeout() -> Duration {
    let secs = std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

/// A command that runs only `test` of this binary, with `env` added and
/// `remove` taken out of the environment.
pub fn self_command(test: &str, env: &[(String, String)], remove: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("current_exe() of the test binary");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--include-ignored", "--test-threads=1"]);
    for key in remove {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// What a finished (or timed-out) child printed.
pub struct Output {
    /// `None` if the child ran out of time and was killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Status and stderr, for failure messages.
    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => format!("killed after {:?} (time limit, see {TIMEOUT_ENV})", timeout()),
        };
        format!("{status}; stderr:\n{}", tail(&self.stderr, 60))
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` to completion (or the time limit), collecting its output.
pub fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_deadline(&mut child, timeout());
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let mut bytes = Vec::new();
            let _ = p.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

/// Waits for `child` until `limit`, then SIGKILLs it; `None` on timeout.
pub fn wait_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}
