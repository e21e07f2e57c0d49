//! The sidecar as a kubelet sees it: the gRPC health service follows the
//! backend's token, and SIGTERM shuts down cleanly.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmbridge_conformance::module::Module;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::{SoftHsm, USER_PIN};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn status(addr: &str) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut client = HealthClient::new(channel);
    let resp = client.check(HealthCheckRequest { service: String::new() }).await.ok()?;
    ServingStatus::try_from(resp.into_inner().status).ok()
}

/// Polls until the health service answers `want` (the sidecar checks every 2 s).
async fn wait_for(addr: &str, want: ServingStatus, within: Duration) {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        last = status(addr).await;
        if last == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("health is {last:?} after {within:?}, expected {want:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn health_follows_the_token_away_and_back() {
    let addr = format!("127.0.0.1:{}", free_port());
    let sidecar = Sidecar::start_with_args(SoftHsm::new(), None, &["--health-addr", &addr]);
    wait_for(&addr, ServingStatus::Serving, Duration::from_secs(10)).await;
    // The token disappears (for Primus: every HSM of the cluster down). SoftHSM then answers
    // C_GetTokenInfo with CKR_GENERAL_ERROR, and keeps doing so after the token is back.
    let tokens = sidecar.softhsm().dir().join("tokens");
    let away = sidecar.softhsm().dir().join("away");
    std::fs::create_dir_all(&away).expect("mkdir away");
    let mut moved = Vec::new();
    for entry in std::fs::read_dir(&tokens).expect("token dir") {
        let path = entry.expect("entry").path();
        let to = away.join(path.file_name().expect("a name"));
        std::fs::rename(&path, &to).unwrap_or_else(|e| panic!("moving {}: {e}", path.display()));
        moved.push((to, path));
    }
    wait_for(&addr, ServingStatus::NotServing, Duration::from_secs(10)).await;
    for (from, to) in moved {
        std::fs::rename(&from, &to).unwrap_or_else(|e| panic!("moving {} back: {e}", from.display()));
    }
    // No session is open, so the sidecar re-initializes the module (recovery.rs): within
    // UNREACHABLE_FOR + RETRY_EVERY (14 s) plus a health period.
    wait_for(&addr, ServingStatus::Serving, Duration::from_secs(20)).await;
    assert!(
        sidecar.stderr().contains("module re-initialized"),
        "the sidecar's log should say it re-initialized the module:\n{}",
        sidecar.stderr()
    );
}

#[test]
fn sigterm_closes_sessions_and_removes_the_socket() {
    let mut sidecar = Sidecar::start();
    // This process is an application with a logged-in session when SIGTERM comes.
    for (k, v) in sidecar.shim_env() {
        std::env::set_var(k, v);
    }
    let shim = Module::load(sidecar.shim_lib()).expect("load the shim");
    let f = shim.fl();
    let mut session: CK_SESSION_HANDLE = 0;
    // SAFETY: `f` is the function list of `shim`, loaded to the end of this test. C_Initialize:
    // pInitArgs NULL is allowed. C_GetSlotList: `slots` has the `n` writable entries `n` says.
    // C_OpenSession: no Notify callback, so pApplication NULL is never used; phSession is the live
    // local `session`. C_Login: pPin is `pin`, a live buffer of the `pin.len()` bytes passed.
    unsafe {
        assert_eq!(f.C_Initialize.expect("C_Initialize")(std::ptr::null_mut()), CKR_OK);
        let mut slots = [0 as CK_SLOT_ID; 4];
        let mut n = slots.len() as CK_ULONG;
        assert_eq!(
            f.C_GetSlotList.expect("C_GetSlotList")(CK_TRUE, slots.as_mut_ptr(), &mut n),
            CKR_OK
        );
        let flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
        let rv = f.C_OpenSession.expect("C_OpenSession")(slots[0], flags, std::ptr::null_mut(), None, &mut session);
        assert_eq!(rv, CKR_OK);
        let mut pin = USER_PIN.as_bytes().to_vec();
        assert_eq!(
            f.C_Login.expect("C_Login")(session, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG),
            CKR_OK
        );
    }
    let socket = sidecar.socket().to_path_buf();
    let status = sidecar
        .terminate(Duration::from_secs(10))
        .expect("the sidecar exits within 10 s of SIGTERM");
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        sidecar.stderr()
    );
    assert!(!socket.exists(), "the socket file is removed");
    let log = sidecar.stderr();
    let after: Vec<&str> = log.lines().skip_while(|l| !l.contains("shutting down")).collect();
    assert!(
        after
            .iter()
            .any(|l| l.contains("application ended") && l.contains("sessions_closed=1")),
        "the connected application's session was not closed during shutdown:\n{log}"
    );
    // The application is told, not left hanging.
    let mut info = CK_SESSION_INFO::default();
    // SAFETY: `f` is still the loaded shim's function list (`shim` lives to the end of this test;
    // only the sidecar is gone); `info` is a live, writable CK_SESSION_INFO.
    let rv = unsafe { f.C_GetSessionInfo.expect("C_GetSessionInfo")(session, &mut info) };
    assert!(
        matches!(rv, CKR_DEVICE_ERROR | CKR_DEVICE_REMOVED),
        "after shutdown: {rv:#x}"
    );
}
