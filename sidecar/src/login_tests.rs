//! The shared backend login against a module the test implements: one slot (0) whose login,
//! like SoftHSM's, ends with the last session closed on it, and hooks that hold one
//! C_OpenSession inside the module after the session is made (an app opening a session the
//! sidecar does not know of yet) or one C_CloseSession after the session is closed (an app
//! ending, not yet taken off the login).

use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

use cryptoki_sys::*;
use hsmbridge_proto::mechanism::RawParamMechanisms;
use hsmbridge_proto::wire::{self, request::Call, response::Result as Body};

use crate::apps::App;
use crate::audit::{Audit, Caller};
use crate::backend::Backend;
use crate::held_pin::HeldPin;
use crate::login::Logins;
use crate::metrics::Metrics;
use crate::service::Service;

const PIN: &[u8] = b"1234";

#[derive(Default)]
struct Module {
    /// Open sessions and their flags.
    sessions: HashMap<CK_SESSION_HANDLE, CK_FLAGS>,
    last_handle: CK_SESSION_HANDLE,
    login: Option<CK_USER_TYPE>,
    /// C_OpenSession answers CKR_SESSION_COUNT (a module at its session limit).
    full: bool,
    /// The next C_OpenSession tells this sender once its session is made, then waits for the receiver.
    hold_open: Option<Hold>,
    /// The same for the next C_CloseSession, once its session is closed.
    hold_close: Option<Hold>,
}

type Hold = (Sender<()>, Receiver<()>);

fn wait_in(hold: Option<Hold>) {
    if let Some((there, go_on)) = hold {
        let _ = there.send(());
        let _ = go_on.recv();
    }
}

static MODULE: Mutex<Option<Module>> = Mutex::new(None);
/// The module is one per process: its tests take turns.
static TURNS: Mutex<()> = Mutex::new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn with_module<R>(f: impl FnOnce(&mut Module) -> R) -> R {
    f(lock(&MODULE).as_mut().expect("module set up"))
}

extern "C" fn open_session(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _app: *mut std::ffi::c_void,
    _notify: CK_NOTIFY,
    out: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    let (rv, hold) = with_module(|m| {
        if slot != 0 {
            return (CKR_SLOT_ID_INVALID, None);
        }
        if flags & CKF_SERIAL_SESSION == 0 {
            return (CKR_SESSION_PARALLEL_NOT_SUPPORTED, None);
        }
        if m.full {
            return (CKR_SESSION_COUNT, None);
        }
        if m.login == Some(CKU_SO) && flags & CKF_RW_SESSION == 0 {
            return (CKR_SESSION_READ_WRITE_SO_EXISTS, None);
        }
        m.last_handle += 1;
        m.sessions.insert(m.last_handle, flags);
        // SAFETY: the caller's CK_SESSION_HANDLE to write, as C_OpenSession's contract says.
        unsafe { *out = m.last_handle };
        (CKR_OK, m.hold_open.take())
    });
    wait_in(hold);
    rv
}

extern "C" fn close_session(session: CK_SESSION_HANDLE) -> CK_RV {
    let (rv, hold) = with_module(|m| {
        if m.sessions.remove(&session).is_none() {
            return (CKR_SESSION_HANDLE_INVALID, None);
        }
        if m.sessions.is_empty() {
            m.login = None;
        }
        (CKR_OK, m.hold_close.take())
    });
    wait_in(hold);
    rv
}

extern "C" fn get_session_info(session: CK_SESSION_HANDLE, info: *mut CK_SESSION_INFO) -> CK_RV {
    with_module(|m| {
        let Some(&flags) = m.sessions.get(&session) else {
            return CKR_SESSION_HANDLE_INVALID;
        };
        let rw = flags & CKF_RW_SESSION != 0;
        let state = match (m.login, rw) {
            (None, false) => CKS_RO_PUBLIC_SESSION,
            (None, true) => CKS_RW_PUBLIC_SESSION,
            (Some(CKU_SO), _) => CKS_RW_SO_FUNCTIONS,
            (Some(_), false) => CKS_RO_USER_FUNCTIONS,
            (Some(_), true) => CKS_RW_USER_FUNCTIONS,
        };
        // SAFETY: the caller's CK_SESSION_INFO to fill, as C_GetSessionInfo's contract says.
        unsafe {
            *info = CK_SESSION_INFO {
                slotID: 0,
                state,
                flags,
                ulDeviceError: 0,
            }
        };
        CKR_OK
    })
}

