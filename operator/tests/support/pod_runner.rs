//! A kubelet stand-in for a pod the webhook mutated: it runs the STORED pod spec on this
//! machine instead of in containers.
//!
//! - every volume becomes a directory under a temporary root: emptyDirs empty, Secret and
//!   ConfigMap volumes filled from the API server (items, modes);
//! - each container sees its `volumeMounts`: mount paths in its command, args and env values are
//!   rewritten to those directories (one pass, longest mount path first);
//! - the pod has one network namespace: a listen address `0.0.0.0:PORT` in a command line gets a
//!   free loopback port, and probes on PORT go there;
//! - init containers run in order, to completion; the only image content needed is the shim, so
//!   `hsm-sidecar install-shim --to DIR` runs the built `hsm-sidecar` with `--from` the built
//!   `libhsmbridge_pkcs11.so`;
//! - a container running `hsm-sidecar` runs the built `target/<profile>/hsm-sidecar` (plus
//!   `extra_env`, e.g. the `SOFTHSM2_CONF` its image would carry) and counts as started once its
//!   readiness probe passes (TCP, or the exec probe `hsm-sidecar probe --addr 127.0.0.1:PORT`,
//!   run with the built binary); any other container runs its command from this machine's PATH.
//!
//! Not emulated: users and fsGroup (everything runs as the test's user), read-only mounts,
//! resource limits, restarts.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hsmbridge_contract::SHIM_FILE;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec, Secret, Volume};
use kube::Api;

