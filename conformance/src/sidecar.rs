//! An `hsm-sidecar serve` process in front of its own SoftHSM token.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::{shim_lib, sidecar_bin, softhsm_module};
use crate::softhsm::SoftHsm;

/// How long [`Sidecar::start`] waits for the socket to accept a connection.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running sidecar; SIGKILLed on drop.
pub struct Sidecar {
    hsm: SoftHsm,
    socket: PathBuf,
    stderr_log: PathBuf,
    /// The audit trail (the sidecar's stdout).
    stdout_log: PathBuf,
    pin_file: Option<PathBuf>,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl Sidecar {
    /// Forwarded mode: the application logs in itself.
    pub fn start() -> Self {
        Self::start_on(SoftHsm::new(), None)
    }

    /// Managed mode: the sidecar logs in with `pin` from a `--pin-file`.
    pub fn start_managed(pin: &str) -> Self {
        let hsm = SoftHsm::new();
        let pin_file = hsm.dir().join("user.pin");
        std::fs::write(&pin_file, pin).unwrap_or_else(|e| panic!("writing {}: {e}", pin_file.display()));
        Self::start_on(hsm, Some(pin_file))
    }

    /// Serves the token of `hsm` (which the sidecar then owns).
    pub fn start_on(hsm: SoftHsm, pin_file: Option<PathBuf>) -> Self {
        Self::start_with_args(hsm, pin_file, &[])
    }

    /// Like [`Sidecar::start_on`], with more `serve` arguments (e.g. `--health-addr`).
    pub fn start_with_args(hsm: SoftHsm, pin_file: Option<PathBuf>, extra_args: &[&str]) -> Self {
        let socket = hsm.dir().join("pkcs11.sock");
        let stderr_log = hsm.dir().join("sidecar.stderr");
        let stdout_log = hsm.dir().join("sidecar.stdout");
        let extra_args = extra_args.iter().map(|a| a.to_string()).collect();
        let mut sidecar = Sidecar {
            hsm,
            socket,
            stderr_log,
            stdout_log,
            pin_file,
            extra_args,
            child: None,
        };
        sidecar.spawn();
        sidecar
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.stderr_log.display()));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stdout_log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.stdout_log.display()));
        let mut cmd = Command::new(sidecar_bin());
        cmd.arg("serve")
            .arg("--module")
            .arg(softhsm_module())
            .arg("--socket")
            .arg(&self.socket);
        if let Some(pin_file) = &self.pin_file {
            cmd.arg("--pin-file").arg(pin_file);
        }
        // The shim's spin setting, mirrored: `HSMBRIDGE_SPIN_US=0 cargo test` runs both ends
        // without polling (scripts/test.sh runs the suites in each mode).
        if let Ok(spin) = std::env::var(hsmbridge_contract::ENV_SPIN_US) {
            if !self.extra_args.iter().any(|a| a == "--spin-us") {
                cmd.arg("--spin-us").arg(spin);
            }
        }
        cmd.args(&self.extra_args);
        cmd.env("SOFTHSM2_CONF", self.hsm.conf())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(log));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {:?}: {e}", cmd));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "hsm-sidecar exited ({status}) before serving {}:\n{}",
                        self.socket.display(),
                        self.stderr()
                    );
                }
            }
            if start.elapsed() > READY_TIMEOUT {
                panic!(
                    "hsm-sidecar did not accept connections on {} within {READY_TIMEOUT:?}; its stderr:\n{}",
                    self.socket.display(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the sidecar (no cleanup on its side) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the sidecar if it runs and starts a new one on the same token and socket.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn softhsm(&self) -> &SoftHsm {
        &self.hsm
    }

    /// Everything the sidecar wrote to stdout (its audit trail) so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_log).unwrap_or_default()
    }

    /// Everything the sidecar wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Environment for a process that loads the shim against this sidecar.
    pub fn shim_env(&self) -> Vec<(String, String)> {
        vec![
            (hsmbridge_contract::ENV_SOCKET.into(), self.socket.display().to_string()),
            ("HSMBRIDGE_CONNECT_WAIT_MS".into(), "5000".into()),
            ("HSMBRIDGE_TIMEOUT_MS".into(), "30000".into()),
        ]
    }

    /// The shim library the tests load (same profile as the sidecar binary).
    pub fn shim_lib(&self) -> PathBuf {
        shim_lib()
    }
}

impl Sidecar {
    /// The running sidecar's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // own child's, not yet reaped (we hold its `Child` and no wait has
        // returned its status), so it cannot name a recycled process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the sidecar process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.kill();
    }
}
