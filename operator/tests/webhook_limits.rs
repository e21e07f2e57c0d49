//! The injection webhook's limits on the real process (the chart's operator, called by a real
//! kube-apiserver 1.20.2): a pod naming 10,000 partitions and a pod sharing its process
//! namespace are denied at once with one message each; 30 clients that send half of a 4 MiB
//! body and stop do not take the operator's memory (it holds at most its 32 MiB body budget),
//! `/healthz` answers meanwhile, and they are cut off by the body deadline, after which pods are
//! judged normally again.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::injection::{app_pod, Injection, APP_SERVICE_ACCOUNT, PARTITION};
use support::operator::http_get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "team-a";
const SLOW_CLIENTS: usize = 30;
const CLAIMED: usize = 4 << 20;
const SENT: usize = 2 << 20;

fn say(s: &str) {
    println!("webhook-limits: {s}");
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

fn tls_connector(ca_bundle: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls::pki_types::CertificateDer::pem_slice_iter(ca_bundle.as_bytes()) {
        roots.add(ca.expect("CA certificate")).expect("adding the CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting to the webhook");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the webhook")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_bounds_what_a_pod_or_a_client_may_ask() {
    let env = Injection::start(NS, say).await;
    let sleep = ["sleep", "3600"];

    // ---- a pod naming 10,000 partitions ------------------------------------------------------
    let names: Vec<String> = (0..10_000).map(|i| format!("p{i}")).collect();
    let started = Instant::now();
    let (code, message) = env
        .create_pod(&app_pod(
            "many",
            true,
            Some(&names.join(",")),
            APP_SERVICE_ACCOUNT,
            &sleep,
        ))
        .await
        .expect_err("a pod naming 10,000 partitions was admitted");
    let took = started.elapsed();
    say(&format!("10,000 partitions: HTTP {code} after {took:?}: {message}"));
    assert!(
        message.contains("annotation hsmbridge.io/partition lists more than 16 partitions; a pod may use at most 16"),
        "{message}"
    );
    assert!(
        message.len() < 1024,
        "the denial quotes the whole annotation ({} bytes)",
        message.len()
    );
    assert!(took < Duration::from_secs(3), "the denial took {took:?}");

    // ---- a pod sharing its process namespace with the sidecar ---------------------------------
    let mut shared = app_pod("shared", true, Some(PARTITION), APP_SERVICE_ACCOUNT, &sleep);
    shared["spec"]["shareProcessNamespace"] = serde_json::json!(true);
    let (code, message) = env
        .create_pod(&shared)
        .await
        .expect_err("a pod with shareProcessNamespace was injected");
    say(&format!("shareProcessNamespace: HTTP {code}: {message}"));
    assert!(
        message.contains("denied the request") && message.contains("spec.shareProcessNamespace: true"),
        "{message}"
    );

    // ---- 30 clients that send half a body and stop -------------------------------------------
    let pid = env.operator.pid();
    let before = rss_kib(pid);
    let connector = tls_connector(&env.ca_bundle);
    let addr = env.operator.webhook_addr;
    let mut slow = Vec::new();
    for _ in 0..SLOW_CLIENTS {
        let mut tls = connect(&connector, addr).await;
        slow.push(tokio::spawn(async move {
            let head = format!(
                "POST /mutate-pods?timeout=10s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {CLAIMED}\r\n\r\n"
            );
            let started = Instant::now();
            // The server stops reading once its body budget is spent: a write may block, then fail.
            let wrote = async {
                tls.write_all(head.as_bytes()).await?;
                tls.write_all(&vec![b' '; SENT]).await?;
                tls.flush().await
            }
            .await;
            let mut response = Vec::new();
            let read = tls.read_to_end(&mut response).await;
            (started.elapsed(), wrote.is_ok(), read.is_ok(), String::from_utf8_lossy(&response).lines().next().unwrap_or("").to_owned())
        }));
    }
    let mut peak = before;
    let sampling = Instant::now();
    let mut healthz_checked = false;
    while sampling.elapsed() < Duration::from_secs(3) {
        peak = peak.max(rss_kib(pid));
        if !healthz_checked && sampling.elapsed() > Duration::from_secs(1) {
            // The liveness probe's endpoint, and the webhook's own.
            let t = Instant::now();
            let (status, body) = http_get(env.operator.metrics_addr, "/healthz").expect("GET /healthz (metrics port)");
            assert_eq!((status, body.trim()), (200, "ok"), "/healthz on the metrics port");
            let mut tls = connect(&connector, addr).await;
            tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .await
                .expect("write");
            let mut response = Vec::new();
            tokio::time::timeout(Duration::from_secs(2), tls.read_to_end(&mut response))
                .await
                .expect("the webhook's /healthz answers while the slow bodies are open")
                .expect("read");
            assert!(
                String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&response)
            );
            say(&format!(
                "while {SLOW_CLIENTS} half-sent bodies are open: /healthz answers on both ports ({:?})",
                t.elapsed()
            ));
            healthz_checked = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for task in slow {
        let (held, wrote, read, status) = tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("the webhook lets go of a half-sent body by its deadline")
            .expect("slow client task");
        assert!(held < Duration::from_secs(9), "a half-sent body was held for {held:?}");
        assert!(
            status.is_empty() || status.starts_with("HTTP/1.1 408"),
            "a half-sent body got {status:?} (wrote {wrote}, read {read})"
        );
    }
    let growth_mib = peak.saturating_sub(before) / 1024;
    say(&format!(
        "{SLOW_CLIENTS} clients sent {} MiB of {} MiB bodies: operator RSS {} MiB -> peak {} MiB (+{growth_mib} MiB); all were cut off",
        SENT >> 20,
        CLAIMED >> 20,
        before / 1024,
        peak / 1024
    ));
    assert!(
        growth_mib < 64,
        "RSS grew by {growth_mib} MiB for {} MiB of half-sent bodies",
        (SLOW_CLIENTS * SENT) >> 20
    );

    // ---- and pods are judged normally again ----------------------------------------------------
    let (code, message) = env
        .create_pod(&app_pod(
            "no-partition",
            true,
            Some("missing-partition"),
            APP_SERVICE_ACCOUNT,
            &sleep,
        ))
        .await
        .expect_err("a pod naming a missing partition was admitted");
    assert!(
        message.contains("denied the request") && message.contains("\"missing-partition\" not found"),
        "HTTP {code}: {message}"
    );
}
