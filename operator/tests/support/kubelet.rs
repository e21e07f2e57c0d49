//! Playing the kubelet (and the Job controller) for an enrollment Job: the test environment has
//! neither, so Jobs never get pods. [`run_job`] reads the Job back from the API server, builds
//! the container's command line and environment exactly as the pod spec says, materializes its
//! Secret and ConfigMap volumes as files under a temporary root (rewriting the mount paths in
//! argv and env), hands the process a kubeconfig with the token of the Job's ServiceAccount (so
//! the Role the operator made is what authorizes it), runs the built `hsm-sidecar` in place of
//! the image's, and finally records the outcome in the Job's status as the Job controller would.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::apiserver::ApiServer;
use super::paths;
use super::pod_runner::{expand, remap};

/// How long the enrollment process may run before it is killed.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// One run of a Job's container.
#[derive(Debug)]
pub struct JobRun {
    pub job: String,
    /// `None` if it ran out of time and was killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// The command line as the pod spec gives it (before remapping paths).
    pub argv: Vec<String>,
    /// The container's environment as the pod spec gives it.
    pub env: BTreeMap<String, String>,
}

impl JobRun {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// Exit status and output, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "job {} ran `{}`: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.job,
            self.argv.join(" "),
            self.status
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("killed after {RUN_LIMIT:?}")),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs the single container of Job `ns/name` locally; `extra_env` is added to the container's
/// environment (e.g. `SOFTHSM2_CONF`, which the image would carry).
pub async fn run_job(
    api: &ApiServer,
    client: &kube::Client,
    ns: &str,
    name: &str,
    extra_env: &[(&str, OsString)],
) -> JobRun {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let job = jobs
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("reading Job {ns}/{name}: {e}"));
    let pod: PodSpec = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_else(|| panic!("Job {ns}/{name} has no pod template spec"));
    assert!(
        pod.init_containers.as_ref().is_none_or(|c| c.is_empty()),
        "Job {ns}/{name} has init containers; this kubelet stand-in runs only one container"
    );
    assert_eq!(
        pod.containers.len(),
        1,
        "Job {ns}/{name} must have exactly one container: {:?}",
        pod.containers
    );
    let container = pod.containers[0].clone();
    let pod_name = format!("{name}-play0");

    let root = paths::fresh_temp_dir("kubelet");
    let mounts = materialize_volumes(client, ns, name, &pod, &container, &root).await;
    let env = container_env(client, ns, &pod_name, &pod, &container).await;
    let argv = container_argv(&container, &env);
    // One pass, whole path components only (a mounted /tmp must not rewrite the host paths
    // the other mounts were mapped to).
    let remap = |s: &str| remap(s, &mounts);

    let program = argv
        .first()
        .unwrap_or_else(|| panic!("Job {ns}/{name}: the container has no command"));
    assert!(
        program == "hsm-sidecar" || program.ends_with("/hsm-sidecar"),
        "Job {ns}/{name} runs {program:?}; expected the image's hsm-sidecar (command {argv:?})"
    );
    let sa = pod.service_account_name.clone().unwrap_or_else(|| "default".to_owned());
    let kubeconfig = root.join("job.kubeconfig");
    api.service_account_kubeconfig(ns, &sa, &kubeconfig);

    let mut cmd = Command::new(paths::sidecar_bin());
    cmd.args(argv[1..].iter().map(|a| remap(a)))
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", &root)
        .env("HOSTNAME", &pod_name)
        .env("RUST_LOG", "info");
    for (k, v) in &env {
        cmd.env(k, remap(v));
    }
    cmd.env("KUBECONFIG", &kubeconfig);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = rfc3339_now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", paths::sidecar_bin().display()));
    api.register_child(child.id(), &paths::sidecar_bin());
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || wait_with_limit(child, RUN_LIMIT))
        .await
        .expect("the job runner thread panicked");
    let finished = rfc3339_now();
    let _ = std::fs::remove_dir_all(&root);

    record_job_status(&jobs, name, status.is_some_and(|s| s.success()), &started, &finished).await;
    JobRun {
        job: name.to_owned(),
        status,
        stdout,
        stderr,
        argv,
        env,
    }
}