extern "C" fn login(session: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: *mut CK_UTF8CHAR, len: CK_ULONG) -> CK_RV {
    with_module(|m| {
        if !m.sessions.contains_key(&session) {
            return CKR_SESSION_HANDLE_INVALID;
        }
        match m.login {
            Some(u) if u == user => return CKR_USER_ALREADY_LOGGED_IN,
            Some(_) => return CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
            None => {}
        }
        let pin = if pin.is_null() {
            &[][..]
        } else {
            // SAFETY: the caller's `len` bytes at `pin`, as C_Login's contract says.
            unsafe { std::slice::from_raw_parts(pin, len as usize) }
        };
        if pin != PIN {
            return CKR_PIN_INCORRECT;
        }
        m.login = Some(user);
        CKR_OK
    })
}

extern "C" fn logout(session: CK_SESSION_HANDLE) -> CK_RV {
    with_module(|m| {
        if !m.sessions.contains_key(&session) {
            return CKR_SESSION_HANDLE_INVALID;
        }
        if m.login.take().is_none() {
            return CKR_USER_NOT_LOGGED_IN;
        }
        CKR_OK
    })
}

static FUNCTIONS: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
    version: CK_VERSION { major: 2, minor: 40 },
    C_Initialize: None,
    C_Finalize: None,
    C_GetInfo: None,
    C_GetFunctionList: None,
    C_GetSlotList: None,
    C_GetSlotInfo: None,
    C_GetTokenInfo: None,
    C_GetMechanismList: None,
    C_GetMechanismInfo: None,
    C_InitToken: None,
    C_InitPIN: None,
    C_SetPIN: None,
    C_OpenSession: Some(open_session),
    C_CloseSession: Some(close_session),
    C_CloseAllSessions: None,
    C_GetSessionInfo: Some(get_session_info),
    C_GetOperationState: None,
    C_SetOperationState: None,
    C_Login: Some(login),
    C_Logout: Some(logout),
    C_CreateObject: None,
    C_CopyObject: None,
    C_DestroyObject: None,
    C_GetObjectSize: None,
    C_GetAttributeValue: None,
    C_SetAttributeValue: None,
    C_FindObjectsInit: None,
    C_FindObjects: None,
    C_FindObjectsFinal: None,
    C_EncryptInit: None,
    C_Encrypt: None,
    C_EncryptUpdate: None,
    C_EncryptFinal: None,
    C_DecryptInit: None,
    C_Decrypt: None,
    C_DecryptUpdate: None,
    C_DecryptFinal: None,
    C_DigestInit: None,
    C_Digest: None,
    C_DigestUpdate: None,
    C_DigestKey: None,
    C_DigestFinal: None,
    C_SignInit: None,
    C_Sign: None,
    C_SignUpdate: None,
    C_SignFinal: None,
    C_SignRecoverInit: None,
    C_SignRecover: None,
    C_VerifyInit: None,
    C_Verify: None,
    C_VerifyUpdate: None,
    C_VerifyFinal: None,
    C_VerifyRecoverInit: None,
    C_VerifyRecover: None,
    C_DigestEncryptUpdate: None,
    C_DecryptDigestUpdate: None,
    C_SignEncryptUpdate: None,
    C_DecryptVerifyUpdate: None,
    C_GenerateKey: None,
    C_GenerateKeyPair: None,
    C_WrapKey: None,
    C_UnwrapKey: None,
    C_DeriveKey: None,
    C_SeedRandom: None,
    C_GenerateRandom: None,
    C_GetFunctionStatus: None,
    C_CancelFunction: None,
    C_WaitForSlotEvent: None,
};

struct Setup {
    service: Arc<Service>,
    _pin_dir: Option<tempfile::TempDir>,
    _turn: MutexGuard<'static, ()>,
}

