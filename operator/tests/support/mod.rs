//! The harness of the operator's integration tests: a real kube-apiserver per test
//! ([`apiserver`]), `hsm-operator run` under its least-privilege ServiceAccount ([`operator`]),
//! a SoftHSM token as the HSM ([`softhsm`]), a kubelet stand-in that runs enrollment Jobs
//! ([`kubelet`]), and [`Fixture`], which ties them to one namespace and waits on real state
//! read back from the API server.
//!
//! Each test binary includes this module (`mod support;`) and uses a part of it.
#![allow(dead_code)]

pub mod apiserver;
pub mod chart;
pub mod injection;
pub mod kubelet;
pub mod libconfig;
pub mod operator;
pub mod paths;
pub mod pod_runner;
pub mod softhsm;
pub mod webhook_operator;

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};

use apiserver::ApiServer;
use operator::Operator;
use softhsm::SoftHsmToken;

/// The key of the setup-password Secrets the tests create.
pub const SETUP_KEY: &str = "setup-password";
/// The sidecar image the partitions name (never pulled: the kubelet stand-in runs the built binary).
pub const SIDECAR_IMAGE: &str = "registry.example/hsm-sidecar:test";
/// Default limit for anything the operator should do promptly.
pub const WAIT: Duration = Duration::from_secs(90);

/// The `HsmPartition` API resource (the tests speak to it as JSON, independent of the
/// operator's Rust types, so they check the contract of CONTRACT.md and the CRD as served).
pub fn partition_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("hsmbridge.io", "v1alpha1", "HsmPartition"),
        "hsmpartitions",
    )
}

/// A `pkcs11` partition on a SoftHSM token `label`, enrolled with `pkcs11-init-pin` from the
/// Secret `<name>-setup`.
pub fn pkcs11_partition(name: &str, label: &str) -> Value {
    json!({
        "apiVersion": "hsmbridge.io/v1alpha1",
        "kind": "HsmPartition",
        "metadata": {"name": name},
        "spec": {
            "provider": "pkcs11",
            "sidecar": {"image": SIDECAR_IMAGE, "modulePath": paths::softhsm_module().display().to_string()},
            "token": {"label": label},
            "enrollment": {
                "method": "pkcs11-init-pin",
                "setupPasswordSecretRef": {"name": format!("{name}-setup"), "key": SETUP_KEY}
            },
            "pinMode": "managed"
        }
    })
}

/// A `primus` partition: two cluster members, user `PAYMENTS`, slot 3, enrolled with `ppin`.
pub fn primus_partition(name: &str) -> Value {
    json!({
        "apiVersion": "hsmbridge.io/v1alpha1",
        "kind": "HsmPartition",
        "metadata": {"name": name},
        "spec": {
            "provider": "primus",
            "sidecar": {"image": SIDECAR_IMAGE, "modulePath": "/usr/local/primus/lib/libprimusP11.so"},
            "cluster": {
                "members": [
                    {"host": "hsm1.example.net", "port": 2310, "priority": 0},
                    {"host": "hsm2.example.net", "port": 2311, "priority": 1}
                ],
                "user": "PAYMENTS",
                "slotId": 3,
                "timeouts": {"waitDelaySeconds": 5, "waitMaxTries": 3}
            },
            "enrollment": {
                "method": "ppin",
                "setupPasswordSecretRef": {"name": format!("{name}-setup"), "key": SETUP_KEY},
                "ppinPath": "/usr/local/primus/bin/ppin"
            },
            "pinMode": "managed"
        }
    })
}

/// One status condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub status: String,
    pub reason: String,
    pub message: String,
    pub observed_generation: Option<i64>,
}

/// The condition `type_` of a partition (as JSON), if present.
pub fn condition(partition: &Value, type_: &str) -> Option<Condition> {
    let conds = partition.pointer("/status/conditions")?.as_array()?;
    let c = conds.iter().find(|c| c["type"] == type_)?;
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Some(Condition {
        status: s("status"),
        reason: s("reason"),
        message: s("message"),
        observed_generation: c["observedGeneration"].as_i64(),
    })
}

