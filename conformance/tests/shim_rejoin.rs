//! When the shim's only connection is stale and joining the application again
//! with a new connection fails (here: the socket path is gone, as if the
//! sidecar refused connections), the shim must not close that connection —
//! it is the application's last one, which the sidecar keeps open while the
//! application has sessions — but use it for the call. One test per file: the
//! shim is process-global state.

use std::time::Duration;

use cryptoki_sys::*;
use hsmbridge_conformance::module::Module;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::{SoftHsm, USER_PIN};

#[test]
fn a_failed_rejoin_keeps_the_last_connection_and_the_session() {
    let sidecar = Sidecar::start_with_args(SoftHsm::new(), None, &["--idle-timeout-secs", "1"]);
    for (k, v) in sidecar.shim_env() {
        std::env::set_var(k, v);
    }
    let shim = Module::load(sidecar.shim_lib()).expect("load the shim");
    let f = shim.fl();
    let (init, list, open, login, random, info) = (
        f.C_Initialize.expect("C_Initialize"),
        f.C_GetSlotList.expect("C_GetSlotList"),
        f.C_OpenSession.expect("C_OpenSession"),
        f.C_Login.expect("C_Login"),
        f.C_GenerateRandom.expect("C_GenerateRandom"),
        f.C_GetSessionInfo.expect("C_GetSessionInfo"),
    );
    let mut slots = [0 as CK_SLOT_ID; 4];
    let mut n = slots.len() as CK_ULONG;
    let mut buf = [0u8; 16];
    let mut session: CK_SESSION_HANDLE = 0;
    let mut pin = USER_PIN.as_bytes().to_vec();
    // SAFETY: function pointers from the shim's function list, which lives as long as `shim`;
    // every pointer is to a local of the length passed.
    unsafe {
        assert_eq!(init(std::ptr::null_mut()), CKR_OK);
        assert_eq!(list(CK_TRUE, slots.as_mut_ptr(), &mut n), CKR_OK);
        let flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
        assert_eq!(open(slots[0], flags, std::ptr::null_mut(), None, &mut session), CKR_OK);
        assert_eq!(
            login(session, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG),
            CKR_OK
        );
        assert_eq!(random(session, buf.as_mut_ptr(), buf.len() as CK_ULONG), CKR_OK);
    }
    // Idle past the timeout: the shim's connection is stale to it, but the
    // sidecar keeps it (the last connection of an application with a session).
    std::thread::sleep(Duration::from_millis(2500));
    // New connections fail (ENOENT) while the open one stays valid.
    let socket = sidecar.socket().to_path_buf();
    let away = socket.with_extension("away");
    std::fs::rename(&socket, &away).expect("move the socket away");
    // SAFETY: as above.
    let rv = unsafe { random(session, buf.as_mut_ptr(), buf.len() as CK_ULONG) };
    std::fs::rename(&away, &socket).expect("move the socket back");
    assert_eq!(rv, CKR_OK, "C_GenerateRandom while the rejoin cannot connect");
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            random(session, buf.as_mut_ptr(), buf.len() as CK_ULONG),
            CKR_OK,
            "the session afterwards"
        );
        let mut si = CK_SESSION_INFO::default();
        assert_eq!(info(session, &mut si), CKR_OK);
        assert_eq!(si.state, CKS_RW_USER_FUNCTIONS, "still logged in");
    }
    // And once more after idling again, now that new connections work.
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            random(session, buf.as_mut_ptr(), buf.len() as CK_ULONG),
            CKR_OK,
            "the session after idling again"
        );
        let mut si = CK_SESSION_INFO::default();
        assert_eq!(info(session, &mut si), CKR_OK);
        assert_eq!(si.state, CKS_RW_USER_FUNCTIONS, "still logged in after idling again");
    }
}