/// Writes each mounted Secret / ConfigMap volume under `root` (mode per item or defaultMode),
/// returning (container mount path, host path), longest mount path first.
async fn materialize_volumes(
    client: &kube::Client,
    ns: &str,
    job: &str,
    pod: &PodSpec,
    container: &Container,
    root: &std::path::Path,
) -> Vec<(String, PathBuf)> {
    let volumes = pod.volumes.clone().unwrap_or_default();
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.clone().unwrap_or_default() {
        assert!(
            mount.sub_path.as_deref().unwrap_or("").is_empty(),
            "Job {ns}/{job}: subPath mounts are not supported by this kubelet stand-in ({mount:?})"
        );
        let vol = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .unwrap_or_else(|| panic!("Job {ns}/{job}: volumeMount {:?} names no volume", mount.name));
        let host = root.join(mount.mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&host).unwrap_or_else(|e| panic!("creating {}: {e}", host.display()));
        if let Some(src) = &vol.secret {
            let secret_name = src.secret_name.clone().unwrap_or_default();
            let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
            match secrets.get_opt(&secret_name).await.unwrap_or_else(|e| panic!("reading Secret {ns}/{secret_name}: {e}")) {
                Some(secret) => {
                    let data: BTreeMap<String, Vec<u8>> =
                        secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                    let items = src.items.clone().map(|items| items.into_iter().map(|i| (i.key, i.path, i.mode)).collect());
                    write_items(ns, job, &secret_name, &host, &data, items, src.default_mode.unwrap_or(0o644));
                }
                None if src.optional == Some(true) => {}
                None => panic!(
                    "Job {ns}/{job} mounts Secret {secret_name:?}, which does not exist: a kubelet would keep the pod in ContainerCreating"
                ),
            }
        } else if let Some(src) = &vol.config_map {
            let cm_name = src.name.clone();
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            match cms.get_opt(&cm_name).await.unwrap_or_else(|e| panic!("reading ConfigMap {ns}/{cm_name}: {e}")) {
                Some(cm) => {
                    let mut data: BTreeMap<String, Vec<u8>> =
                        cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                    data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
                    let items = src.items.clone().map(|items| items.into_iter().map(|i| (i.key, i.path, i.mode)).collect());
                    write_items(ns, job, &cm_name, &host, &data, items, src.default_mode.unwrap_or(0o644));
                }
                None if src.optional == Some(true) => {}
                None => panic!(
                    "Job {ns}/{job} mounts ConfigMap {cm_name:?}, which does not exist: a kubelet would keep the pod in ContainerCreating"
                ),
            }
        } else if vol.empty_dir.is_none() {
            panic!(
                "Job {ns}/{job}: volume {:?} is of a kind this kubelet stand-in does not support: {vol:?}",
                vol.name
            );
        } else if mount.mount_path.trim_end_matches('/') == "/tmp" {
            // A scratch /tmp (the Job's root filesystem is read-only): the host's /tmp serves,
            // and paths the test put there (a fake ppin) stay as they are.
            continue;
        }
        mounts.push((mount.mount_path.trim_end_matches('/').to_owned(), host));
    }
    mounts.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    mounts
}

#[allow(clippy::type_complexity)]
fn write_items(
    ns: &str,
    job: &str,
    source: &str,
    dir: &std::path::Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<Vec<(String, String, Option<i32>)>>,
    default_mode: i32,
) {
    let items = items.unwrap_or_else(|| data.keys().map(|k| (k.clone(), k.clone(), None)).collect());
    for (key, rel, mode) in items {
        let bytes = data.get(&key).unwrap_or_else(|| {
            panic!(
                "Job {ns}/{job}: {source:?} has no key {key:?} (keys: {:?})",
                data.keys()
            )
        });
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        let mode = mode.unwrap_or(default_mode) as u32;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    }
}

