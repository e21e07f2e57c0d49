//! Login state per application on top of the backend's single login.
//!
//! The backend knows one application (the sidecar) and one login per token.
//! The first application to log in logs the backend in; later applications
//! are admitted after their PIN is checked against the one that worked (or,
//! in managed mode, because the sidecar holds the PIN). The backend is logged
//! out when the last logged-in application logs out or ends, and PKCS#11's
//! "closing your last session logs you out" holds per application.
//!
//! Sessions are opened and closed without the logins' lock, so the backend's
//! login can change under the bookkeeping: it logs itself out when its last
//! session closes (an ending application's, before the application is taken
//! off the login), and a session being opened (in the module, not yet its
//! application's) keeps it logged in past the last session the sidecar knows
//! of. So the last logged-in application's leaving logs the backend out
//! through a session of the sidecar's own, and a C_Login looks at the
//! backend's state before it trusts the bookkeeping: an application is not
//! admitted to a login the backend no longer has, nor refused over one that
//! no application holds.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use cryptoki_sys::*;
use tracing::warn;
use zeroize::Zeroizing;

use crate::apps::{App, Apps};
use crate::backend::{p11, Backend};
use crate::held_pin::HeldPin;

/// Other applications' sessions [`logout_backend`] tries to log the backend
/// out through, when the module opens no session for the sidecar, before it
/// gives up (each one closed under it by its application).
const LOGOUT_TRIES: usize = 64;

/// Who is logged in on one slot.
struct SlotLogin {
    user_type: CK_USER_TYPE,
    apps: HashSet<u64>,
    /// The PIN the backend accepted; later apps must present the same one.
    pin: Zeroizing<Vec<u8>>,
}

/// What a C_Login did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginResult {
    pub rv: CK_RV,
    /// The backend's C_Login ran and changed its state (the first login on the slot, or a
    /// context-specific one), as opposed to an app admitted to the backend's existing login.
    pub backend: bool,
}

pub struct Logins {
    slots: Mutex<HashMap<CK_SLOT_ID, SlotLogin>>,
    /// Managed mode: the user PIN the sidecar holds.
    managed_pin: Option<HeldPin>,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A C_Logout answer that leaves the backend logged out.
fn logged_out(rv: CK_RV) -> bool {
    rv == CKR_OK || rv == CKR_USER_NOT_LOGGED_IN
}

/// An answer about a session the module has closed (its application closing it meanwhile).
fn session_gone(rv: CK_RV) -> bool {
    rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED
}

/// Whether the backend is logged in on the slot of `session`, as that session's state says.
fn backend_logged_in(backend: &Backend, session: u64) -> Result<bool, CK_RV> {
    let mut info = CK_SESSION_INFO::default();
    // SAFETY: `info` is a live, aligned CK_SESSION_INFO for the module to fill; the handle is the app's
    // (checked by `slot_of`).
    let rv = unsafe { p11!(backend, C_GetSessionInfo(session as CK_SESSION_HANDLE, &mut info)) };
    if rv != CKR_OK {
        return Err(rv);
    }
    Ok(matches!(
        info.state,
        CKS_RO_USER_FUNCTIONS | CKS_RW_USER_FUNCTIONS | CKS_RW_SO_FUNCTIONS
    ))
}

/// Logs the backend out on `slot`, where no application is logged in any more. The caller holds
/// the logins' lock, so no application's C_Login comes between. It is done through a session
/// the sidecar opens for it: an application's session may be closing under it (its application
/// ending on another thread), and a session being opened is in the module before its
/// application records it, keeping the login alive when no application has a session the
/// sidecar knows of. Only a module that opens no session for it (at its session limit) is logged
/// out through `others`' sessions, each tried until one is not closed meanwhile. Whether the
/// backend is logged out now.
fn logout_backend(backend: &Backend, slot: CK_SLOT_ID, mut others: impl FnMut() -> Option<u64>) -> bool {
    // Read-write first: beside an SO login a read-only session is refused; a write-protected
    // token opens read-only ones only.
    for flags in [CKF_SERIAL_SESSION | CKF_RW_SESSION, CKF_SERIAL_SESSION] {
        let mut own: CK_SESSION_HANDLE = 0;
        // SAFETY: `own` is a live handle for the module to write; no application pointer (NULL) and no notify
        // callback.
        let rv = unsafe {
            p11!(
                backend,
                C_OpenSession(slot, flags, std::ptr::null_mut(), None, &mut own)
            )
        };
        if rv == CKR_OK {
            // SAFETY: only a session handle, the one just opened, no application's; no pointers.
            let out = unsafe { p11!(backend, C_Logout(own)) };
            // SAFETY: the same handle; no pointers.
            unsafe { p11!(backend, C_CloseSession(own)) };
            return logged_out(out);
        }
    }
    for _ in 0..LOGOUT_TRIES {
        let Some(other) = others() else { return false };
        // SAFETY: only a session handle, an application's on the slot; no pointers.
        let rv = unsafe { p11!(backend, C_Logout(other as CK_SESSION_HANDLE)) };
        if !session_gone(rv) {
            return logged_out(rv);
        }
    }
    false
}

impl Logins {
    pub fn new(managed_pin: Option<HeldPin>) -> Self {
        Logins {
            slots: Mutex::new(HashMap::new()),
            managed_pin,
        }
    }

