use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cryptoki_sys::*;

use super::*;

fn event(kind: Kind) -> Event {
    Event {
        time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_620_000_123_456),
        kind,
        app: Some(3),
        caller: Some(Arc::new(Caller {
            uid: 1000,
            gid: 1000,
            peer_pid: 0,
            claimed_pid: 42,
            claimed_container: "app".into(),
        })),
        function: "C_SignInit",
        mechanism: Some(CKM_ECDSA),
        key: Some(Arc::new(KeyName {
            handle: 7,
            class: Some(CKO_PRIVATE_KEY),
            label: Some("shop-signing".into()),
            id: Some("a1b2".into()),
        })),
        object: None,
        result: CKR_OK,
        detail: None,
    }
}

#[test]
fn a_line_names_pod_caller_function_mechanism_key_and_result() {
    let pod = Pod {
        namespace: "shop".into(),
        name: "signer-0".into(),
        partition: "shop".into(),
    };
    let mut out = Vec::new();
    line::write(&mut out, &pod, &event(Kind::KeyUse));
    let text = String::from_utf8(out).expect("utf-8");
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 1,
        "one line: {text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["time"], "2025-12-01T20:13:20.123456Z");
    assert_eq!(v["event"], "key_use");
    assert_eq!(v["pod"]["namespace"], "shop");
    assert_eq!(v["pod"]["name"], "signer-0");
    assert_eq!(v["pod"]["partition"], "shop");
    assert_eq!(v["container"], "app");
    assert_eq!(v["process"]["uid"], 1000);
    assert_eq!(v["process"]["pid"], 42);
    assert!(
        v["process"].get("peer_pid").is_none(),
        "an invisible peer PID is left out"
    );
    assert_eq!(v["function"], "C_SignInit");
    assert_eq!(v["mechanism"], "CKM_ECDSA");
    assert_eq!(v["key"]["label"], "shop-signing");
    assert_eq!(v["key"]["id"], "a1b2");
    assert_eq!(v["key"]["class"], "private_key");
    assert_eq!(v["result"], "CKR_OK");
}

#[test]
fn a_claimed_container_is_kept_only_as_a_dns_label() {
    assert_eq!(Caller::container_claim("app-1"), "app-1");
    assert_eq!(Caller::container_claim(""), "");
    assert_eq!(Caller::container_claim("\"}{\"evil"), "(invalid)");
    assert_eq!(Caller::container_claim(&"a".repeat(64)), "(invalid)");
}

#[test]
fn subjects_name_the_key_each_audited_call_uses() {
    use hsmbridge_proto::wire::{self, request::Call};
    let init = wire::OperationInit {
        session: 1,
        mechanism: Some(wire::Mechanism {
            r#type: CKM_ECDSA as u64,
            parameter: None,
        }),
        key: 9,
    };
    let s = subject(&Call::SignInit(init.clone())).expect("audited");
    assert_eq!((s.kind, s.key, s.mechanism), (Kind::KeyUse, Some(9), Some(CKM_ECDSA)));
    assert_eq!(subject(&Call::DecryptInit(init)).map(|s| s.kind), Some(Kind::KeyUse));
    let unwrap = wire::UnwrapKey {
        session: 1,
        unwrapping_key: 4,
        ..Default::default()
    };
    let s = subject(&Call::UnwrapKey(unwrap)).expect("audited");
    assert!(s.creates && s.key == Some(4));
    let derive = wire::DeriveKey {
        session: 1,
        base_key: 5,
        ..Default::default()
    };
    assert_eq!(subject(&Call::DeriveKey(derive)).and_then(|s| s.key), Some(5));
    assert!(subject(&Call::GenerateRandom(wire::GenerateRandom { session: 1, length: 8 })).is_none());
}

#[test]
fn a_full_queue_drops_without_waiting_and_the_count_becomes_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let metrics = Arc::new(crate::metrics::Metrics::new(true, "shop"));
    let audit = Audit::start(Output::File(path.clone()), Pod::default(), metrics.clone()).expect("start");
    let started = std::time::Instant::now();
    for _ in 0..(QUEUE_LINES * 4) {
        audit.record(event(Kind::KeyUse));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "recording waited for the writer"
    );
    // One more after the writer caught up carries the drop count out.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        audit.record(event(Kind::Login));
        std::thread::sleep(Duration::from_millis(50));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains("audit_dropped") || std::time::Instant::now() > deadline {
            break text;
        }
    };
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let dropped = lines.iter().find(|l| l["event"] == "audit_dropped");
    let written = lines.iter().filter(|l| l["event"] == "key_use").count();
    if written < QUEUE_LINES * 4 {
        assert!(dropped.is_some(), "{written} written, no drop line");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// Review finding: a flood of cheap refusals pushed key uses out of a full queue.
#[test]
fn past_half_full_refusals_are_dropped_first_and_key_uses_still_queue() {
    let (tx, _rx) = std::sync::mpsc::sync_channel(QUEUE_LINES);
    let audit = Audit {
        queue: Some(tx),
        queued: Arc::default(),
        dropped: Arc::default(),
        metrics: None,
    };
    for _ in 0..QUEUE_LINES / 2 {
        audit.record(event(Kind::Refused));
    }
    for _ in 0..100 {
        audit.record(event(Kind::Refused));
        audit.record(event(Kind::Login));
    }
    assert_eq!(audit.dropped.load(std::sync::atomic::Ordering::Relaxed), 200);
    for _ in 0..QUEUE_LINES / 2 {
        audit.record(event(Kind::KeyUse));
    }
    assert_eq!(
        audit.dropped.load(std::sync::atomic::Ordering::Relaxed),
        200,
        "a key use was dropped while the queue had room"
    );
    audit.record(event(Kind::KeyUse));
    assert_eq!(
        audit.dropped.load(std::sync::atomic::Ordering::Relaxed),
        201,
        "full: dropped, counted"
    );
}