use super::apiserver::{path_str, tail_file, ApiServer};
use super::operator::free_local_addr;
use super::paths;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One container as it was run: the command line and environment after `$(VAR)` expansion and
/// path rewriting (what the process really got).
#[derive(Debug)]
pub struct Ran {
    pub name: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// An app container's run.
#[derive(Debug)]
pub struct AppRun {
    pub ran: Ran,
    pub output: Output,
}

impl AppRun {
    pub fn describe(&self) -> String {
        format!(
            "container {} ran `{}`: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.ran.name,
            self.ran.argv.join(" "),
            self.output.status,
            String::from_utf8_lossy(&self.output.stdout).trim_end(),
            String::from_utf8_lossy(&self.output.stderr).trim_end()
        )
    }
}

/// A running pod: its volumes and its long-running containers (sidecars).
pub struct RunningPod {
    pub name: String,
    namespace: String,
    root: PathBuf,
    spec: PodSpec,
    /// Volume name -> directory.
    volumes: BTreeMap<String, PathBuf>,
    /// Pod port -> loopback port.
    ports: BTreeMap<u16, u16>,
    daemons: Vec<(String, Child, PathBuf)>,
    pub init_runs: Vec<Ran>,
    pub sidecar_runs: Vec<Ran>,
}

/// Materializes the volumes of `pod` (namespace `ns`), runs its init containers and starts its
/// `hsm-sidecar` containers; the app containers are run with [`RunningPod::run_app`].
pub async fn start(
    api: &ApiServer,
    client: &kube::Client,
    ns: &str,
    pod: &Pod,
    extra_env: &[(&str, OsString)],
) -> RunningPod {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod
        .spec
        .clone()
        .unwrap_or_else(|| panic!("pod {ns}/{name} has no spec"));
    let root = paths::fresh_temp_dir("pod");
    let mut volumes = BTreeMap::new();
    for volume in spec.volumes.iter().flatten() {
        let dir = root.join("volumes").join(&volume.name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        materialize(client, ns, &name, volume, &dir).await;
        volumes.insert(volume.name.clone(), dir);
    }
    let mut pod_run = RunningPod {
        name,
        namespace: ns.to_owned(),
        root,
        spec,
        volumes,
        ports: BTreeMap::new(),
        daemons: Vec::new(),
        init_runs: Vec::new(),
        sidecar_runs: Vec::new(),
    };
    for c in pod_run.spec.init_containers.clone().unwrap_or_default() {
        let ran = pod_run.run_init(&c);
        pod_run.init_runs.push(ran);
    }
    for c in pod_run.spec.containers.clone() {
        if is_sidecar(&c) {
            let ran = pod_run.start_sidecar(api, &c, extra_env);
            pod_run.sidecar_runs.push(ran);
        }
    }
    pod_run
}

fn is_sidecar(c: &Container) -> bool {
    c.command
        .as_ref()
        .and_then(|v| v.first())
        .is_some_and(|p| p == "hsm-sidecar" || p.ends_with("/hsm-sidecar"))
}

/// Fills `dir` like the kubelet fills volume `volume` of pod `ns/pod`.
async fn materialize(client: &kube::Client, ns: &str, pod: &str, volume: &Volume, dir: &Path) {
    let (source, data, items, default_mode): (String, BTreeMap<String, Vec<u8>>, _, _) =
        if let Some(src) = &volume.secret {
            let name = src.secret_name.clone().unwrap_or_default();
            let secret = Api::<Secret>::namespaced(client.clone(), ns).get(&name).await.unwrap_or_else(|e| {
            panic!("pod {ns}/{pod} mounts Secret {name:?}: {e} (a kubelet would keep the pod in ContainerCreating)")
        });
            let data = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            (format!("Secret {name}"), data, src.items.clone(), src.default_mode)
        } else if let Some(src) = &volume.config_map {
            let name = src.name.clone();
            let cm = Api::<ConfigMap>::namespaced(client.clone(), ns).get(&name).await.unwrap_or_else(|e| {
            panic!("pod {ns}/{pod} mounts ConfigMap {name:?}: {e} (a kubelet would keep the pod in ContainerCreating)")
        });
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
            (format!("ConfigMap {name}"), data, src.items.clone(), src.default_mode)
        } else if volume.empty_dir.is_some() {
            return;
        } else {
            panic!(
                "pod {ns}/{pod}: volume {:?} is of a kind this kubelet stand-in does not support",
                volume.name
            );
        };
    let items: Vec<(String, String, Option<i32>)> = match items {
        Some(items) => items.into_iter().map(|i| (i.key, i.path, i.mode)).collect(),
        None => data.keys().map(|k| (k.clone(), k.clone(), None)).collect(),
    };
    for (key, rel, mode) in items {
        let bytes = data
            .get(&key)
            .unwrap_or_else(|| panic!("pod {ns}/{pod}: {source} has no key {key:?}"));
        let path = dir.join(rel);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        let mode = mode.or(default_mode).unwrap_or(0o644) as u32;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    }
}

impl RunningPod {
    /// The directory standing in for volume `name`.
    pub fn volume_dir(&self, name: &str) -> &Path {
        self.volumes
            .get(name)
            .unwrap_or_else(|| panic!("pod {} has no volume {name:?}", self.name))
    }

    /// The loopback port standing in for pod port `port`.
    pub fn port(&self, port: u16) -> Option<u16> {
        self.ports.get(&port).copied()
    }

    /// Runs app container `name` to completion (limit 120 s) from this machine's PATH, with only
    /// PATH and the container's own environment.
    pub fn run_app(&mut self, name: &str) -> AppRun {
        let c = self
            .spec
            .containers
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("pod {} has no container {name:?}", self.name));
        let ran = self.prepare(&c);
        let mut cmd = Command::new(&ran.argv[0]);
        cmd.args(&ran.argv[1..]).env_clear().env("PATH", PATH).envs(&ran.env);
        cmd.current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("container {name}: spawning {:?}: {e}", ran.argv[0]));
        let output = wait_output(child, Duration::from_secs(120))
            .unwrap_or_else(|| panic!("container {name}: still running after 120 s"));
        AppRun { ran, output }
    }

