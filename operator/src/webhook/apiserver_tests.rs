//! The webhook against a real kube-apiserver (scripts/kube-testenv.sh), registered by URL:
//!
//! ```sh
//! scripts/kube-testenv.sh start /tmp/wh && kubectl --kubeconfig /tmp/wh/kubeconfig apply -f crds/hsmpartition.yaml
//! HSMBRIDGE_WEBHOOK_TESTENV=/tmp/wh cargo test --release -p hsm-operator webhook::apiserver_tests -- --ignored --nocapture
//! ```
//! Writes the stored, mutated pod to `$HSMBRIDGE_WEBHOOK_TESTENV/mutated-pod.yaml`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;

use super::*;
use crate::crd::HsmPartition;

const OPERATOR_NS: &str = "hsmbridge-system";

async fn client(dir: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(format!("{dir}/kubeconfig")).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

async fn ensure_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(e) if crate::error::api_code(&e) == Some(409) => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn partition(client: &Client, ns: &str, name: &str, ready: bool) {
    let api: Api<HsmPartition> = Api::namespaced(client.clone(), ns);
    let p: HsmPartition = serde_json::from_value(json!({
        "apiVersion": "hsmbridge.io/v1alpha1", "kind": "HsmPartition",
        "metadata": {"name": name},
        "spec": {
            "provider": "primus",
            "sidecar": {"image": "registry.example/hsm-sidecar-primus:1.0",
                        "modulePath": "/usr/local/primus/lib/libprimusP11.so"},
            "cluster": {"members": [{"host": "hsm1.example.net"}, {"host": "hsm2.example.net", "priority": 1}],
                        "user": "PAYMENTS"},
            "enrollment": {"method": "ppin",
                           "setupPasswordSecretRef": {"name": format!("{name}-setup"), "key": "setup-password"}},
            "pinMode": "managed",
            "serviceAccounts": ["payments-api"]
        }
    }))
    .expect("partition");
    api.create(&PostParams::default(), &p).await.expect("create partition");
    // No operator runs here: play it, and write the status by hand.
    let (status, reason, message) = if ready {
        ("True", "Ready", "Provider config rendered and credential enrolled")
    } else {
        (
            "False",
            "NotEnrolled",
            "setup password rejected by the HSM (0x80005017); put a new one in Secret pending-setup",
        )
    };
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [{
            "type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"
        }]}})),
    )
    .await
    .expect("status");
}

fn pod(name: &str, labelled: bool, partition: &str) -> Pod {
    let labels = if labelled {
        json!({"hsmbridge.io/inject": "true", "app": name})
    } else {
        json!({"app": name})
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"hsmbridge.io/partition": partition}},
        "spec": {"serviceAccountName": "payments-api",
                 "containers": [{"name": "app", "image": "registry.example/payments-api:1.0",
                                 "command": ["pkcs11-tool", "--module", "$(PKCS11_MODULE_PATH)", "--list-slots"]}]}
    }))
    .expect("pod")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a kube-apiserver: HSMBRIDGE_WEBHOOK_TESTENV=<kube-testenv dir>"]