/// A sidecar on a fresh module; managed (holding the PIN) or not.
fn setup(managed: bool) -> Setup {
    let turn = lock(&TURNS);
    *lock(&MODULE) = Some(Module::default());
    let (pin_dir, held) = if managed {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pin");
        std::fs::write(&path, PIN).expect("write pin");
        let held = HeldPin::load(&path).expect("load pin");
        (Some(dir), Some(held))
    } else {
        (None, None)
    };
    let service = Service::new(
        Backend::from_functions(&FUNCTIONS),
        Logins::new(held),
        RawParamMechanisms::new([]).expect("no raw-parameter mechanisms"),
        Arc::new(Metrics::new(false, "test")),
        Audit::off(),
    );
    Setup {
        service,
        _pin_dir: pin_dir,
        _turn: turn,
    }
}

fn open(service: &Service, app: &App) -> u64 {
    let r = service.handle(
        app,
        Call::OpenSession(wire::OpenSession {
            slot: 0,
            flags: (CKF_SERIAL_SESSION | CKF_RW_SESSION) as u64,
        }),
    );
    match (r.rv as CK_RV, r.result) {
        (CKR_OK, Some(Body::Ulong(h))) => h,
        other => panic!("C_OpenSession: {other:?}"),
    }
}

fn log_in(service: &Service, app: &App, session: u64, pin: Option<&[u8]>) -> CK_RV {
    let r = service.handle(
        app,
        Call::Login(wire::Login {
            session,
            user_type: CKU_USER as u64,
            pin: pin.map(<[u8]>::to_vec),
        }),
    );
    r.rv as CK_RV
}

/// `ending` (logged in) ends while `opening` is inside C_OpenSession, its session made in the
/// module but not yet recorded as its own: the order the hostile sessions-cap test met in CI
/// (the attacker's connection closed, pkcs11-tool opening its session). Returns the new session.
fn end_while_another_opens(service: &Service, ending: &App, opening: &App, meanwhile: impl FnOnce()) -> u64 {
    let (opened_tx, opened_rx) = channel();
    let (go_on_tx, go_on_rx) = channel();
    with_module(|m| m.hold_open = Some((opened_tx, go_on_rx)));
    std::thread::scope(|scope| {
        // Dropped if an assertion fails here, which lets the opener go on, and the scope end.
        let go_on_tx = go_on_tx;
        let opener = scope.spawn(|| open(service, opening));
        opened_rx.recv().expect("C_OpenSession reached");
        meanwhile();
        assert!(service.apps.leave(ending), "the ending app's last connection");
        service.end_app(ending);
        go_on_tx.send(()).expect("opener waiting");
        opener.join().expect("opener")
    })
}

/// A new app's C_Login must never meet the login of an app that ended: it is not logged in, so
/// PKCS#11 allows it CKR_OK or a PIN error, never CKR_USER_ALREADY_LOGGED_IN; and until it logs
/// in, the module must not be logged in for nobody (its private objects open to any app).
#[test]
fn an_app_ending_while_another_opens_a_session_logs_the_backend_out() {
    let s = setup(true);
    let service = &s.service;
    let attacker = service.apps.create(Caller::default()).expect("app");
    let a = open(service, &attacker);
    assert_eq!(log_in(service, &attacker, a, None), CKR_OK);
    let tool = service.apps.create(Caller::default()).expect("app");
    let t = end_while_another_opens(service, &attacker, &tool, || {});
    let left_logged_in = with_module(|m| m.login);
    let rv = log_in(service, &tool, t, None);
    assert_eq!(rv, CKR_OK, "the new app's C_Login: {}", crate::rv::Rv(rv));
    assert_eq!(
        left_logged_in, None,
        "the module stayed logged in after the only logged-in app ended"
    );
    assert!(service.logins.is_logged_in(&tool, 0));
    assert_eq!(with_module(|m| m.login), Some(CKU_USER));
}

