//! `hsm-operator run` as a child process under its least-privilege ServiceAccount.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::apiserver::{tail_file, ApiServer, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT};
use super::paths;

pub struct Operator {
    child: Mutex<Child>,
    exited: Mutex<Option<ExitStatus>>,
    metrics_addr: SocketAddr,
    log: PathBuf,
}

impl Operator {
    /// Starts `hsm-operator run --no-leader-election --metrics-addr 127.0.0.1:<free>` with a
    /// kubeconfig for `hsmbridge-system/hsm-operator` (the RBAC of `operator/deploy/rbac.yaml`
    /// applies: a missing permission shows up as a failure here). Output goes to a log file in
    /// the testenv directory (`operator-<n>.log`, one per start).
    pub fn start(api: &ApiServer) -> Operator {
        Self::start_with(api, &["--no-leader-election"])
    }

    /// Like [`Operator::start`], with leader election on (the Lease `hsm-operator-leader` in
    /// `hsmbridge-system`), as replicas in a cluster run.
    pub fn start_replica(api: &ApiServer) -> Operator {
        Self::start_with(api, &[])
    }

    /// `hsm-operator run --metrics-addr 127.0.0.1:<free> EXTRA...`.
    pub fn start_with(api: &ApiServer, extra: &[&str]) -> Operator {
        let kubeconfig = api.dir().join("operator.kubeconfig");
        if !kubeconfig.exists() {
            api.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, &kubeconfig);
        }
        let n = (0..)
            .find(|n| !api.dir().join(format!("operator-{n}.log")).exists())
            .unwrap_or(0);
        let log = api.dir().join(format!("operator-{n}.log"));
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let metrics_addr = free_local_addr();
        let mut cmd = Command::new(paths::operator_bin());
        cmd.arg("run")
            .arg("--metrics-addr")
            .arg(metrics_addr.to_string())
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env(
                "RUST_LOG",
                std::env::var("HSMBRIDGE_OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("cloning the log file handle"))
            .stderr(log_file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", paths::operator_bin().display()));
        api.register_child(child.id(), &paths::operator_bin());
        Operator {
            child: Mutex::new(child),
            exited: Mutex::new(None),
            metrics_addr,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().expect("operator child lock").id()
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// `None` while running, else how it ended.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut exited = self.exited.lock().expect("operator exit lock");
        if exited.is_none() {
            *exited = self
                .child
                .lock()
                .expect("operator child lock")
                .try_wait()
                .ok()
                .flatten();
        }
        *exited
    }

    /// SIGKILL (a crash, or a node going away): nothing gets to finish.
    pub fn kill(&self) {
        if self.exit_status().is_none() {
            let mut child = self.child.lock().expect("operator child lock");
            let _ = child.kill();
            *self.exited.lock().expect("operator exit lock") = child.wait().ok();
        }
    }

    /// SIGTERM (a rolling update, a scale-down): the process may shut down cleanly. Waits up to
    /// `limit` for it to exit, then SIGKILLs it; returns how it ended.
    pub fn terminate(&self, limit: Duration) -> Option<ExitStatus> {
        if self.exit_status().is_none() {
            let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
            let start = Instant::now();
            while self.exit_status().is_none() && start.elapsed() < limit {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.exit_status().is_none() {
                self.kill();
                return None;
            }
        }
        self.exit_status()
    }

    /// The last `n` lines of this run's output.
    pub fn log_tail(&self, n: usize) -> String {
        tail_file(&self.log, n)
    }

    /// Waits until `/healthz` answers 200 (panics with the log if the process exits first).
    pub fn wait_healthy(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                panic!(
                    "hsm-operator exited ({status}) before /healthz answered; its log:\n{}",
                    self.log_tail(60)
                );
            }
            if let Ok((200, _)) = self.http_get("/healthz") {
                return;
            }
            if start.elapsed() > limit {
                panic!(
                    "hsm-operator's /healthz on {} did not answer 200 within {limit:?}; its log:\n{}",
                    self.metrics_addr,
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A plain HTTP/1.0 GET on the metrics address: (status code, body).
    pub fn http_get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.metrics_addr, path)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// HTTP/1.0 (so the body is never chunked) GET of `path` on `addr`.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header end in {text:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok((code, body.to_owned()))
}

/// A loopback address nobody listens on (bound and released; good enough on a test machine).
pub fn free_local_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().expect("local_addr of a bound listener")
}

/// Sum of all samples of metric `name` (any labels) in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let series_name = series.split('{').next().unwrap_or("").trim();
        if series_name == name {
            if let Ok(v) = value.trim().parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
    }
    found
}
