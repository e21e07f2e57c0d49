//! One real kube-apiserver (plus etcd) per test, started by `scripts/kube-testenv.sh`.
//!
//! Every test gets its own server, so tests run in parallel without seeing each other's
//! partitions, operators or metrics. Starting one takes about 5 s. The server is stopped when
//! the [`ApiServer`] is dropped; a watchdog process also stops it (and every process registered
//! with [`ApiServer::register_child`]) if the test binary dies without running destructors.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::paths;

/// The CRD and the operator's least-privilege RBAC, applied to every server.
pub const MANIFESTS: [&str; 2] = ["crds/hsmpartition.yaml", "operator/deploy/rbac.yaml"];
/// The operator's ServiceAccount, from `operator/deploy/rbac.yaml`.
pub const OPERATOR_NAMESPACE: &str = "hsmbridge-system";
pub const OPERATOR_SERVICE_ACCOUNT: &str = "hsm-operator";

pub struct ApiServer {
    dir: PathBuf,
    vars: BTreeMap<String, String>,
    watchdog: Option<Child>,
}

impl ApiServer {
    /// Starts etcd + kube-apiserver and applies [`MANIFESTS`] as the admin.
    pub fn start() -> ApiServer {
        let apiserver = paths::cached_apiserver();
        assert!(
            apiserver.is_file(),
            "{} is missing: these tests need a real kube-apiserver. Run `scripts/kube-testenv.sh install` \
             (once per machine, ~5 min; `make test` does it) and retry.",
            apiserver.display()
        );
        let dir = paths::fresh_temp_dir("kube");
        // The watchdog starts with the script, so a test killed mid-start leaks nothing either.
        // Output to a file, not a pipe: a dying test must not SIGPIPE the script half-way.
        let log = dir.join("start.log");
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let mut start = Command::new(paths::kube_testenv_script())
            .arg("start")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("cloning a file handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("running scripts/kube-testenv.sh start: {e}"));
        let watchdog = spawn_watchdog(&dir, start.id());
        let status = start.wait().expect("waiting for kube-testenv.sh start");
        let mut server = ApiServer {
            dir,
            vars: BTreeMap::new(),
            watchdog: Some(watchdog),
        };
        if !status.success() {
            panic!(
                "scripts/kube-testenv.sh start {} failed ({status}):\n{}",
                server.dir.display(),
                tail_file(&log, 60)
            );
        }
        server.vars = parse_env_file(&server.dir.join("env"));
        for manifest in MANIFESTS {
            let path = paths::repo_root().join(manifest);
            assert!(path.is_file(), "{} is missing", path.display());
            server.kubectl_ok(&["apply", "-f", path_str(&path)]);
        }
        server.kubectl_ok(&[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/hsmpartitions.hsmbridge.io",
        ]);
        server
    }

    /// The directory holding the server's state, logs and kubeconfigs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A variable of `DIR/env` (KUBECONFIG, KUBECTL, KUBE_APISERVER_URL, ...).
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{name} missing from the testenv's env file"))
    }

    /// The admin's kubeconfig (group system:masters).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        PathBuf::from(self.var("KUBECONFIG"))
    }

    /// A client authenticated as the admin.
    pub async fn admin_client(&self) -> kube::Client {
        client_from_kubeconfig(&self.admin_kubeconfig()).await
    }

    /// `kubectl ARGS` as the admin, with `stdin` fed in when given.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(self.var("KUBECTL"));
        cmd.args(args).env("KUBECONFIG", self.admin_kubeconfig());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning kubectl: {e}"));
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            pipe.write_all(text.as_bytes()).expect("writing kubectl's stdin");
        }
        child.wait_with_output().expect("waiting for kubectl")
    }

    /// `kubectl ARGS` as the admin; panics with its stderr unless it succeeds.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args, None);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a kubeconfig (0600) for ServiceAccount `ns/sa`, which must exist.
    pub fn service_account_kubeconfig(&self, ns: &str, sa: &str, file: &Path) {
        let out = script(&["kubeconfig", path_str(&self.dir), ns, sa, path_str(file)]);
        assert!(
            out.status.success(),
            "kube-testenv.sh kubeconfig {ns} {sa} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Registers a process this test started from `exe`, so the watchdog kills it if the test
    /// binary dies (only if that pid still runs `exe`: pids get reused).
    pub fn register_child(&self, pid: u32, exe: &Path) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("children.pids"))
            .expect("opening children.pids");
        let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
        let _ = writeln!(f, "{pid} {}", exe.display());
    }

    /// The last `n` lines of the API server's log.
    pub fn log_tail(&self, n: usize) -> String {
        tail_file(&self.dir.join("kube-apiserver.log"), n)
    }
}

/// A process that waits for the test process to go away, then (once the `start` script, pid
/// `starter`, is done) kills the registered children and stops the server: a `kill -9` of the
/// test binary must not leave etcd and kube-apiserver running (nor their state directory).
fn spawn_watchdog(dir: &Path, starter: u32) -> Child {
    let body = r#"
        while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
        while kill -0 "$2" 2>/dev/null; do sleep 0.5; done
        if [ -f "$3/children.pids" ]; then
            while read -r p exe; do
                [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$exe" ] && kill -KILL "$p" 2>/dev/null
            done <"$3/children.pids"
        fi
        "$4" stop "$3" && rm -rf "$3"
    "#;
    Command::new("setsid")
        .args(["bash", "-c", body, "watchdog"])
        .arg(std::process::id().to_string())
        .arg(starter.to_string())
        .arg(dir)
        .arg(paths::kube_testenv_script())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning the testenv watchdog: {e}"))
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        // Stop first, watchdog last: if the test dies half-way, the watchdog still stops the
        // server. The script's output goes to a file (a pipe to a dead test would SIGPIPE it).
        let stopped = std::fs::File::create(self.dir.join("stop.log")).ok().and_then(|log| {
            Command::new(paths::kube_testenv_script())
                .arg("stop")
                .arg(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .status()
                .ok()
        });
        if stopped.is_some_and(|s| s.success()) {
            if let Some(mut w) = self.watchdog.take() {
                let _ = w.kill();
                let _ = w.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("kept the testenv directory for inspection: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()));
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("client for {}: {e}", path.display()))
}

fn script(args: &[&str]) -> Output {
    Command::new(paths::kube_testenv_script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running scripts/kube-testenv.sh {}: {e}", args.join(" ")))
}

fn parse_env_file(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.contains(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
}

/// The last `n` lines of a file ("" if unreadable).
pub fn tail_file(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
