//! The sidecar closes idle connections (`--idle-timeout-secs`), except the
//! last one of an application with sessions. The shim must not notice: it
//! does not reuse a connection idle for nearly that long, joins its
//! application again first, and an application that had no sessions simply
//! starts anew. One test per file: the shim is process-global state.

use std::time::Duration;

use cryptoki_sys::*;
use hsmbridge_conformance::module::Module;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::{SoftHsm, USER_PIN};

#[test]
fn calls_after_the_idle_timeout_work_and_sessions_survive_it() {
    let sidecar = Sidecar::start_with_args(SoftHsm::new(), None, &["--idle-timeout-secs", "1"]);
    for (k, v) in sidecar.shim_env() {
        std::env::set_var(k, v);
    }
    let shim = Module::load(sidecar.shim_lib()).expect("load the shim");
    let f = shim.fl();
    let (init, list, open, login, random) = (
        f.C_Initialize.expect("C_Initialize"),
        f.C_GetSlotList.expect("C_GetSlotList"),
        f.C_OpenSession.expect("C_OpenSession"),
        f.C_Login.expect("C_Login"),
        f.C_GenerateRandom.expect("C_GenerateRandom"),
    );
    let mut slots = [0 as CK_SLOT_ID; 4];
    let mut n = slots.len() as CK_ULONG;
    let mut buf = [0u8; 16];
    // SAFETY: function pointers from the shim's function list, which lives as long as `shim`;
    // every pointer is to a local of the length passed.
    unsafe {
        assert_eq!(init(std::ptr::null_mut()), CKR_OK);
        assert_eq!(list(CK_TRUE, slots.as_mut_ptr(), &mut n), CKR_OK);
    }
    // Idle with no session: the sidecar closes the connection and the application ends.
    std::thread::sleep(Duration::from_millis(2500));
    let mut session: CK_SESSION_HANDLE = 0;
    let mut pin = USER_PIN.as_bytes().to_vec();
    // SAFETY: as above.
    unsafe {
        let flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
        assert_eq!(
            open(slots[0], flags, std::ptr::null_mut(), None, &mut session),
            CKR_OK,
            "C_OpenSession after idling"
        );
        assert_eq!(
            login(session, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG),
            CKR_OK
        );
        assert_eq!(random(session, buf.as_mut_ptr(), buf.len() as CK_ULONG), CKR_OK);
    }
    // Idle with a logged-in session: the application and its session survive.
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            random(session, buf.as_mut_ptr(), buf.len() as CK_ULONG),
            CKR_OK,
            "the session after idling"
        );
        let mut info = CK_SESSION_INFO::default();
        assert_eq!(
            f.C_GetSessionInfo.expect("C_GetSessionInfo")(session, &mut info),
            CKR_OK
        );
        assert_eq!(info.state, CKS_RW_USER_FUNCTIONS, "still logged in");
    }
}