async fn injects_through_a_real_api_server() {
    let Ok(dir) = std::env::var("HSMBRIDGE_WEBHOOK_TESTENV") else {
        eprintln!("HSMBRIDGE_WEBHOOK_TESTENV not set: skipped");
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter("hsm_operator=debug,info")
        .with_test_writer()
        .try_init();
    let client = client(&dir).await;
    let ns = format!("wh-{}", tls::now() % 100_000);
    ensure_namespace(&client, OPERATOR_NS).await;
    ensure_namespace(&client, &ns).await;

    // The webhook on 127.0.0.1, registered by URL, without a caBundle: the webhook sets it.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let _ = mwcs.delete(WEBHOOK_CONFIGURATION, &Default::default()).await;
    let _ = Api::<Secret>::namespaced(client.clone(), OPERATOR_NS)
        .delete(tls::SECRET_NAME, &Default::default())
        .await;
    let mwc: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": WEBHOOK_CONFIGURATION},
        "webhooks": [{
            "name": "inject.hsmbridge.io",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/mutate-pods")},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "objectSelector": {"matchLabels": {"hsmbridge.io/inject": "true"}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
            "reinvocationPolicy": "Never"
        }]
    }))
    .expect("mwc");
    mwcs.create(&PostParams::default(), &mwc)
        .await
        .expect("create MutatingWebhookConfiguration");

    let mut config = WebhookConfig::new(OPERATOR_NS, "registry.example/hsmbridge-shim:0.1");
    config.tls = TlsMode::SelfManaged {
        secret_name: tls::SECRET_NAME.to_owned(),
        extra_names: vec!["127.0.0.1".to_owned()],
    };
    let metrics = config.metrics.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(client.clone(), config.clone(), listener, async move {
        let _ = stop_rx.await;
    }));

    let bundle = eventually("the caBundle", || {
        let mwcs = mwcs.clone();
        async move {
            let m = mwcs.get(WEBHOOK_CONFIGURATION).await.ok()?;
            m.webhooks?.first()?.client_config.ca_bundle.clone()
        }
    })
    .await;
    let secret = Api::<Secret>::namespaced(client.clone(), OPERATOR_NS)
        .get(tls::SECRET_NAME)
        .await
        .expect("the TLS Secret exists");
    let material = tls::Material::from_secret_data(secret.data.as_ref().expect("data")).expect("material");
    assert_eq!(
        bundle.0,
        material.ca_bundle.as_bytes(),
        "caBundle = the Secret's ca.crt"
    );
    // A second replica converges on the same Secret instead of making its own.
    let again = tls::converge_secret(
        &client,
        OPERATOR_NS,
        tls::SECRET_NAME,
        &tls::names_for(SERVICE_NAME, OPERATOR_NS, &["127.0.0.1".to_owned()]),
    )
    .await
    .expect("converge");
    assert_eq!(again, material);

    partition(&client, &ns, "payments", true).await;
    partition(&client, &ns, "pending", false).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    // A labelled pod for a Ready partition: stored mutated.
    pods.create(&PostParams::default(), &pod("signer", true, "payments"))
        .await
        .expect("create labelled pod");
    let stored = pods.get("signer").await.expect("stored pod");
    let spec = stored.spec.clone().expect("spec");
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["hsm-sidecar", "app"],
        "1.20: the sidecar is a regular container"
    );
    let init: Vec<&str> = spec.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(init, ["hsmbridge-shim"]);
    assert_eq!(
        stored
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("hsmbridge.io/inject-status"))
            .map(String::as_str),
        Some("injected")
    );
    let app = &spec.containers[1];
    assert!(app.env.iter().flatten().any(|e| e.name == "PKCS11_MODULE_PATH"));
    assert!(!app
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name.starts_with("hsmbridge-credentials")));
    let yaml = serde_yaml::to_string(&json!({
        "metadata": {"name": stored.metadata.name, "namespace": stored.metadata.namespace,
                     "labels": stored.metadata.labels, "annotations": stored.metadata.annotations},
        "spec": spec,
    }))
    .expect("yaml");
    std::fs::write(format!("{dir}/mutated-pod.yaml"), &yaml).expect("write yaml");
    println!("--- stored pod (mutated by the webhook)\n{yaml}");

    // Missing partition: denied with the message.
    let err = pods
        .create(&PostParams::default(), &pod("lost", true, "nope"))
        .await
        .expect_err("denied");
    println!("--- missing partition: {err}");
    assert!(
        err.to_string().contains("HsmPartition \"nope\" not found in namespace"),
        "{err}"
    );

    // Not Ready: denied with the reason.
    let err = pods
        .create(&PostParams::default(), &pod("early", true, "pending"))
        .await
        .expect_err("denied");
    println!("--- partition not ready: {err}");
    assert!(
        err.to_string()
            .contains("is not Ready (Ready=False, reason NotEnrolled"),
        "{err}"
    );

    // Unknown annotation.
    let mut odd = pod("odd", true, "payments");
    odd.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("hsmbridge.io/slot".into(), "1".into());
    let err = pods.create(&PostParams::default(), &odd).await.expect_err("denied");
    println!("--- unknown annotation: {err}");
    assert!(
        err.to_string().contains("unknown annotation \"hsmbridge.io/slot\""),
        "{err}"
    );

    // Without the label: untouched (the API server does not even call the webhook).
    let before = metrics.render();
    pods.create(&PostParams::default(), &pod("plain", false, "payments"))
        .await
        .expect("plain pod");
    let plain = pods.get("plain").await.expect("stored");
    let plain_spec = plain.spec.expect("spec");
    assert_eq!(plain_spec.containers.len(), 1);
    assert_eq!(plain_spec.init_containers, None);
    assert_eq!(plain_spec.volumes, None);
    assert!(!plain
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key("hsmbridge.io/inject-status"));
    assert_eq!(metrics.render(), before, "objectSelector: the webhook was not called");

    // The caBundle reset (as a `helm upgrade` does): set again.
    mwcs.patch(
        WEBHOOK_CONFIGURATION,
        &PatchParams::default(),
        &Patch::Strategic(json!({"webhooks": [{"name": "inject.hsmbridge.io", "clientConfig": {"caBundle": null}}]})),
    )
    .await
    .expect("reset caBundle");
    eventually("the caBundle set again", || {
        let mwcs = mwcs.clone();
        let want = material.ca_bundle.clone();
        async move {
            let m = mwcs.get(WEBHOOK_CONFIGURATION).await.ok()?;
            (m.webhooks?.first()?.client_config.ca_bundle.as_ref()?.0 == want.as_bytes()).then_some(())
        }
    })
    .await;

    // The Secret deleted: a new CA and certificate, reloaded and trusted (else this create fails).
    Api::<Secret>::namespaced(client.clone(), OPERATOR_NS)
        .delete(tls::SECRET_NAME, &Default::default())
        .await
        .expect("delete the TLS Secret");
    let renewed = eventually("a new TLS Secret and caBundle", || {
        let (mwcs, client, old) = (mwcs.clone(), client.clone(), material.clone());
        async move {
            let s = Api::<Secret>::namespaced(client, OPERATOR_NS)
                .get(tls::SECRET_NAME)
                .await
                .ok()?;
            let m = tls::Material::from_secret_data(s.data.as_ref()?)?;
            let bundle = mwcs
                .get(WEBHOOK_CONFIGURATION)
                .await
                .ok()?
                .webhooks?
                .first()?
                .client_config
                .ca_bundle
                .clone()?;
            (m.ca_bundle != old.ca_bundle && bundle.0 == m.ca_bundle.as_bytes()).then_some(m)
        }
    })
    .await;
    assert_ne!(renewed.ca_key, material.ca_key);
    pods.create(&PostParams::default(), &pod("signer-2", true, "payments"))
        .await
        .expect("admitted with the new certificate");

    // Latency: 200 labelled pods, 8 at a time.
    let started = Instant::now();
    let creates = (0..200).map(|i| {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &pod(&format!("bench-{i}"), true, "payments"))
                .await
        }
    });
    let results: Vec<_> = futures::stream::iter(creates).buffer_unordered(8).collect().await;
    let elapsed = started.elapsed();
    assert!(results.iter().all(Result::is_ok), "every bench pod admitted");
    println!(
        "--- 200 pods in {elapsed:?}; webhook p50 <= {:?} s, p99 <= {:?} s (histogram bucket bounds)",
        metrics.quantile_bound(0.5),
        metrics.quantile_bound(0.99)
    );
    println!("--- webhook metrics\n{}", metrics.render());
    let _ = stop_tx.send(());
    server.await.expect("join").expect("serve");
}
