//! Several PKCS#11 applications (processes) talking to one sidecar.
//!
//! The test process starts children of itself with a role; a child loads the
//! shim, runs its role and talks with the parent over lines: it prints
//! `@@APP <message>` on stdout and reads commands from stdin.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::calls::Api;
use crate::oracle::shim_env;
use crate::process;
use crate::sidecar::Sidecar;

const MESSAGE_PREFIX: &str = "@@APP ";

/// The parent's handle on one application process.
pub struct App {
    role: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl App {
    /// Starts this test in a child playing `role`, with the shim pointed at `sidecar`.
    pub fn spawn(sidecar: &Sidecar, role: &str) -> App {
        let test = process::test_name();
        let mut cmd = process::self_command(&test, &shim_env(sidecar, role), &["SOFTHSM2_CONF"]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning app {role}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Anywhere in the line: libtest may have printed `test NAME ... ` first.
                if let Some(at) = line.find(MESSAGE_PREFIX) {
                    if tx.send(line[at + MESSAGE_PREFIX.len()..].to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr_pipe, &mut text);
            text
        });
        App {
            role: role.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    /// The next message, waiting up to `limit`; panics (with the app's
    /// stderr) if the app ends or stays silent.
    pub fn recv(&mut self, limit: Duration) -> String {
        match self.lines.recv_timeout(limit) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => self.fail(&format!("no message within {limit:?}")),
            Err(RecvTimeoutError::Disconnected) => self.fail("ended without the expected message"),
        }
    }

    /// The next message, which must start with `prefix`; returns the rest.
    pub fn expect(&mut self, prefix: &str) -> String {
        let msg = self.recv(Duration::from_secs(30));
        match msg.strip_prefix(prefix) {
            Some(rest) => rest.trim().to_owned(),
            None => self.fail(&format!("expected {prefix:?}, got {msg:?}")),
        }
    }

    /// Sends one command line.
    pub fn send(&mut self, command: &str) {
        let ok = self
            .stdin
            .as_mut()
            .is_some_and(|s| writeln!(s, "{command}").and_then(|_| s.flush()).is_ok());
        if !ok {
            self.fail(&format!("could not send {command:?}"));
        }
    }

    /// SIGKILLs the app: no C_Finalize, no session closed by the app.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes its stdin and waits for a successful exit.
    pub fn finish(mut self) {
        self.stdin.take();
        match process::wait_deadline(&mut self.child, Duration::from_secs(30)) {
            Some(s) if s.success() => {}
            other => self.fail(&format!("exit status {other:?}")),
        }
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
        let text = stderr.join().unwrap_or_default();
        panic!("app {:?}: {what}; its stderr:\n{}", self.role, process::tail(&text, 40))
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In a child: tells the parent something.
pub fn say(message: impl AsRef<str>) {
    // Flushed at once: a piped stdout may be block-buffered.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{MESSAGE_PREFIX}{}", message.as_ref());
    let _ = out.flush();
}

/// In a child: the next command from the parent (`None` once stdin closes).
pub fn command() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_owned()),
    }
}

/// In a child: the shim, loaded with transcript lines echoed for debugging.
pub fn load_shim() -> Api {
    Api::load(&process::module_path(), false)
}

/// Polls `check` every 20 ms until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Collects failed expectations so one run reports all of them.
#[derive(Default)]
pub struct Checks {
    failed: Vec<String>,
}

impl Checks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Expects `actual == expected`; `what` says what it means when not.
    pub fn eq(&mut self, actual: &str, expected: &str, what: &str) {
        if actual != expected {
            self.failed.push(format!("{what}: got {actual}, expected {expected}"));
        }
    }

    /// Panics with every failed expectation, and `context`.
    pub fn done(self, context: &str) {
        assert!(
            self.failed.is_empty(),
            "{} failed expectation(s):\n  {}\n({context})",
            self.failed.len(),
            self.failed.join("\n  ")
        );
    }
}