/// `type=status/reason` for every condition: for messages.
pub fn conditions_summary(partition: &Value) -> String {
    partition
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    format!(
                        "{}={}/{} ({})",
                        c["type"].as_str().unwrap_or("?"),
                        c["status"].as_str().unwrap_or("?"),
                        c["reason"].as_str().unwrap_or("?"),
                        c["message"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| "no conditions".to_owned())
}

/// An integer at a JSON pointer (e.g. `/status/enrollment/attempts`).
pub fn int_at(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// sha256 of `text`, hex (with the system's `sha256sum`: no hashing crate just for this).
pub fn sha256_hex(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writing to sha256sum");
    let out = child.wait_with_output().expect("sha256sum output");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A real API server, one namespace in it, a client as the admin, and (usually) a running
/// operator.
pub struct Fixture {
    pub api: ApiServer,
    pub client: kube::Client,
    pub ns: String,
    operator: Option<Operator>,
}

impl Fixture {
    /// API server + namespace `ns` + a running, healthy operator.
    pub async fn new(ns: &str) -> Fixture {
        let mut fx = Self::without_operator(ns).await;
        fx.start_operator();
        fx
    }

    /// API server + namespace `ns`; no operator yet.
    pub async fn without_operator(ns: &str) -> Fixture {
        let api = tokio::task::spawn_blocking(ApiServer::start)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let client = api.admin_client().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let body: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace JSON");
        namespaces
            .create(&PostParams::default(), &body)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {ns}: {e}"));
        Fixture {
            api,
            client,
            ns: ns.to_owned(),
            operator: None,
        }
    }

    /// Starts `hsm-operator run` (replacing a stopped one) and waits for `/healthz`.
    pub fn start_operator(&mut self) {
        if let Some(op) = &self.operator {
            assert!(
                op.exit_status().is_some(),
                "an operator is already running (kill it first)"
            );
        }
        let op = Operator::start(&self.api);
        op.wait_healthy(Duration::from_secs(30));
        self.operator = Some(op);
    }

    /// Starts `hsm-operator run EXTRA...` (no default flags: pass `--no-leader-election` for a
    /// single replica) and waits for `/healthz`.
    pub fn start_operator_with(&mut self, extra: &[&str]) {
        assert!(
            self.operator.as_ref().is_none_or(|op| op.exit_status().is_some()),
            "an operator is already running (kill it first)"
        );
        let op = Operator::start_with(&self.api, extra);
        op.wait_healthy(Duration::from_secs(30));
        self.operator = Some(op);
    }

    /// SIGKILLs the operator.
    pub fn kill_operator(&mut self) {
        if let Some(op) = &self.operator {
            op.kill();
        }
    }

    pub fn operator(&self) -> &Operator {
        self.operator.as_ref().expect("no operator started in this fixture")
    }

    // ---- API access ---------------------------------------------------------------------

    pub fn partitions(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, &partition_resource())
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates a partition from JSON; panics with the API server's answer if it is refused.
    pub async fn create_partition(&self, body: &Value) -> Value {
        let obj: DynamicObject = serde_json::from_value(body.clone()).expect("partition JSON");
        let created = self
            .partitions()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("creating HsmPartition {}: {e}", body["metadata"]["name"]));
        serde_json::to_value(created).expect("partition to JSON")
    }

    /// The partition as JSON, `None` once it is gone.
    pub async fn partition(&self, name: &str) -> Option<Value> {
        let obj = self
            .partitions()
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("reading HsmPartition {name}: {e}"));
        obj.map(|o| serde_json::to_value(o).expect("partition to JSON"))
    }

    /// Creates the setup-password Secret `name` (key [`SETUP_KEY`]); returns its resourceVersion.
    pub async fn create_setup_secret(&self, name: &str, password: &str) -> String {
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "type": "Opaque",
            "stringData": {SETUP_KEY: password}
        }))
        .expect("secret JSON");
        let created = self
            .api::<Secret>()
            .create(&PostParams::default(), &s)
            .await
            .unwrap_or_else(|e| panic!("creating Secret {name}: {e}"));
        created.metadata.resource_version.unwrap_or_default()
    }

    /// Replaces the setup password (a new resourceVersion); returns the new resourceVersion.
    pub async fn update_setup_secret(&self, name: &str, password: &str) -> String {
        let patch = json!({"data": {SETUP_KEY: ByteString(password.as_bytes().to_vec())}});
        let s = self
            .api::<Secret>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("updating Secret {name}: {e}"));
        s.metadata.resource_version.unwrap_or_default()
    }

    /// The value of `key` in Secret `name` (`None` if the Secret or the key is missing).
    pub async fn secret_value(&self, name: &str, key: &str) -> Option<Vec<u8>> {
        let s = self
            .api::<Secret>()
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("reading Secret {name}: {e}"))?;
        s.data.unwrap_or_default().get(key).map(|b| b.0.clone())
    }

    /// The enrollment Jobs of partition `name` (`<name>-enroll-<hash>`), oldest first.
    pub async fn enrollment_jobs(&self, name: &str) -> Vec<Job> {
        let prefix = format!("{name}-enroll-");
        let mut jobs: Vec<Job> = self
            .api::<Job>()
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("listing Jobs: {e}"))
            .items
            .into_iter()
            .filter(|j| j.metadata.name.as_deref().is_some_and(|n| n.starts_with(&prefix)))
            .collect();
        jobs.sort_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp));
        jobs
    }

    /// Waits for an enrollment Job of partition `name` not in `known`; returns its name.
    pub async fn wait_for_new_job(&self, name: &str, known: &[String]) -> String {
        self.eventually(
            &format!("a new enrollment Job for {name} (known: {known:?})"),
            WAIT,
            || async move {
                let jobs = self.enrollment_jobs(name).await;
                let names: Vec<String> = jobs.iter().filter_map(|j| j.metadata.name.clone()).collect();
                match names.iter().find(|n| !known.contains(n)) {
                    Some(n) => Ok(n.clone()),
                    None => {
                        let p = self.partition(name).await;
                        Err(format!(
                            "jobs: {names:?}; partition: {}",
                            p.as_ref().map(conditions_summary).unwrap_or_else(|| "gone".into())
                        ))
                    }
                }
            },
        )
        .await
    }

    /// Waits until condition `type_` of partition `name` has `status` (and `reason`, if given);
    /// returns the partition.
    pub async fn wait_condition(&self, name: &str, type_: &str, status: &str, reason: Option<&str>) -> Value {
        let want = format!(
            "{type_}={status}{}",
            reason.map(|r| format!("/{r}")).unwrap_or_default()
        );
        self.eventually(
            &format!("HsmPartition {}/{name} to have {want}", self.ns),
            WAIT,
            || async move {
                let p = self
                    .partition(name)
                    .await
                    .ok_or_else(|| "the partition does not exist".to_owned())?;
                match condition(&p, type_) {
                    Some(c) if c.status == status && reason.is_none_or(|r| c.reason == r) => Ok(p),
                    _ => Err(format!(
                        "conditions: {}; status: {}",
                        conditions_summary(&p),
                        p.get("status").unwrap_or(&Value::Null)
                    )),
                }
            },
        )
        .await
    }

    /// Polls `f` every 250 ms until it returns Ok or `limit` passes; then panics with `what`, the
    /// last error, whether the operator is still running, and the tail of its log.
    /// Closures are `|| async move { ... }` over references.
    pub async fn eventually<T, F, Fut>(&self, what: &str, limit: Duration, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let start = Instant::now();
        loop {
            let last = match f().await {
                Ok(v) => return v,
                Err(e) => e,
            };
            if start.elapsed() > limit {
                panic!(
                    "timed out after {limit:?} waiting for {what}\nlast seen: {last}\n{}",
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The operator's state and log tail, for failure messages.
    pub fn diagnostics(&self) -> String {
        match &self.operator {
            None => "no operator running".to_owned(),
            Some(op) => format!(
                "operator: {}\n--- operator log (last 40 lines) ---\n{}",
                op.exit_status()
                    .map(|s| format!("exited ({s})"))
                    .unwrap_or_else(|| "running".to_owned()),
                op.log_tail(40)
            ),
        }
    }

    /// Runs the enrollment Job `job` against `token` (see [`kubelet::run_job`]).
    pub async fn play_enrollment(&self, job: &str, token: &SoftHsmToken) -> kubelet::JobRun {
        kubelet::run_job(
            &self.api,
            &self.client,
            &self.ns,
            job,
            &[("SOFTHSM2_CONF", token.conf().as_os_str().to_owned())],
        )
        .await
    }

    /// Sets label `hsmbridge-test/touch=<n>` on the partition: a change that triggers a
    /// reconcile without changing the spec.
    pub async fn touch(&self, name: &str, n: u32) {
        let patch = json!({"metadata": {"labels": {"hsmbridge-test/touch": n.to_string()}}});
        self.partitions()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("labelling HsmPartition {name}: {e}"));
    }

    /// Events whose involved object is HsmPartition `name`.
    pub async fn events_for(&self, name: &str) -> Vec<Event> {
        self.api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("listing Events: {e}"))
            .items
            .into_iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some("HsmPartition")
                    && e.involved_object.name.as_deref() == Some(name)
            })
            .collect()
    }

    /// The operator's `/metrics` text.
    pub fn metrics(&self) -> String {
        match self.operator().http_get("/metrics") {
            Ok((200, body)) => body,
            other => panic!("GET /metrics: {other:?}\n{}", self.diagnostics()),
        }
    }

    /// `kubectl auth can-i VERB RESOURCE --as system:serviceaccount:<ns>:<sa>` in the namespace.
    pub fn can_i(&self, sa: &str, verb: &str, resource: &str) -> bool {
        let who = format!("system:serviceaccount:{}:{sa}", self.ns);
        let out = self
            .api
            .kubectl(&["auth", "can-i", verb, resource, "-n", &self.ns, "--as", &who], None);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    }
}
