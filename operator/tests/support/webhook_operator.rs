//! `hsm-operator run` serving the injection webhook, as the chart's Deployment runs it but
//! outside the cluster: the API server calls it by URL (`webhook.url`), and it authenticates
//! with the token of the chart's ServiceAccount `hsmbridge-system/hsm-operator`, so the chart's
//! RBAC is what authorizes it (a missing permission shows up here).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::Api;

use super::apiserver::{path_str, tail_file, ApiServer, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT};
use super::operator::{free_local_addr, http_get};
use super::paths;

/// The MutatingWebhookConfiguration of the chart.
pub const WEBHOOK_CONFIGURATION: &str = "hsmbridge-injector";
/// The webhook's path on the operator.
pub const WEBHOOK_PATH: &str = "/mutate-pods";

pub struct WebhookOperator {
    child: Child,
    pub metrics_addr: SocketAddr,
    pub webhook_addr: SocketAddr,
    log: PathBuf,
}

impl WebhookOperator {
    /// A free loopback address for the webhook, to put into the chart's `webhook.url` before
    /// the operator starts.
    pub fn pick_addr() -> SocketAddr {
        free_local_addr()
    }

    /// `https://<addr>/mutate-pods`.
    pub fn url(addr: SocketAddr) -> String {
        format!("https://{addr}{WEBHOOK_PATH}")
    }

    /// Starts `hsm-operator run --webhook-addr ADDR --webhook-url URL --shim-image IMAGE
    /// --leader-election-namespace hsmbridge-system EXTRA...` with `POD_NAMESPACE=hsmbridge-system`
    /// and the chart's ServiceAccount token (the ServiceAccount must exist: install the chart first).
    pub fn start(api: &ApiServer, webhook_addr: SocketAddr, shim_image: &str, extra: &[&str]) -> WebhookOperator {
        let kubeconfig = api.dir().join("chart-operator.kubeconfig");
        api.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, &kubeconfig);
        let log = api.dir().join("webhook-operator.log");
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let metrics_addr = free_local_addr();
        let child = Command::new(paths::operator_bin())
            .args(["run", "--metrics-addr", &metrics_addr.to_string()])
            .args(["--leader-election-namespace", OPERATOR_NAMESPACE])
            .args(["--webhook-addr", &webhook_addr.to_string()])
            .args(["--webhook-url", &Self::url(webhook_addr)])
            .args(["--shim-image", shim_image])
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env(
                "RUST_LOG",
                std::env::var("HSMBRIDGE_OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("cloning the log file handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", paths::operator_bin().display()));
        api.register_child(child.id(), &paths::operator_bin());
        WebhookOperator {
            child,
            metrics_addr,
            webhook_addr,
            log,
        }
    }

    /// Waits until the operator has patched a caBundle into `hsmbridge-injector` and its webhook
    /// answers HTTPS (verified against that caBundle, for the URL's host); returns the caBundle (PEM).
    pub async fn wait_serving(&mut self, api: &ApiServer, client: &kube::Client, limit: Duration) -> String {
        let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let ca_file = api.dir().join("webhook-ca.pem");
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "hsm-operator exited ({status}) before its webhook served; its log:\n{}",
                    self.log_tail(60)
                );
            }
            let last = match self.serving(&configs, &ca_file).await {
                Ok(bundle) => return bundle,
                Err(why) => why,
            };
            if start.elapsed() > limit {
                panic!(
                    "the webhook did not serve within {limit:?} (last: {last}); operator log:\n{}",
                    self.log_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The caBundle, once set and good for an HTTPS GET of /healthz; else why not.
    async fn serving(
        &self,
        configs: &Api<MutatingWebhookConfiguration>,
        ca_file: &std::path::Path,
    ) -> Result<String, String> {
        let config = configs
            .get_opt(WEBHOOK_CONFIGURATION)
            .await
            .map_err(|e| format!("reading {WEBHOOK_CONFIGURATION}: {e}"))?
            .ok_or_else(|| format!("no MutatingWebhookConfiguration {WEBHOOK_CONFIGURATION}"))?;
        let bundle = config
            .webhooks
            .unwrap_or_default()
            .first()
            .and_then(|w| w.client_config.ca_bundle.clone())
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .filter(|b| !b.is_empty())
            .ok_or("no caBundle yet")?;
        std::fs::write(ca_file, &bundle).unwrap_or_else(|e| panic!("writing {}: {e}", ca_file.display()));
        match self.https_get(ca_file, "/healthz")? {
            body if body.trim() == "ok" => Ok(bundle),
            body => Err(format!("GET /healthz answered {body:?}")),
        }
    }

    /// `curl --cacert CA https://<webhook addr>PATH` (TLS verified, host name 127.0.0.1 checked).
    fn https_get(&self, ca: &std::path::Path, path: &str) -> Result<String, String> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert", path_str(ca)])
            .arg(format!("https://{}{path}", self.webhook_addr))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running curl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("curl: {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The operator's `/metrics` text.
    pub fn metrics(&self) -> String {
        match http_get(self.metrics_addr, "/metrics") {
            Ok((200, body)) => body,
            other => panic!("GET /metrics: {other:?}\n{}", self.log_tail(40)),
        }
    }

    pub fn log_tail(&self, n: usize) -> String {
        tail_file(&self.log, n)
    }

    /// SIGTERM (what deleting the Deployment does to its pods); waits up to 10 s, then SIGKILL.
    pub fn terminate(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WebhookOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- hsm-operator (webhook) log, last 60 lines ---\n{}",
                self.log_tail(60)
            );
        }
    }
}
