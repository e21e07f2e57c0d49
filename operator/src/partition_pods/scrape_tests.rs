//! Against a real socket: a page, a huge page, a silent server, an error status, nobody.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// Serves `response` (raw HTTP) to every connection, after `delay`.
async fn server(response: Vec<u8>, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let _ = s.write_all(&response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const PAGE: &str = "# TYPE hsmbridge_sidecar_credential_generation gauge\nhsmbridge_sidecar_credential_generation 2\n# TYPE hsmbridge_sidecar_config_generation gauge\nhsmbridge_sidecar_config_generation 5\n# EOF\n";

#[tokio::test]
async fn a_page_is_read() {
    let addr = server(ok(PAGE), Duration::ZERO).await;
    assert_eq!(
        Scraper::default().reported(addr).await,
        Ok(Reported {
            credential: 2,
            config: 5
        })
    );
}

#[tokio::test]
async fn a_page_over_256_kib_is_refused() {
    let padding = format!("# {}\n", "x".repeat(MAX_BODY));
    let addr = server(ok(&format!("{PAGE}{padding}")), Duration::ZERO).await;
    let err = Scraper::default().reported(addr).await.expect_err("too large");
    assert!(err.starts_with("body"), "{err}");
}

#[tokio::test]
async fn a_slow_sidecar_is_given_up() {
    let addr = server(ok(PAGE), Duration::from_secs(5)).await;
    let started = std::time::Instant::now();
    let err = Scraper::with_timeout(Duration::from_millis(300))
        .reported(addr)
        .await
        .expect_err("too slow");
    assert!(err.contains("no answer within"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn errors_and_strangers_are_no_report() {
    let addr = server(
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
        Duration::ZERO,
    )
    .await;
    assert_eq!(
        Scraper::default().reported(addr).await,
        Err("HTTP 404 Not Found".to_owned())
    );
    let addr = server(ok("hello"), Duration::ZERO).await;
    assert!(Scraper::default().reported(addr).await.is_err());
    // Nobody listens (bound, then released).
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    assert!(Scraper::default().reported(closed).await.is_err());
}
