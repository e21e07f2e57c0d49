//! `hsm_operator_partition_pods{namespace,partition,state}`: the leader asks the sidecars of a
//! partition's Running injected pods for their generations (a stand-in sidecar page here, on
//! loopback: the pods' status says podIP 127.0.0.1) and counts them current, behind or
//! unknown, under the least-privilege RBAC of operator/deploy/rbac.yaml (pods list).

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use support::{int_at, pkcs11_partition, Fixture, WAIT};

/// A sidecar's `/metrics` stand-in: serves the current `page` to every connection.
fn fake_sidecar(page: Arc<Mutex<String>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = page.lock().expect("page lock").clone();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn page(credential: i64, config: i64) -> String {
    format!(
        "# TYPE hsmbridge_sidecar_credential_generation gauge\nhsmbridge_sidecar_credential_generation {credential}\n# TYPE hsmbridge_sidecar_config_generation gauge\nhsmbridge_sidecar_config_generation {config}\n# EOF\n"
    )
}

/// An injected-looking pod of partition `payments`; `port`: its sidecar's hsm-metrics port.
fn pod(name: &str, port: Option<u16>) -> Pod {
    let ports = port.map_or(
        json!([]),
        |p| json!([{"name": "hsm-metrics", "containerPort": p, "protocol": "TCP"}]),
    );
    serde_json::from_value(json!({
        "metadata": {"name": name,
            "labels": {"hsmbridge.io/inject": "true"},
            "annotations": {"hsmbridge.io/partition": "payments", "hsmbridge.io/inject-status": "injected"}},
        "spec": {"containers": [
            {"name": "hsm-sidecar", "image": "sidecar.invalid/s:1", "ports": ports},
            {"name": "app", "image": "app.invalid/a:1"}
        ]}
    }))
    .expect("pod JSON")
}

/// `(current, behind, unknown)` of partition payments on the operator's page.
fn counts(text: &str, ns: &str) -> [Option<f64>; 3] {
    ["current", "behind", "unknown"].map(|state| {
        let series =
            format!("hsm_operator_partition_pods{{namespace=\"{ns}\",partition=\"payments\",state=\"{state}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_pods_are_counted_by_the_generations_their_sidecar_reports() {
    let mut fx = Fixture::without_operator("pod-generations").await;
    let ns = fx.ns.clone();
    let served = Arc::new(Mutex::new(page(0, 1)));
    let port = fake_sidecar(served.clone());

    let pods = fx.api::<Pod>();
    for (name, port, running) in [
        ("current", Some(port), true),
        ("no-metrics-port", None, true),
        ("pending", Some(port), false),
    ] {
        pods.create(&PostParams::default(), &pod(name, port))
            .await
            .unwrap_or_else(|e| panic!("creating pod {name}: {e}"));
        if running {
            pods.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"phase": "Running", "podIP": "127.0.0.1"}})),
            )
            .await
            .unwrap_or_else(|e| panic!("pod {name} status: {e}"));
        }
    }
    // Not enrolled (no setup Secret): credential generation 0; the ConfigMap rendered once: 1.
    fx.create_partition(&pkcs11_partition("payments", "payments")).await;
    fx.start_operator_with(&["--no-leader-election", "--partition-pods-interval-secs", "1"]);
    fx.eventually("the partition's generations in its status", WAIT, || {
        let fx = &fx;
        async move {
            let p = fx.partition("payments").await.ok_or("gone")?;
            match (
                int_at(&p, "/status/credentialGeneration"),
                int_at(&p, "/status/configGeneration"),
            ) {
                (Some(0), Some(1)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;

    let fxr = &fx;
    let ns_ref = ns.as_str();
    fx.eventually(
        "1 current pod, 1 unknown (no metrics port), the Pending one not counted",
        WAIT,
        || async move {
            let text = fxr.metrics();
            match counts(&text, ns_ref) {
                [Some(c), Some(b), Some(u)] if (c, b, u) == (1.0, 0.0, 1.0) => Ok(()),
                other => Err(format!("{other:?}\n{text}")),
            }
        },
    )
    .await;

    // The sidecar reports an older configuration than the partition's: behind.
    *served.lock().expect("page lock") = page(0, 0);
    fx.eventually("the pod counted behind", WAIT, || async move {
        let text = fxr.metrics();
        match counts(&text, ns_ref) {
            [Some(c), Some(b), Some(u)] if (c, b, u) == (0.0, 1.0, 1.0) => Ok(()),
            other => Err(format!("{other:?}\n{text}")),
        }
    })
    .await;

    // The partition goes: so do its series.
    fx.partitions()
        .delete("payments", &Default::default())
        .await
        .expect("deleting the partition");
    fx.eventually("the partition's series removed", WAIT, || async move {
        let text = fxr.metrics();
        if text.contains("partition=\"payments\"") {
            Err(text)
        } else {
            Ok(())
        }
    })
    .await;
}
