//! The setup of the injection end-to-end test and of the webhook benchmark, on a real API
//! server: the chart installed with real helm (webhook by URL, failurePolicy Fail), `hsm-operator
//! run` serving the webhook under the chart's ServiceAccount, and one enrolled, Ready `pkcs11`
//! partition on a SoftHSM token that only the ServiceAccount `app` may use.

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;

use super::chart;
use super::softhsm::SoftHsmToken;
use super::webhook_operator::WebhookOperator;
use super::{pkcs11_partition, Fixture, WAIT};

/// The shim image (never pulled: the pod runner copies the built shim).
pub const SHIM_IMAGE: &str = "registry.example/hsmbridge-shim:test";
/// The operator image of the chart's Deployment (never runs: the test runs the built binary).
pub const OPERATOR_IMAGE: (&str, &str) = ("registry.example/hsm-operator", "test");
pub const PARTITION: &str = "payments";
pub const TOKEN_LABEL: &str = "payments";
/// The only ServiceAccount the partition allows.
pub const APP_SERVICE_ACCOUNT: &str = "app";
/// Stands in for the HSM's one-time setup password (SoftHSM's SO PIN).
const SETUP_PASSWORD: &str = "E2EAA-BBBBB-CCCCC-DDDDD-EEEEE";

/// Dropped in field order: the operator first, the API server last.
pub struct Injection {
    pub operator: WebhookOperator,
    pub token: SoftHsmToken,
    pub fx: Fixture,
    /// The caBundle the operator patched into `hsmbridge-injector` (PEM).
    pub ca_bundle: String,
    /// `https://127.0.0.1:<port>/mutate-pods`.
    pub webhook_url: String,
}

impl Injection {
    /// API server, chart, operator, then the partition in namespace `ns` (enrolled by playing
    /// the kubelet for its Job) and the ServiceAccount `app`. `say` reports progress.
    pub async fn start(ns: &str, say: impl Fn(&str)) -> Injection {
        let fx = Fixture::without_operator(ns).await;
        say(&format!(
            "kube-apiserver {} up; namespace {ns}",
            fx.api.var("KUBE_APISERVER_URL")
        ));

        chart::remove_testenv_manifests(&fx.api);
        let webhook_addr = WebhookOperator::pick_addr();
        let webhook_url = WebhookOperator::url(webhook_addr);
        let (shim_repo, shim_tag) = SHIM_IMAGE.rsplit_once(':').expect("SHIM_IMAGE is repo:tag");
        let values = [
            format!("webhook.url={webhook_url}"),
            "webhook.failurePolicy=Fail".to_owned(),
            format!("injection.shimImage.repository={shim_repo}"),
            format!("injection.shimImage.tag={shim_tag}"),
            format!("operator.image.repository={}", OPERATOR_IMAGE.0),
            format!("operator.image.tag={}", OPERATOR_IMAGE.1),
        ];
        let mut args = Vec::new();
        for v in &values {
            args.extend(["--set", v.as_str()]);
        }
        let out = chart::install(&fx.api, &args);
        say(&format!(
            "helm install {} ({}): {}",
            chart::RELEASE,
            values.join(" "),
            first_line_with(&out, "STATUS")
        ));
        fx.api.kubectl_ok(&[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            &format!("crd/{}", chart::CRD),
        ]);

        // The operator runs outside the cluster, with the webhook flags the test sets and the
        // chart's own --injected-resources (so the chart's default reaches the stored pod).
        let chart_args = fx.api.kubectl_ok(&[
            "-n",
            chart::NAMESPACE,
            "get",
            "deployment",
            "hsm-operator",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].args}",
        ]);
        let chart_args: Vec<String> = serde_json::from_str(&chart_args).expect("the Deployment's args are a JSON list");
        let resources = chart_args
            .iter()
            .position(|a| a == "--injected-resources")
            .and_then(|i| chart_args.get(i + 1))
            .expect("the chart passes --injected-resources by default");
        let mut operator =
            WebhookOperator::start(&fx.api, webhook_addr, SHIM_IMAGE, &["--injected-resources", resources]);
        let ca_bundle = operator.wait_serving(&fx.api, &fx.client, WAIT).await;
        say(&format!(
            "hsm-operator serves {webhook_url}; caBundle patched into hsmbridge-injector"
        ));

        let token = SoftHsmToken::new(TOKEN_LABEL, SETUP_PASSWORD);
        fx.create_setup_secret(&format!("{PARTITION}-setup"), SETUP_PASSWORD)
            .await;
        let mut partition = pkcs11_partition(PARTITION, TOKEN_LABEL);
        partition["spec"]["serviceAccounts"] = json!([APP_SERVICE_ACCOUNT]);
        fx.create_partition(&partition).await;
        let job = fx.wait_for_new_job(PARTITION, &[]).await;
        let run = fx.play_enrollment(&job, &token).await;
        assert_eq!(
            run.code(),
            Some(0),
            "enrollment failed: {}\n--- operator ---\n{}",
            run.describe(),
            operator.log_tail(40)
        );
        fx.wait_condition(PARTITION, "Ready", "True", None).await;
        say(&format!(
            "HsmPartition {ns}/{PARTITION} enrolled (Job {job} played) and Ready"
        ));

        for sa in [APP_SERVICE_ACCOUNT, "other"] {
            let body: ServiceAccount =
                serde_json::from_value(json!({"metadata": {"name": sa}})).expect("ServiceAccount JSON");
            fx.api::<ServiceAccount>()
                .create(&PostParams::default(), &body)
                .await
                .unwrap_or_else(|e| panic!("creating ServiceAccount {sa}: {e}"));
        }
        Injection {
            operator,
            token,
            fx,
            ca_bundle,
            webhook_url,
        }
    }

    pub fn pods(&self) -> Api<Pod> {
        self.fx.api::<Pod>()
    }

    /// Creates `pod` (JSON); the API server's refusal as `Err((HTTP code, message))`.
    pub async fn create_pod(&self, pod: &serde_json::Value) -> Result<Pod, (u16, String)> {
        let pod: Pod = serde_json::from_value(pod.clone()).expect("pod JSON");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) => (s.code, s.message),
                other => (0, other.to_string()),
            })
    }

    /// The pod `name` as stored by the API server.
    pub async fn stored_pod(&self, name: &str) -> Pod {
        self.pods()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading pod {}/{name}: {e}", self.fx.ns))
    }
}

/// A pod in the shape the tests create: label `hsmbridge.io/inject` (unless `labelled` is
/// false), annotation `hsmbridge.io/partition` when `partition` is given, one container `app`.
pub fn app_pod(
    name: &str,
    labelled: bool,
    partition: Option<&str>,
    service_account: &str,
    command: &[&str],
) -> serde_json::Value {
    let labels = if labelled {
        json!({"app": name, "hsmbridge.io/inject": "true"})
    } else {
        json!({"app": name})
    };
    let mut annotations = json!({});
    if let Some(p) = partition {
        annotations["hsmbridge.io/partition"] = json!(p);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "serviceAccountName": service_account,
            "restartPolicy": "Never",
            "containers": [{
                "name": "app",
                "image": "registry.example/app-with-opensc:1",
                "command": command,
                "volumeMounts": [{"name": "work", "mountPath": "/work"}]
            }],
            "volumes": [{"name": "work", "emptyDir": {}}]
        }
    })
}

fn first_line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines().find(|l| l.contains(needle)).unwrap_or("").trim()
}
