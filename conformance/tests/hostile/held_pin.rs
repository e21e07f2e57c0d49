//! A wrong held PIN costs the HSM at most one attempt: the sidecar stops
//! offering it after the token rejects it, reports NOT_SERVING, and tries
//! again only when the PIN file changes. OpenSC's pkcs11-spy between the
//! sidecar and SoftHSM counts the logins that reach the token.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmbridge_conformance::softhsm::USER_PIN;
use hsmbridge_proto::wire::{self, request::Call};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::support::{Options, Raw, Target};

const WRONG_PIN: &str = "wrong-held-pin-Zq81";

fn backend_logins(spy_log: &std::path::Path) -> usize {
    std::fs::read_to_string(spy_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("C_Login"))
        .count()
}

fn health(addr: &str) -> Option<ServingStatus> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .connect()
            .await
            .ok()?;
        let resp = HealthClient::new(channel)
            .check(HealthCheckRequest { service: String::new() })
            .await
            .ok()?;
        ServingStatus::try_from(resp.into_inner().status).ok()
    })
}

fn wait_health(addr: &str, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    while Instant::now() < deadline {
        last = health(addr);
        if last == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("health is {last:?}, expected {want:?}");
}

fn login(raw: &mut Raw, session: u64) -> CK_RV {
    raw.rv(Call::Login(wire::Login {
        session,
        user_type: CKU_USER as u64,
        pin: None,
    }))
}

/// Audit finding 5: every app C_Login retried the held PIN after
/// CKR_PIN_INCORRECT, nothing was logged and health stayed SERVING: a
/// crash-looping app locked a real partition out within seconds.
#[test]
fn a_rejected_held_pin_reaches_the_token_once() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let addr = format!("127.0.0.1:{port}");
    let dir = hsmbridge_conformance::paths::fresh_temp_dir("spy");
    let spy = dir.join("spy.log");
    let mut t = Target::start_with(Options {
        pin: WRONG_PIN,
        spy_log: Some(&spy),
        args: &["--health-addr", &addr],
    });
    let base = backend_logins(&spy);
    // 30 applications log in at once, as replicas of a crash-looping app would.
    let barrier = std::sync::Barrier::new(30);
    std::thread::scope(|scope| {
        for i in 0..30 {
            let (t, barrier) = (&t, &barrier);
            scope.spawn(move || {
                let mut raw = t.client();
                let session = raw.session_without_login();
                barrier.wait();
                assert_eq!(
                    login(&mut raw, session),
                    CKR_PIN_INCORRECT,
                    "login {i} with the wrong held PIN"
                );
            });
        }
    });
    let tried = backend_logins(&spy) - base;
    println!("hostile held PIN: 30 app logins with a wrong held PIN, {tried} reached the token");
    assert_eq!(tried, 1, "logins that reached the token");
    wait_health(&addr, ServingStatus::NotServing);
    let log = t.log();
    assert!(log.contains("rejected the held PIN"), "the rejection is logged:\n{log}");
    assert!(!log.contains(WRONG_PIN), "the PIN appears in the log");
    // Rewriting the same content changes nothing.
    std::fs::write(&t.pin_file, WRONG_PIN).expect("rewrite");
    let mut raw = t.client();
    let s = raw.session_without_login();
    assert_eq!(login(&mut raw, s), CKR_PIN_INCORRECT);
    assert_eq!(backend_logins(&spy) - base, 1, "the unchanged PIN was tried again");
    // The right PIN arrives (a new enrollment, the kubelet swapping the Secret's file).
    std::fs::write(&t.pin_file, USER_PIN).expect("fix the PIN file");
    wait_health(&addr, ServingStatus::Serving);
    assert_eq!(login(&mut raw, s), CKR_OK, "login with the new PIN");
    assert_eq!(backend_logins(&spy) - base, 2);
    t.assert_still_serves("a rejected held PIN");
}