/// The container's environment: `value` (with `$(VAR)` expansion), `valueFrom` field,
/// Secret and ConfigMap references, and `envFrom`.
async fn container_env(
    client: &kube::Client,
    ns: &str,
    pod_name: &str,
    pod: &PodSpec,
    container: &Container,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for from in container.env_from.clone().unwrap_or_default() {
        if let Some(r) = from.secret_ref {
            let s = secrets
                .get(&r.name)
                .await
                .unwrap_or_else(|e| panic!("envFrom Secret {}: {e}", r.name));
            for (k, v) in s.data.unwrap_or_default() {
                env.insert(
                    format!("{}{k}", from.prefix.clone().unwrap_or_default()),
                    String::from_utf8_lossy(&v.0).into_owned(),
                );
            }
        }
        if let Some(r) = from.config_map_ref {
            let c = cms
                .get(&r.name)
                .await
                .unwrap_or_else(|e| panic!("envFrom ConfigMap {}: {e}", r.name));
            for (k, v) in c.data.unwrap_or_default() {
                env.insert(format!("{}{k}", from.prefix.clone().unwrap_or_default()), v);
            }
        }
    }
    for var in container.env.clone().unwrap_or_default() {
        let value = if let Some(v) = var.value {
            expand(&v, &env)
        } else if let Some(src) = var.value_from {
            if let Some(f) = src.field_ref {
                match f.field_path.as_str() {
                    "metadata.namespace" => ns.to_owned(),
                    "metadata.name" => pod_name.to_owned(),
                    "spec.serviceAccountName" => pod.service_account_name.clone().unwrap_or_default(),
                    other => panic!(
                        "env {}: fieldRef {other:?} is not supported by this kubelet stand-in",
                        var.name
                    ),
                }
            } else if let Some(r) = src.secret_key_ref {
                let s = secrets
                    .get(&r.name)
                    .await
                    .unwrap_or_else(|e| panic!("env {}: Secret {}: {e}", var.name, r.name));
                let v = s
                    .data
                    .unwrap_or_default()
                    .get(&r.key)
                    .map(|b| b.0.clone())
                    .unwrap_or_default();
                String::from_utf8_lossy(&v).into_owned()
            } else if let Some(r) = src.config_map_key_ref {
                let c = cms
                    .get(&r.name)
                    .await
                    .unwrap_or_else(|e| panic!("env {}: ConfigMap {}: {e}", var.name, r.name));
                c.data.unwrap_or_default().get(&r.key).cloned().unwrap_or_default()
            } else {
                panic!(
                    "env {}: valueFrom kind not supported by this kubelet stand-in",
                    var.name
                )
            }
        } else {
            String::new()
        };
        env.insert(var.name, value);
    }
    env
}

/// `command` + `args`, with `$(VAR)` references expanded as the kubelet does.
fn container_argv(container: &Container, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut argv: Vec<String> = container.command.clone().unwrap_or_default();
    if argv.is_empty() {
        // The image's entrypoint: the sidecar images run hsm-sidecar.
        argv.push("hsm-sidecar".to_owned());
    }
    argv.extend(container.args.clone().unwrap_or_default());
    argv.iter().map(|a| expand(a, env)).collect()
}

fn wait_with_limit(mut child: std::process::Child, limit: Duration) -> (Option<ExitStatus>, String, String) {
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    (status, out.join().unwrap_or_default(), err.join().unwrap_or_default())
}

/// What the Job controller would write once the pod ended (backoffLimit 0: one pod, final).
async fn record_job_status(jobs: &Api<Job>, name: &str, succeeded: bool, started: &str, finished: &str) {
    let status = if succeeded {
        json!({"status": {
            "startTime": started, "completionTime": finished, "succeeded": 1, "active": 0,
            "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": finished, "lastTransitionTime": finished}]
        }})
    } else {
        json!({"status": {
            "startTime": started, "failed": 1, "active": 0,
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                            "message": "Job has reached the specified backoff limit",
                            "lastProbeTime": finished, "lastTransitionTime": finished}]
        }})
    };
    jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("recording the outcome in Job {name}'s status: {e}"));
}

/// The current UTC time as RFC 3339 (`2006-01-02T15:04:05Z`).
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