    pub fn managed(&self) -> bool {
        self.managed_pin.is_some()
    }

    /// Managed mode with a held PIN the token rejected (health reports it).
    pub fn held_pin_rejected(&self) -> bool {
        self.managed_pin.as_ref().is_some_and(HeldPin::is_rejected)
    }

    /// The held credential's generation (0 without one, or without a generation file).
    pub fn credential_generation(&self) -> i64 {
        self.managed_pin.as_ref().map_or(0, HeldPin::generation)
    }

    /// Managed mode: whether the PIN file holds a PIN not adopted yet (`monitor.rs`).
    pub fn credential_changed_on_disk(&self) -> bool {
        self.managed_pin.as_ref().is_some_and(HeldPin::changed_on_disk)
    }

    /// Managed mode: takes the PIN file's new PIN; its generation, if it changed.
    pub fn adopt_credential(&self) -> Option<i64> {
        self.managed_pin.as_ref().and_then(HeldPin::adopt)
    }

    /// Whether the backend is logged in on some slot (metrics).
    pub fn any_logged_in(&self) -> bool {
        !self.slots().is_empty()
    }

    /// Forgets every login: the module was re-initialized (C_Finalize logged it out).
    pub fn forget_all(&self) {
        self.slots().clear();
        if let Some(held) = &self.managed_pin {
            held.module_reinitialized();
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<CK_SLOT_ID, SlotLogin>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn login(
        &self,
        backend: &Backend,
        app: &App,
        session: u64,
        user_type: CK_USER_TYPE,
        pin: Option<Vec<u8>>,
    ) -> LoginResult {
        let only = |rv| LoginResult { rv, backend: false };
        let slot = match app.slot_of(session) {
            Ok(s) => s,
            Err(rv) => return only(rv),
        };
        let presented = pin.map(Zeroizing::new);
        match &self.managed_pin {
            // The held PIN is the user's: apps may not administer the token (SO)
            // nor offer it as another (vendor-defined) user's.
            Some(_) if !matches!(user_type, CKU_USER | CKU_CONTEXT_SPECIFIC) => only(CKR_USER_TYPE_INVALID),
            // Rejected before and unchanged since: the module is not asked again.
            Some(held) => {
                let mut backend_called = false;
                let rv = held.attempt(slot, |pin| {
                    let (rv, called) = self.login_with(backend, app, session, slot, user_type, &Some(pin.clone()));
                    backend_called = called;
                    rv
                });
                LoginResult {
                    rv,
                    backend: backend_called,
                }
            }
            None => {
                let (rv, called) = self.login_with(backend, app, session, slot, user_type, &presented);
                LoginResult { rv, backend: called }
            }
        }
    }

    fn login_with(
        &self,
        backend: &Backend,
        app: &App,
        session: u64,
        slot: CK_SLOT_ID,
        user_type: CK_USER_TYPE,
        pin: &Option<Zeroizing<Vec<u8>>>,
    ) -> (CK_RV, bool) {
        let (pin_ptr, pin_len) = match &pin {
            Some(p) => (p.as_ptr() as *mut u8, p.len() as CK_ULONG),
            None => (std::ptr::null_mut(), 0),
        };
        if user_type == CKU_CONTEXT_SPECIFIC {
            // SAFETY: `pin_ptr`/`pin_len` are the bytes `pin` owns (or NULL, 0), which outlive the call; PKCS#11's
            // C_Login only reads them (the `*mut` is the C signature's).
            let rv = unsafe {
                p11!(
                    backend,
                    C_Login(session as CK_SESSION_HANDLE, user_type, pin_ptr, pin_len)
                )
            };
            return (rv, true);
        }
        // SAFETY: `pin_ptr`/`pin_len` are the bytes `pin` owns (or NULL, 0), which outlive the call; PKCS#11's
        // C_Login only reads them (the `*mut` is the C signature's).
        let backend_login = || unsafe {
            p11!(
                backend,
                C_Login(session as CK_SESSION_HANDLE, user_type, pin_ptr, pin_len)
            )
        };
        let mut slots = self.slots();
        if slots.get(&slot).is_some_and(|s| !s.apps.contains(&app.id)) {
            // The apps logged in may all be losing their last session (an app ending on another
            // thread): the backend logged itself out with it, before they were taken off. The
            // login is theirs no more; this app's C_Login is the backend's again.
            // (A module that cannot tell leaves the bookkeeping trusted.)
            match backend_logged_in(backend, session) {
                Ok(false) => {
                    slots.remove(&slot);
                }
                Err(rv) if session_gone(rv) => return (rv, false),
                Ok(true) | Err(_) => {}
            }
        }
        let Some(s) = slots.get_mut(&slot) else {
            let mut rv = backend_login();
            if rv == CKR_USER_ALREADY_LOGGED_IN || rv == CKR_USER_ANOTHER_ALREADY_LOGGED_IN {
                // No app is logged in on the slot (none can log in meanwhile: this holds the
                // lock), yet the backend is: a login left behind by an app that ended, which could
                // not be logged out (see `logout_backend`). It is nobody's: logged out through
                // this app's session, and the backend judges this app's PIN.
                warn!(
                    slot,
                    app = app.id,
                    "the backend was logged in for no application: logged out before this login"
                );
                // SAFETY: only a session handle, the app's (checked by `slot_of`); no pointers.
                if logged_out(unsafe { p11!(backend, C_Logout(session as CK_SESSION_HANDLE)) }) {
                    rv = backend_login();
                }
            }
            if rv == CKR_OK {
                let kept = pin.clone().unwrap_or_default();
                slots.insert(
                    slot,
                    SlotLogin {
                        user_type,
                        apps: HashSet::from([app.id]),
                        pin: kept,
                    },
                );
            }
            return (rv, true);
        };
        let judged_by_backend =
            s.apps.contains(&app.id) || !matches!(user_type, CKU_USER | CKU_SO) || (pin.is_none() && !self.managed());
        if judged_by_backend {
            // The app's own repeated login, an unknown user type or a NULL
            // PIN: the backend's answer is the exact CK_RV (it is logged in
            // already, so this cannot change its state).
            return (backend_login(), false);
        }
        if s.user_type != user_type {
            return (CKR_USER_ANOTHER_ALREADY_LOGGED_IN, false);
        }
        let presented = pin.as_ref().map(|p| p.as_slice()).unwrap_or(&[]);
        if !self.managed() && !constant_time_eq(presented, &s.pin) {
            return (CKR_PIN_INCORRECT, false);
        }
        s.apps.insert(app.id);
        (CKR_OK, false)
    }

    pub fn logout(&self, backend: &Backend, app: &App, session: u64) -> CK_RV {
        let slot = match app.slot_of(session) {
            Ok(s) => s,
            Err(rv) => return rv,
        };
        let mut slots = self.slots();
        let Some(s) = slots.get_mut(&slot) else {
            // Nobody is logged in: the backend's own answer for that case.
            // SAFETY: only a session handle, the app's (checked by `slot_of`); no pointers.
            return unsafe { p11!(backend, C_Logout(session as CK_SESSION_HANDLE)) };
        };
        if !s.apps.remove(&app.id) {
            return CKR_USER_NOT_LOGGED_IN;
        }
        if !s.apps.is_empty() {
            return CKR_OK;
        }
        slots.remove(&slot);
        // SAFETY: only a session handle, the app's (checked by `slot_of`); no pointers.
        let rv = unsafe { p11!(backend, C_Logout(session as CK_SESSION_HANDLE)) };
        // The session closed meanwhile on another of the app's threads (the module closed it, the
        // app had not forgotten it yet), while other sessions keep the backend logged in: the
        // app is logged out all the same, and so must the backend be.
        if session_gone(rv)
            && logout_backend(backend, slot, || {
                app.sessions_on(slot).into_iter().find(|h| *h != session)
            })
        {
            return CKR_OK;
        }
        rv
    }

    /// Whether `app` is logged in on `slot` (for the session state it sees).
    pub fn is_logged_in(&self, app: &App, slot: CK_SLOT_ID) -> bool {
        self.slots().get(&slot).is_some_and(|s| s.apps.contains(&app.id))
    }

    /// After `app` lost sessions on `slot` (closed, or the app ended): an app
    /// with no session left there is logged out, and the backend too when no
    /// logged-in app remains ([`logout_backend`]: other apps' sessions may
    /// keep it logged in, some of them not known yet).
    pub fn sessions_closed(&self, backend: &Backend, apps: &Apps, app: &App, slot: CK_SLOT_ID) {
        if app.has_session_on(slot) {
            return;
        }
        let mut slots = self.slots();
        let Some(s) = slots.get_mut(&slot) else { return };
        s.apps.remove(&app.id);
        if !s.apps.is_empty() {
            return;
        }
        slots.remove(&slot);
        logout_backend(backend, slot, || apps.any_session_on(slot));
    }

    /// Forgets logins on `slot` (C_InitToken resets the token).
    pub fn forget_slot(&self, slot: CK_SLOT_ID) {
        self.slots().remove(&slot);
    }
}

#[cfg(test)]
#[path = "login_tests.rs"]
mod tests;