    /// The command line and environment of `c` as this machine runs them.
    fn prepare(&mut self, c: &Container) -> Ran {
        let mounts = self.mounts(c);
        let mut env = BTreeMap::new();
        for var in c.env.iter().flatten() {
            let value = match &var.value_from {
                None => expand(var.value.as_deref().unwrap_or(""), &env),
                // The downward API's pod fields, as the kubelet resolves them.
                Some(from) => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                    Some("metadata.name") => self.name.clone(),
                    Some("metadata.namespace") => self.namespace.clone(),
                    _ => panic!(
                        "container {}: env {} uses a valueFrom this stand-in does not support: {from:?}",
                        c.name, var.name
                    ),
                },
            };
            env.insert(var.name.clone(), value);
        }
        let mut argv: Vec<String> = c
            .command
            .iter()
            .flatten()
            .chain(c.args.iter().flatten())
            .map(|a| expand(a, &env))
            .collect();
        assert!(
            !argv.is_empty(),
            "container {}: no command (image entrypoints are not known here)",
            c.name
        );
        for arg in &mut argv {
            *arg = remap(arg, &mounts);
            if let Some(local) = self.listen_addr(arg) {
                *arg = local;
            }
        }
        let env = env.into_iter().map(|(k, v)| (k, remap(&v, &mounts))).collect();
        Ran {
            name: c.name.clone(),
            argv,
            env,
        }
    }

    /// (mount path, directory) of `c`'s mounts, longest mount path first.
    fn mounts(&self, c: &Container) -> Vec<(String, PathBuf)> {
        let mut mounts: Vec<(String, PathBuf)> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| {
                assert!(
                    m.sub_path.as_deref().unwrap_or("").is_empty(),
                    "container {}: subPath mounts are not supported",
                    c.name
                );
                (
                    m.mount_path.trim_end_matches('/').to_owned(),
                    self.volume_dir(&m.name).to_path_buf(),
                )
            })
            .collect();
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        mounts
    }

    /// `0.0.0.0:PORT` -> `127.0.0.1:<free port>` (remembered as the pod's PORT).
    fn listen_addr(&mut self, arg: &str) -> Option<String> {
        let addr: SocketAddr = arg.parse().ok()?;
        if !addr.ip().is_unspecified() {
            return None;
        }
        let local = free_local_addr();
        self.ports.insert(addr.port(), local.port());
        Some(local.to_string())
    }

    /// Init container `c`: only the shim's installation is known (`hsm-sidecar install-shim
    /// --to DIR`); it runs the built `hsm-sidecar` with `--from` the built shim (the image's file
    /// system is not emulated).
    fn run_init(&mut self, c: &Container) -> Ran {
        let ran = self.prepare(c);
        let is_install = is_sidecar(c) && ran.argv.len() == 4 && ran.argv[1] == "install-shim" && ran.argv[2] == "--to";
        assert!(
            is_install,
            "init container {}: this stand-in only knows `hsm-sidecar install-shim --to DIR`, not {:?}",
            c.name, ran.argv
        );
        let dir = PathBuf::from(&ran.argv[3]);
        assert!(
            dir.starts_with(&self.root),
            "init container {}: {} is not on a volume (the image's root filesystem is not emulated)",
            c.name,
            dir.display()
        );
        let shim = paths::profile_dir().join(SHIM_FILE);
        let out = Command::new(paths::sidecar_bin())
            .args(&ran.argv[1..])
            .arg("--from")
            .arg(&shim)
            .env_clear()
            .env("PATH", PATH)
            .output()
            .unwrap_or_else(|e| panic!("init container {}: running hsm-sidecar install-shim: {e}", c.name));
        assert!(
            out.status.success(),
            "init container {}: `{}` failed ({}):\n{}",
            c.name,
            ran.argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        ran
    }

    /// Starts sidecar `c` and waits (60 s) for its readiness probe.
    fn start_sidecar(&mut self, api: &ApiServer, c: &Container, extra_env: &[(&str, OsString)]) -> Ran {
        let ran = self.prepare(c);
        let log = self.root.join(format!("{}.log", c.name));
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let sidecar = paths::sidecar_bin();
        let child = Command::new(&sidecar)
            .args(&ran.argv[1..])
            .env_clear()
            .env("PATH", PATH)
            .env("RUST_LOG", "info")
            .envs(&ran.env)
            .envs(extra_env.iter().map(|(k, v)| (*k, v)))
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("cloning a file handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("container {}: spawning {}: {e}", c.name, sidecar.display()));
        api.register_child(child.id(), &sidecar);
        self.daemons.push((c.name.clone(), child, log.clone()));
        self.wait_ready(c, &log);
        ran
    }

    /// Polls `c`'s readiness probe until it passes: a TCP connect, or the exec probe
    /// `hsm-sidecar probe --addr 127.0.0.1:PORT ...` (before 1.24), run with the built binary
    /// against PORT's loopback stand-in.
    fn wait_ready(&mut self, c: &Container, log: &Path) {
        let probe = c.readiness_probe.as_ref();
        let ready: Box<dyn Fn() -> bool> = if let Some(tcp) = probe.and_then(|p| p.tcp_socket.as_ref()) {
            let port = match &tcp.port {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => *p as u16,
                other => panic!("container {}: a TCP readiness probe on a named port {other:?}", c.name),
            };
            let addr = SocketAddr::from(([127, 0, 0, 1], self.local_port(c, port)));
            Box::new(move || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
        } else if let Some(exec) = probe.and_then(|p| p.exec.as_ref()) {
            let mut argv = exec.command.clone().unwrap_or_default();
            assert!(
                argv.len() > 2 && argv[0] == "hsm-sidecar" && argv[1] == "probe",
                "container {}: this stand-in only knows the exec probe `hsm-sidecar probe ...`, not {argv:?}",
                c.name
            );
            for arg in &mut argv {
                if let Some(port) = arg.strip_prefix("127.0.0.1:").and_then(|p| p.parse::<u16>().ok()) {
                    *arg = format!("127.0.0.1:{}", self.local_port(c, port));
                }
            }
            let sidecar = paths::sidecar_bin();
            Box::new(move || {
                Command::new(&sidecar)
                    .args(&argv[1..])
                    .env_clear()
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
        } else {
            panic!(
                "container {}: expected a TCP or exec readiness probe, found {probe:?}",
                c.name
            );
        };
        let start = Instant::now();
        while !ready() {
            let exited = self
                .daemons
                .last_mut()
                .and_then(|(_, child, _)| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "container {} exited ({status}) before its readiness probe passed; its log:\n{}",
                    c.name,
                    tail_file(log, 40)
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "container {}: readiness probe {probe:?} failed for 60 s; log:\n{}",
                c.name,
                tail_file(log, 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The loopback port standing in for pod port `port`, which `c` must listen on.
    fn local_port(&self, c: &Container, port: u16) -> u16 {
        self.port(port)
            .unwrap_or_else(|| panic!("container {}: the probe's port {port} is not one it listens on", c.name))
    }

    /// The last lines of sidecar `name`'s output.
    pub fn sidecar_log(&self, name: &str) -> String {
        self.daemons
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, log)| tail_file(log, 40))
            .unwrap_or_default()
    }
}

impl Drop for RunningPod {
    fn drop(&mut self) {
        for (name, child, log) in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "--- pod {} container {name}, last lines ---\n{}",
                    self.name,
                    tail_file(log, 40)
                );
            }
        }
        // Always: the credential volume holds the PIN (the logs were printed above).
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Rewrites every occurrence of a mount path (as a whole path component prefix) in `s` to its
/// directory, in one pass: a rewritten part is never rewritten again.
pub fn remap(s: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut out = String::new();
    let mut i = 0;
    'scan: while i < s.len() {
        let rest = &s[i..];
        let starts_path =
            rest.starts_with('/') && !s[..i].ends_with(|c: char| c.is_alphanumeric() || "._-/".contains(c));
        if starts_path {
            for (from, to) in mounts {
                let Some(after) = rest.strip_prefix(from.as_str()) else {
                    continue;
                };
                if after
                    .chars()
                    .next()
                    .is_none_or(|c| c == '/' || !(c.is_alphanumeric() || "._-".contains(c)))
                {
                    out.push_str(path_str(to));
                    i += from.len();
                    continue 'scan;
                }
            }
        }
        let c = rest.chars().next().expect("i < s.len()");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Kubernetes' `$(VAR)` expansion (`$$` escapes; unknown references stay as they are).
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|b| b.split_once(')')) {
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Waits for `child` (at most `limit`, then kills it: `None`), collecting its output.
fn wait_output(child: Child, limit: Duration) -> Option<Output> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.ok(),
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            None
        }
    }
}
