use std::collections::BTreeMap;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::*;
use crate::crd::HsmPartition;
use crate::webhook::metrics::{Outcome, WebhookMetrics};
use crate::webhook::mutate::{ServerCaps, Settings};
use crate::webhook::partitions::PartitionLookup;

/// Partitions from a map; `fail` makes every lookup an error (API server unreachable).
struct Fake {
    partitions: BTreeMap<(String, String), HsmPartition>,
    fail: bool,
}

impl PartitionLookup for Fake {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<HsmPartition>, kube::Error> {
        if self.fail {
            return Err(kube::Error::Service("connection refused".into()));
        }
        Ok(self
            .partitions
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned())
    }
}

fn ready_partition() -> HsmPartition {
    serde_json::from_value(json!({
        "apiVersion": "hsmbridge.io/v1alpha1", "kind": "HsmPartition",
        "metadata": {"name": "payments", "namespace": "team-a"},
        "spec": {
            "provider": "pkcs11",
            "sidecar": {"image": "sidecar:1", "modulePath": "/usr/lib/softhsm/libsofthsm2.so"},
            "token": {"label": "payments"},
            "enrollment": {"method": "pkcs11-init-pin",
                           "setupPasswordSecretRef": {"name": "s", "key": "k"}}
        },
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
            "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    }))
    .expect("partition")
}

fn handler(fail: bool) -> Handler<Fake> {
    Handler {
        lookup: Fake {
            partitions: BTreeMap::from([(
                ("team-a".to_owned(), "payments".to_owned()),
                ready_partition(),
            )]),
            fail,
        },
        settings: Settings {
            shim_image: "shim:1".into(),
            shim_source_path: "/usr/lib/hsmbridge/libhsmbridge_pkcs11.so".into(),
            health_port: 17310,
            run_as_user: 65532,
            resources: None,
        },
        caps: ServerCaps::for_version("1", "20"),
        metrics: Arc::new(WebhookMetrics::default()),
    }
}

fn review(operation: &str, pod: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a",
            "operation": operation,
            "userInfo": {"username": "admin", "groups": ["system:masters"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

fn labelled_pod(partition: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "signer-", "namespace": "team-a",
            "labels": {"hsmbridge.io/inject": "true"},
            "annotations": {"hsmbridge.io/partition": partition}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    })
}

async fn call(h: &Handler<Fake>, method: Method, path: &str, body: &[u8]) -> (StatusCode, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    let resp = h.route(req).await;
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

async fn post_review(h: &Handler<Fake>, review: &Value) -> Value {
    let (status, body) = call(
        h,
        Method::POST,
        "/mutate-pods?timeout=10s",
        &serde_json::to_vec(review).expect("json"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("response json")
}

#[tokio::test]
async fn routes() {
    let h = handler(false);
    assert_eq!(
        call(&h, Method::GET, "/healthz", b"").await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&h, Method::GET, "/mutate-pods", b"").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&h, Method::POST, "/validate", b"{}").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_malformed_review_is_a_400_not_a_crash() {
    let h = handler(false);
    for body in [
        &b""[..],
        b"not json",
        b"{}",
        b"[1,2,3]",
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":1}}"#,
        &serde_json::to_vec(&review("CREATE", json!({"spec": {"containers": "nope"}})))
            .expect("json"),
        &serde_json::to_vec(&review("EXPLODE", labelled_pod("payments"))).expect("json"),
    ] {
        let (status, text) = call(&h, Method::POST, "/mutate-pods", body).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert!(!text.is_empty());
    }
    assert_eq!(h.metrics.count(Outcome::Invalid), 8);
}

#[tokio::test]
async fn a_labelled_pod_is_patched() {
    let h = handler(false);
    let out = post_review(&h, &review("CREATE", labelled_pod("payments"))).await;
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    let resp = &out["response"];
    assert_eq!(resp["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(resp["allowed"], true);
    assert_eq!(resp["patchType"], "JSONPatch");
    let response: kube::core::admission::AdmissionResponse =
        serde_json::from_value(resp.clone()).expect("AdmissionResponse");
    let patch: json_patch::Patch =
        serde_json::from_slice(&response.patch.expect("patch")).expect("JSONPatch");
    let mut pod = labelled_pod("payments");
    json_patch::patch(&mut pod, &patch).expect("applies");
    assert_eq!(
        pod["metadata"]["annotations"]["hsmbridge.io/inject-status"],
        "injected"
    );
    assert_eq!(pod["spec"]["containers"][0]["name"], "hsm-sidecar");
    assert_eq!(h.metrics.count(Outcome::Injected), 1);
}

#[tokio::test]
async fn other_pods_and_operations_pass_untouched() {
    let h = handler(false);
    let mut plain = labelled_pod("payments");
    plain["metadata"]["labels"] = json!({"app": "x"});
    let mut injected = labelled_pod("payments");
    injected["metadata"]["annotations"]["hsmbridge.io/inject-status"] = json!("injected");
    for r in [
        review("CREATE", plain),
        review("CREATE", injected),
        review("UPDATE", labelled_pod("payments")),
    ] {
        let out = post_review(&h, &r).await;
        assert_eq!(out["response"]["allowed"], true);
        assert!(out["response"].get("patch").is_none(), "{out}");
    }
    assert_eq!(h.metrics.count(Outcome::Skipped), 3);
}

#[tokio::test]
async fn denials_carry_the_message_and_403() {
    let h = handler(false);
    let out = post_review(&h, &review("CREATE", labelled_pod("missing"))).await;
    let resp = &out["response"];
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 403);
    let message = resp["status"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("HsmPartition \"missing\" not found in namespace \"team-a\""),
        "{message}"
    );

    let mut bad = labelled_pod("payments");
    bad["metadata"]["annotations"]["hsmbridge.io/colour"] = json!("blue");
    let out = post_review(&h, &review("CREATE", bad)).await;
    assert_eq!(out["response"]["allowed"], false);
    assert!(out["response"]["status"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("unknown annotation \"hsmbridge.io/colour\"")));
    assert_eq!(h.metrics.count(Outcome::Denied), 2);
}

#[tokio::test]
async fn an_unreachable_api_server_denies_with_a_retry_hint() {
    let h = handler(true);
    let out = post_review(&h, &review("CREATE", labelled_pod("payments"))).await;
    assert_eq!(out["response"]["allowed"], false);
    let message = out["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(
        message.starts_with("cannot read HsmPartition team-a/payments (try again)"),
        "{message}"
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let h = handler(false);
    let big = vec![b' '; MAX_BODY + 1];
    assert_eq!(
        call(&h, Method::POST, "/mutate-pods", &big).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

/// The whole server: TLS handshake against the self-made CA for 127.0.0.1, HTTP/1.1 and h2
/// negotiated by ALPN, then graceful shutdown.
#[tokio::test]
async fn serves_https_with_the_self_made_certificate() {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let names = vec!["127.0.0.1".to_owned()];
    let crate::webhook::tls::Plan::Write(material) =
        crate::webhook::tls::plan(None, &names, crate::webhook::tls::now()).expect("plan")
    else {
        panic!("no material");
    };
    let resolver = Arc::new(crate::webhook::tls::CertResolver::default());
    resolver
        .load(material.cert.as_bytes(), material.key.as_bytes())
        .expect("load");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(
        crate::webhook::tls::server_config(resolver).expect("server config"),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(
        listener,
        acceptor,
        Arc::new(handler(false)),
        async move {
            let _ = stop_rx.await;
        },
    ));

    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls::pki_types::CertificateDer::pem_slice_iter(material.ca_bundle.as_bytes()) {
        roots.add(ca.expect("ca")).expect("add ca");
    }
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let server_name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = connector
        .connect(server_name, tcp)
        .await
        .expect("handshake verifies");

    let body = serde_json::to_vec(&review("CREATE", labelled_pod("payments"))).expect("json");
    let head = format!(
        "POST /mutate-pods HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("write");
    tls.write_all(&body).await.expect("write");
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("\"patchType\":\"JSONPatch\""), "{text}");

    let _ = stop_tx.send(());
    tokio::time::timeout(std::time::Duration::from_secs(15), server)
        .await
        .expect("server stops")
        .expect("server task");
}
