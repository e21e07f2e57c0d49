//! The two RPC servers the benchmark talks to, started on the benchmark's
//! SoftHSM token and stopped (SIGTERM, then SIGKILL) when dropped.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The sidecar's observability (issue #10): Prometheus metrics and the audit trail.
pub struct Observe {
    pub metrics_addr: SocketAddr,
    pub audit_file: PathBuf,
}

pub struct Server {
    name: &'static str,
    child: Child,
    pub socket: PathBuf,
}

impl Server {
    /// `p11-kit server` exporting the token `label` of `module` on `socket`.
    pub fn p11_kit(
        module: &Path,
        label: &str,
        softhsm_conf: &Path,
        socket: PathBuf,
        log: &Path,
    ) -> Result<Server, String> {
        let mut cmd = Command::new("p11-kit");
        cmd.arg("server")
            .arg("--provider")
            .arg(module)
            .arg("-f")
            .arg("-n")
            .arg(&socket)
            .arg(format!("pkcs11:token={label}"))
            .env("SOFTHSM2_CONF", softhsm_conf);
        Server::start("p11-kit server", cmd, socket, log)
    }

    /// `hsm-sidecar serve` in forwarded mode (no --pin-file: the app logs in),
    /// with metrics and audit trail when `observe` says where, else with
    /// neither (`--no-audit`, no `--metrics-addr`: every recorder a no-op);
    /// `--spin-us` when `spin_us` is set, else its default (adaptive) mode.
    pub fn sidecar(
        binary: &Path,
        module: &Path,
        softhsm_conf: &Path,
        socket: PathBuf,
        log: &Path,
        observe: Option<&Observe>,
        spin_us: Option<u32>,
    ) -> Result<Server, String> {
        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .arg("--module")
            .arg(module)
            .arg("--socket")
            .arg(&socket)
            .env("SOFTHSM2_CONF", softhsm_conf);
        match observe {
            Some(o) => cmd
                .arg("--metrics-addr")
                .arg(o.metrics_addr.to_string())
                .arg("--audit-file")
                .arg(&o.audit_file),
            None => cmd.arg("--no-audit"),
        };
        if let Some(us) = spin_us {
            cmd.arg("--spin-us").arg(us.to_string());
        }
        Server::start("hsm-sidecar", cmd, socket, log)
    }

    fn start(name: &'static str, mut cmd: Command, socket: PathBuf, log: &Path) -> Result<Server, String> {
        let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().map_err(|e| format!("starting {name}: {e}"))?;
        let mut server = Server { name, child, socket };
        server.wait_for_socket(Duration::from_secs(20), log)?;
        Ok(server)
    }

    fn wait_for_socket(&mut self, timeout: Duration, log: &Path) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("{} exited ({status}) before listening:\n{tail}", self.name));
            }
            if Instant::now() > deadline {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!(
                    "{} did not listen on {} within {timeout:?}:\n{tail}",
                    self.name,
                    self.socket.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain syscall on the pid of our own child, which has not been reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
