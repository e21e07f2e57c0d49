//! The sidecar re-initializes a module that lost its token only when no
//! application has a session open (sidecar/src/recovery.rs): a session an
//! application holds is never pulled from under it. Once the last session is
//! closed, the module is re-initialized and the token serves again. One test
//! per file: the shim is process-global state.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmbridge_conformance::module::Module;
use hsmbridge_conformance::paths::sidecar_bin;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::SoftHsm;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `hsm-sidecar probe`: true when the sidecar says SERVING.
fn serving(addr: &str) -> bool {
    Command::new(sidecar_bin())
        .args(["probe", "--addr", addr])
        .output()
        .expect("run hsm-sidecar probe")
        .status
        .success()
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("not {what} within {within:?}");
}

#[test]
fn a_module_with_a_session_open_is_not_reinitialized_until_the_session_closes() {
    let addr = format!("127.0.0.1:{}", free_port());
    let sidecar = Sidecar::start_with_args(SoftHsm::new(), None, &["--health-addr", &addr]);
    wait_until("serving", Duration::from_secs(10), || serving(&addr));
    for (k, v) in sidecar.shim_env() {
        std::env::set_var(k, v);
    }
    let shim = Module::load(sidecar.shim_lib()).expect("load the shim");
    let f = shim.fl();
    let (init, list, open, close) = (
        f.C_Initialize.expect("C_Initialize"),
        f.C_GetSlotList.expect("C_GetSlotList"),
        f.C_OpenSession.expect("C_OpenSession"),
        f.C_CloseSession.expect("C_CloseSession"),
    );
    let mut slots = [0 as CK_SLOT_ID; 4];
    let mut n = slots.len() as CK_ULONG;
    let mut session: CK_SESSION_HANDLE = 0;
    // SAFETY: function pointers from the shim's function list, which lives as long as `shim`;
    // C_Initialize takes NULL; `slots` has the `n` entries `n` says; C_OpenSession gets no
    // callback (so NULL pApplication is never used) and the live local `session`.
    unsafe {
        assert_eq!(init(std::ptr::null_mut()), CKR_OK);
        assert_eq!(list(CK_TRUE, slots.as_mut_ptr(), &mut n), CKR_OK);
        assert_eq!(
            open(slots[0], CKF_SERIAL_SESSION, std::ptr::null_mut(), None, &mut session),
            CKR_OK
        );
    }

    let tokens = sidecar.softhsm().dir().join("tokens");
    let away = sidecar.softhsm().dir().join("away");
    std::fs::rename(&tokens, &away).expect("move the token store away");
    std::fs::create_dir(&tokens).expect("an empty token store");
    wait_until("NOT_SERVING", Duration::from_secs(10), || !serving(&addr));
    std::fs::remove_dir(&tokens).expect("remove the empty store");
    std::fs::rename(&away, &tokens).expect("move the token store back");
    // Long enough for recovery to have re-initialized, were no session open (4 s + 10 s).
    std::thread::sleep(Duration::from_secs(16));
    assert!(!serving(&addr), "still NOT_SERVING: the module was left alone");
    assert!(
        !sidecar.stderr().contains("module re-initialized"),
        "the module was re-initialized with a session open:\n{}",
        sidecar.stderr()
    );

    // SAFETY: `session` is the handle C_OpenSession returned above.
    let rv = unsafe { close(session) };
    // The token the session was on went away; SoftHSM may or may not still close it cleanly.
    assert!(
        rv == CKR_OK || rv == CKR_GENERAL_ERROR || rv == CKR_SESSION_HANDLE_INVALID,
        "C_CloseSession: {rv:#x}"
    );
    wait_until("SERVING after the last session closed", Duration::from_secs(20), || {
        serving(&addr)
    });
    assert!(
        sidecar.stderr().contains("module re-initialized"),
        "{}",
        sidecar.stderr()
    );
}