/// The same order on a module that opens no session for the sidecar itself (at its session limit),
/// so the login stays behind: the next app's C_Login takes it over only with the right PIN.
#[test]
fn a_login_left_behind_is_logged_out_and_the_new_pin_judged() {
    let s = setup(false);
    let service = &s.service;
    let ending = service.apps.create(Caller::default()).expect("app");
    let e = open(service, &ending);
    assert_eq!(log_in(service, &ending, e, Some(PIN)), CKR_OK);
    let next = service.apps.create(Caller::default()).expect("app");
    let n = end_while_another_opens(service, &ending, &next, || with_module(|m| m.full = true));
    with_module(|m| m.full = false);
    assert_eq!(
        with_module(|m| m.login),
        Some(CKU_USER),
        "set-up: the login stays behind"
    );
    let rv = log_in(service, &next, n, Some(b"wrong"));
    assert_eq!(rv, CKR_PIN_INCORRECT, "a wrong PIN: {}", crate::rv::Rv(rv));
    assert!(!service.logins.is_logged_in(&next, 0));
    assert_eq!(with_module(|m| m.login), None, "the login left behind is gone");
    let rv = log_in(service, &next, n, Some(PIN));
    assert_eq!(rv, CKR_OK, "the right PIN: {}", crate::rv::Rv(rv));
    assert!(service.logins.is_logged_in(&next, 0));
}

/// C_Logout on a session the app's other thread is closing (the module closed it, the app has not
/// forgotten it yet), with another session of the app keeping the module's login alive: the
/// module is logged out all the same, as the app's bookkeeping says.
#[test]
fn a_logout_through_a_session_closing_meanwhile_still_logs_the_backend_out() {
    let s = setup(true);
    let service = &s.service;
    let app = service.apps.create(Caller::default()).expect("app");
    let closing = open(service, &app);
    let _other = open(service, &app);
    assert_eq!(log_in(service, &app, closing, None), CKR_OK);
    assert_eq!(close_session(closing as CK_SESSION_HANDLE), CKR_OK);
    let r = service.handle(&app, Call::Logout(wire::Session { session: closing }));
    assert_eq!(r.rv as CK_RV, CKR_OK, "C_Logout: {}", crate::rv::Rv(r.rv as CK_RV));
    assert!(!service.logins.is_logged_in(&app, 0));
    assert_eq!(with_module(|m| m.login), None, "the module stayed logged in");
}

/// The other order: the ending app's last session is closed in the module (which logged itself
/// out with it), the app not yet taken off the login, when a new app logs in. It must not be
/// admitted to the login the module no longer has (its C_Login answered CKR_OK, then its calls
/// CKR_USER_NOT_LOGGED_IN): the module logs it in.
#[test]
fn an_app_logging_in_while_the_logged_in_one_closes_its_last_session_is_logged_in() {
    let s = setup(true);
    let service = &s.service;
    let ending = service.apps.create(Caller::default()).expect("app");
    let e = open(service, &ending);
    assert_eq!(log_in(service, &ending, e, None), CKR_OK);
    let next = service.apps.create(Caller::default()).expect("app");
    let (closed_tx, closed_rx) = channel();
    let (go_on_tx, go_on_rx) = channel();
    with_module(|m| m.hold_close = Some((closed_tx, go_on_rx)));
    std::thread::scope(|scope| {
        // Dropped if an assertion fails here, which lets the ender go on, and the scope end.
        let go_on_tx = go_on_tx;
        let ender = scope.spawn(|| {
            assert!(service.apps.leave(&ending), "the ending app's last connection");
            service.end_app(&ending)
        });
        closed_rx.recv().expect("C_CloseSession reached");
        assert_eq!(with_module(|m| m.login), None, "set-up: the module logged itself out");
        let n = open(service, &next);
        let rv = log_in(service, &next, n, None);
        assert_eq!(rv, CKR_OK, "the new app's C_Login: {}", crate::rv::Rv(rv));
        assert_eq!(
            with_module(|m| m.login),
            Some(CKU_USER),
            "the new app was admitted to a login the module no longer had"
        );
        go_on_tx.send(()).expect("ender waiting");
        assert_eq!(ender.join().expect("ender"), 1, "sessions closed");
    });
    assert!(service.logins.is_logged_in(&next, 0));
    assert_eq!(
        with_module(|m| m.login),
        Some(CKU_USER),
        "still logged in for the new app"
    );
}
