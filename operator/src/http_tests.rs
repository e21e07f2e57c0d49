//! `/metrics`, `/healthz` and `/readyz` over a real socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{serve_on, Health};
use crate::metrics::Metrics;

/// HTTP/1.0 GET: (status line, headers, body).
async fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut raw))
        .await
        .expect("an answer within 5 s")
        .expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header end");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn metrics_are_openmetrics_text() {
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    metrics.reconciled(Duration::from_millis(3));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(listener, metrics.clone(), health.clone(), async move {
        let _ = stopped.await;
    }));

    let (status, headers, body) = get(addr, "/metrics").await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        headers.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n")
            || headers.ends_with("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{headers}"
    );
    assert!(body.contains("\nhsm_operator_reconciles_total 1\n"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");

    let (status, _, _) = get(addr, "/readyz").await;
    assert!(status.contains(" 503 "), "{status}");
    health.set_ready(true);
    let (status, _, _) = get(addr, "/readyz").await;
    assert!(status.contains(" 200 "), "{status}");
    let (status, _, body) = get(addr, "/healthz").await;
    assert!(status.contains(" 200 ") && body == "ok\n", "{status} {body:?}");

    let _ = stop.send(());
    server.await.expect("join").expect("serve");
}
