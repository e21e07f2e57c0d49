use std::collections::BTreeMap;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::*;
use crate::crd::HsmPartition;
use crate::webhook::inject::{ServerCaps, Settings};
use crate::webhook::metrics::{Outcome, WebhookMetrics};
use crate::webhook::partitions::PartitionLookup;

/// Partitions from a map; `fail` makes every lookup an error (API server unreachable), `hang`
/// makes it never answer. `lookups` counts the calls.
struct Fake {
    partitions: BTreeMap<(String, String), HsmPartition>,
    fail: bool,
    hang: bool,
    lookups: std::sync::atomic::AtomicUsize,
}

impl PartitionLookup for Fake {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<HsmPartition>, kube::Error> {
        self.lookups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.hang {
            std::future::pending::<()>().await;
        }
        if self.fail {
            return Err(kube::Error::Service("connection refused".into()));
        }
        Ok(self.partitions.get(&(namespace.to_owned(), name.to_owned())).cloned())
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
            partitions: BTreeMap::from([(("team-a".to_owned(), "payments".to_owned()), ready_partition())]),
            fail,
            hang: false,
            lookups: Default::default(),
        },
        settings: Settings {
            shim_image: "shim:1".into(),
            health_port: 17310,
            metrics_port: 17320,
            run_as_user: 65532,
            resources: None,
        },
        caps: ServerCaps::for_version("1", "20"),
        metrics: Arc::new(WebhookMetrics::default()),
        budget: BodyBudget::default(),
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
    assert_eq!(call(&h, Method::GET, "/healthz", b"").await.0, StatusCode::OK);
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
        &serde_json::to_vec(&review("CREATE", json!({"spec": {"containers": "nope"}}))).expect("json"),
        &serde_json::to_vec(&review("EXPLODE", labelled_pod("payments"))).expect("json"),
    ] {
        let (status, text) = call(&h, Method::POST, "/mutate-pods", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(body));
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
    let patch: json_patch::Patch = serde_json::from_slice(&response.patch.expect("patch")).expect("JSONPatch");
    let mut pod = labelled_pod("payments");
    json_patch::patch(&mut pod, &patch).expect("applies");
    assert_eq!(pod["metadata"]["annotations"]["hsmbridge.io/inject-status"], "injected");
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
    let message = out["response"]["status"]["message"].as_str().expect("message");
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

/// The whole server on 127.0.0.1 with a self-made certificate, and a client trusting its CA.
struct TestServer {
    addr: std::net::SocketAddr,
    connector: tokio_rustls::TlsConnector,
    handler: Arc<Handler<Fake>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

impl TestServer {
    async fn start(handler: Handler<Fake>) -> TestServer {
        use rustls::pki_types::pem::PemObject;

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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handler = Arc::new(handler);
        let task = tokio::spawn(run(listener, acceptor, handler.clone(), async move {
            let _ = stop_rx.await;
        }));

        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls::pki_types::CertificateDer::pem_slice_iter(material.ca_bundle.as_bytes()) {
            roots.add(ca.expect("ca")).expect("add ca");
        }
        let client_config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        TestServer {
            addr,
            connector: tokio_rustls::TlsConnector::from(Arc::new(client_config)),
            handler,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    async fn connect(&self) -> std::io::Result<Tls> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let server_name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        self.connector.connect(server_name, tcp).await
    }

    /// `GET /healthz` on a new connection: the status line.
    async fn healthz(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = self.connect().await.expect("handshake");
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut response = Vec::new();
        tls.read_to_end(&mut response).await.expect("read");
        String::from_utf8_lossy(&response)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(std::time::Duration::from_secs(15), task)
                .await
                .expect("server stops")
                .expect("server task");
        }
    }
}

/// The whole server: TLS handshake against the self-made CA for 127.0.0.1, HTTP/1.1 and h2
/// negotiated by ALPN, then graceful shutdown.
#[tokio::test]
async fn serves_https_with_the_self_made_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = TestServer::start(handler(false)).await;
    let mut tls = server.connect().await.expect("handshake verifies");
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
    server.stop().await;
}

/// A pod naming 10,000 partitions: one denial about the count, at once, and not one lookup.
#[tokio::test]
async fn ten_thousand_partitions_are_denied_at_once() {
    let h = handler(false);
    let names: Vec<String> = (0..10_000).map(|i| format!("p{i}")).collect();
    let body = serde_json::to_vec(&review("CREATE", labelled_pod(&names.join(",")))).expect("json");
    let started = std::time::Instant::now();
    let (status, out) = call(&h, Method::POST, "/mutate-pods?timeout=10s", &body).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    let out: Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(out["response"]["allowed"], false);
    assert_eq!(
        out["response"]["status"]["message"],
        "annotation hsmbridge.io/partition lists more than 16 partitions; a pod may use at most 16"
    );
    assert_eq!(h.lookup.lookups.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(took < std::time::Duration::from_millis(200), "took {took:?}");
}

/// Lookups stop at the first partition the pod cannot use.
#[tokio::test]
async fn lookups_stop_at_the_first_unusable_partition() {
    let h = handler(false);
    let out = post_review(&h, &review("CREATE", labelled_pod("missing,payments,other"))).await;
    assert_eq!(out["response"]["allowed"], false);
    let message = out["response"]["status"]["message"].as_str().expect("message");
    assert!(message.starts_with("HsmPartition \"missing\" not found"), "{message}");
    assert_eq!(h.lookup.lookups.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_shared_process_namespace_is_denied() {
    let h = handler(false);
    let mut pod = labelled_pod("payments");
    pod["spec"]["shareProcessNamespace"] = json!(true);
    let out = post_review(&h, &review("CREATE", pod)).await;
    assert_eq!(out["response"]["allowed"], false);
    let message = out["response"]["status"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("the pod sets spec.shareProcessNamespace: true"),
        "{message}"
    );
    assert_eq!(h.lookup.lookups.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// A lookup that never answers: the review is still answered (denied) before the API server's
/// timeout.
#[tokio::test]
async fn a_hanging_lookup_is_denied_within_the_deadline() {
    let mut h = handler(false);
    h.lookup.hang = true;
    let body = serde_json::to_vec(&review("CREATE", labelled_pod("payments"))).expect("json");
    let started = std::time::Instant::now();
    let (status, out) = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        call(&h, Method::POST, "/mutate-pods?timeout=1s", &body),
    )
    .await
    .expect("answered before the API server's timeout");
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    let out: Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(out["response"]["allowed"], false);
    assert!(
        out["response"]["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not decide in time")),
        "{out}"
    );
    assert!(
        took < std::time::Duration::from_secs(1),
        "took {took:?} for a 1s webhook timeout"
    );
}

/// A body that stops halfway, as a stream: the given chunks, then nothing, forever.
fn stalled_body(
    chunks: Vec<Bytes>,
) -> http_body_util::StreamBody<impl futures::Stream<Item = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>>
{
    use futures::StreamExt;
    let frames = futures::stream::iter(chunks.into_iter().map(|c| Ok(hyper::body::Frame::data(c))))
        .chain(futures::stream::pending());
    http_body_util::StreamBody::new(frames)
}

/// Bodies held open past the budget wait for it; nothing holds more than the budget, and all of
/// it comes back when their deadline has passed.
#[tokio::test]
async fn half_sent_bodies_hold_at_most_the_budget() {
    let h = Arc::new(handler(false));
    let mut calls = Vec::new();
    for _ in 0..30 {
        let h = h.clone();
        calls.push(tokio::spawn(async move {
            let chunks = vec![Bytes::from(vec![b' '; 64 << 10]); 32]; // 2 MiB of a 4 MiB body
            let req = Request::builder()
                .method(Method::POST)
                .uri("/mutate-pods?timeout=2s")
                .body(stalled_body(chunks))
                .expect("request");
            h.route(req).await.status()
        }));
    }
    let mut peak = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(1000) {
        peak = peak.max(h.budget.in_use());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(peak <= crate::webhook::limits::MAX_BUFFERED, "{peak}");
    // 30 × 2 MiB were offered: the budget filled up, so some bodies were waiting for it.
    assert!(peak > crate::webhook::limits::MAX_BUFFERED / 2, "{peak}");
    for call in calls {
        let status = tokio::time::timeout(std::time::Duration::from_secs(5), call)
            .await
            .expect("answered by the body deadline")
            .expect("task");
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    }
    assert_eq!(h.budget.in_use(), 0);
}

/// 30 clients that send half a body and stop: `/healthz` still answers at once, and each of
/// them gets a 408 by the body deadline (and the connection closed) instead of holding on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_30_bodies_are_half_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = TestServer::start(handler(false)).await;
    let mut slow = Vec::new();
    for _ in 0..30 {
        let mut tls = server.connect().await.expect("handshake");
        tls.write_all(
            b"POST /mutate-pods?timeout=2s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n",
        )
        .await
        .expect("write head");
        tls.write_all(&vec![b' '; 256 << 10]).await.expect("write half a body");
        tls.flush().await.expect("flush");
        slow.push(tls);
    }
    let started = std::time::Instant::now();
    let status = tokio::time::timeout(std::time::Duration::from_secs(2), server.healthz())
        .await
        .expect("/healthz answers while the slow bodies are open");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    for mut tls in slow {
        let mut response = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read_to_end(&mut response))
            .await
            .expect("the server lets go of a half-sent body by its deadline");
        let text = String::from_utf8_lossy(&response);
        assert!(
            read.is_err() || text.starts_with("HTTP/1.1 408"),
            "a half-sent body got: {read:?} {text}"
        );
    }
    assert_eq!(server.handler.budget.in_use(), 0);
    server.stop().await;
}

/// Connections past the cap wait in the backlog: the TLS handshake of one more does not
/// complete until an open one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait() {
    let server = TestServer::start(handler(false)).await;
    let mut open = Vec::new();
    for _ in 0..crate::webhook::limits::MAX_CONNECTIONS {
        open.push(server.connect().await.expect("handshake within the cap"));
    }
    let one_more = tokio::time::timeout(std::time::Duration::from_millis(700), server.connect()).await;
    assert!(one_more.is_err(), "a connection past the cap was served");
    drop(open.pop());
    let one_more = tokio::time::timeout(std::time::Duration::from_secs(5), server.connect())
        .await
        .expect("served once a slot is free")
        .expect("handshake");
    drop(one_more);
    drop(open);
    server.stop().await;
}
