//! Issue #10 from the wire: what a peer claims in its Hello cannot forge or break an audit line,
//! and the `/metrics` server stays bounded against a network peer that opens connections and
//! sends nothing, or sends what is not `GET /metrics`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmbridge_proto::wire::{self, request::Call};

use super::support::{Options, Raw, Target};

/// A TCP connection to `addr` from the loopback address `from` (all of 127/8 is this host's):
/// another peer, as far as the server can tell.
fn connect_from(from: &str, addr: &str) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime");
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{from}:0").parse().expect("an address"))
            .expect("bind");
        socket
            .connect(addr.parse().expect("an address"))
            .await
            .expect("connect")
    });
    let stream = stream.into_std().expect("a std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream
}

/// Starts a sidecar serving /metrics on a free loopback port; returns it and the address.
fn metrics_target() -> (Target, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let t = Target::start_with(Options {
        args: &["--metrics-addr", &addr],
        ..Options::default()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "no /metrics server");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    (t, addr)
}

/// Whether the server closed `s` within `within` (a read ends with 0 bytes or an error other
/// than the timeout) rather than keeping it open.
fn closed_within(mut s: &TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn a_forged_container_claim_cannot_inject_fields_into_the_audit_trail() {
    let dir = tempfile_dir();
    let audit = dir.join("audit.jsonl");
    let audit_arg = audit.display().to_string();
    let t = Target::start_with(Options {
        args: &["--audit-file", &audit_arg],
        ..Options::default()
    });
    for claim in [
        "app\",\"uid\":0,\"x\":\"",
        &"a".repeat(200),
        "APP\n{\"event\":\"key_use\"}",
    ] {
        let mut raw = Raw::connect(&t.socket).expect("connect");
        let hello = raw
            .call(Call::Hello(wire::Hello {
                protocol_version: 1,
                join_token: Vec::new(),
                pid: u32::MAX,
                container: claim.to_owned(),
                ring: false,
            }))
            .expect("hello");
        assert_eq!(hello.rv, CKR_OK as u64, "hello with claim {claim:?}");
        // An audited call (it fails: no such session).
        let rv = raw.rv(Call::Login(wire::Login {
            session: 77,
            user_type: CKU_USER as u64,
            pin: None,
        }));
        assert_eq!(rv, CKR_SESSION_HANDLE_INVALID);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("an audit line is not JSON ({e}): {l}")))
            .collect();
        if lines.iter().filter(|l| l["function"] == "C_Login").count() >= 3 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let logins: Vec<&serde_json::Value> = lines.iter().filter(|l| l["function"] == "C_Login").collect();
    assert_eq!(logins.len(), 3, "{lines:#?}");
    for l in logins {
        assert_eq!(l["container"], "(invalid)", "{l}");
        assert_eq!(l["event"], "login", "{l}");
        assert_eq!(
            l["process"]["uid"],
            u64::from(own_uid()),
            "the uid is the kernel's: {l}"
        );
        assert_eq!(
            l["process"]["peer_pid"],
            std::process::id(),
            "the kernel's PID beside the claim: {l}"
        );
        assert!(l.get("x").is_none(), "{l}");
    }
    assert!(!lines.iter().any(|l| l["event"] == "key_use"), "a forged line got in");
}

#[test]
fn one_peer_cannot_hold_the_slots_another_scraper_needs() {
    let (t, addr) = metrics_target();
    // One peer opens eight silent connections: it keeps two (README "Limits"), the rest are
    // closed at once.
    let silent: Vec<TcpStream> = (0..8).map(|_| connect_from("127.0.0.1", &addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let refused = silent[2..]
        .iter()
        .filter(|s| closed_within(s, Duration::from_secs(1)))
        .count();
    assert_eq!(refused, 6, "connections past two from one peer were kept");
    for s in &silent[..2] {
        assert!(
            !closed_within(s, Duration::from_millis(200)),
            "a first connection was closed"
        );
    }
    // Another peer still scrapes.
    let mut other = connect_from("127.0.0.2", &addr);
    other.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    other
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    let _ = other.read_to_string(&mut text);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("hsmbridge_sidecar_info"),
        "another peer was not served while one held its connections: {text:?}"
    );
    let mut t = t;
    t.assert_still_serves("one peer's silent /metrics connections");
}

#[test]
fn the_metrics_server_refuses_past_its_connections_and_times_out_silent_ones() {
    let (t, addr) = metrics_target();
    // Eight silent connections, two from each of four peers, hold every slot (README "Limits":
    // 8, 2 per peer).
    let silent: Vec<TcpStream> = (0..8)
        .map(|i| connect_from(&format!("127.0.0.{}", 2 + i / 2), &addr))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut ninth = connect_from("127.0.0.9", &addr);
    ninth.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let _ = ninth.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    let n = ninth.read(&mut buf).unwrap_or(0);
    assert_eq!(
        n,
        0,
        "a ninth connection was served: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The silent ones are closed after the header timeout (5 s); then scrapes work again.
    let started = Instant::now();
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(
            n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
            "silent connection answered"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "silent connections held {:?}",
        started.elapsed()
    );
    let get = |request: &str| {
        let mut s = TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(request.as_bytes()).expect("request");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    };
    let ok = get("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.contains("hsmbridge_sidecar_info"),
        "{ok}"
    );
    assert!(get("GET /etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(
        get("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .starts_with("HTTP/1.1 405")
    );
    let huge = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n", "a".repeat(1 << 20));
    let answer = get(&huge);
    assert!(!answer.starts_with("HTTP/1.1 200"), "a 1 MiB header was served");
    let mut t = t;
    t.assert_still_serves("the /metrics attacks");
}

/// This process's real UID, from /proc.
fn own_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("Uid:")?.split_whitespace().next()?.parse().ok())
        .expect("Uid line")
}

/// A fresh directory for the test's files (removed with the process's temp files).
fn tempfile_dir() -> std::path::PathBuf {
    hsmbridge_conformance::paths::fresh_temp_dir("hostile-observe")
}
