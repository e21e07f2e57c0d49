//! Session management: sessions are recorded as their application's (up to
//! its caps, see `apps`), and the session state an application sees
//! reflects its own login.

use cryptoki_sys::*;
use hsmbridge_proto::wire::{self, response::Result as Body};

use crate::apps::App;
use crate::backend::p11;
use crate::reply;
use crate::service::{Answer, Service};

impl Service {
    pub(crate) fn open_session(&self, app: &App, c: wire::OpenSession) -> Answer {
        let slot = c.slot as CK_SLOT_ID;
        // Past a cap (`apps::MAX_SESSIONS_PER_APP`, `apps::MAX_SESSIONS`) the module is not asked.
        let room = app.reserve_session()?;
        let mut h: CK_SESSION_HANDLE = 0;
        // SAFETY: `h` is a live handle for the module to write; no application pointer (NULL) and no notify callback.
        let rv = unsafe {
            p11!(
                self.backend,
                C_OpenSession(slot, c.flags as CK_FLAGS, std::ptr::null_mut(), None, &mut h)
            )
        };
        if rv == CKR_OK {
            room.opened(h as u64, slot);
        }
        Ok(reply::ulong(rv, h))
    }

    pub(crate) fn close_session(&self, app: &App, session: u64) -> Answer {
        let slot = app.slot_of(session)?;
        // SAFETY: only a session handle, the app's (checked by `slot_of`/`sessions_on`); no pointers.
        let rv = unsafe { p11!(self.backend, C_CloseSession(session as CK_SESSION_HANDLE)) };
        if rv == CKR_OK || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED {
            app.remove_session(session);
            self.session_gone(session);
            self.logins.sessions_closed(&self.backend, &self.apps, app, slot);
        }
        Ok(reply::rv(rv))
    }

    /// Closes this application's sessions on the slot, not other applications'.
    pub(crate) fn close_all_sessions(&self, app: &App, slot: u64) -> Answer {
        let slot = slot as CK_SLOT_ID;
        let mut info = CK_TOKEN_INFO::default();
        // The same slot and token checks the backend's C_CloseAllSessions makes.
        // SAFETY: `info` is a live, aligned CK_TOKEN_INFO for the module to fill.
        let rv = unsafe { p11!(self.backend, C_GetTokenInfo(slot, &mut info)) };
        if rv != CKR_OK {
            return Err(rv);
        }
        for session in app.sessions_on(slot) {
            // SAFETY: only a session handle, the app's (checked by `slot_of`/`sessions_on`); no pointers.
            unsafe { p11!(self.backend, C_CloseSession(session as CK_SESSION_HANDLE)) };
            app.remove_session(session);
            self.session_gone(session);
        }
        self.logins.sessions_closed(&self.backend, &self.apps, app, slot);
        Ok(reply::rv(CKR_OK))
    }

    pub(crate) fn get_session_info(&self, app: &App, session: u64) -> Answer {
        let s = self.session(app, session)?;
        let mut i = CK_SESSION_INFO::default();
        // SAFETY: `i` is a live, aligned CK_SESSION_INFO for the module to fill; `s` is the app's (`self.session`).
        let rv = unsafe { p11!(self.backend, C_GetSessionInfo(s, &mut i)) };
        let logged_in_elsewhere = matches!(
            i.state,
            CKS_RO_USER_FUNCTIONS | CKS_RW_USER_FUNCTIONS | CKS_RW_SO_FUNCTIONS
        ) && !self.logins.is_logged_in(app, i.slotID);
        if logged_in_elsewhere {
            // The backend is logged in for another application, not this one.
            i.state = if i.flags & CKF_RW_SESSION != 0 {
                CKS_RW_PUBLIC_SESSION
            } else {
                CKS_RO_PUBLIC_SESSION
            };
        }
        Ok(reply::on_ok(rv, || {
            Body::SessionInfo(wire::SessionInfo {
                slot: i.slotID as u64,
                state: i.state as u64,
                flags: i.flags as u64,
                device_error: i.ulDeviceError as u64,
            })
        }))
    }

    pub(crate) fn get_operation_state(&self, app: &App, c: wire::SessionOutput) -> Answer {
        let s = self.session(app, c.session)?;
        // SAFETY: `with_output`'s buffer and length are valid for the call (see there); `s` is the app's.
        Ok(reply::with_output(c.capacity, c.length_null, |p, n| unsafe {
            p11!(self.backend, C_GetOperationState(s, p, n))
        }))
    }

    /// In managed mode refused: a state blob is the module's own format, and
    /// a module that restores it by copying would take pointers from the app
    /// into the process that holds the PIN.
    pub(crate) fn set_operation_state(&self, app: &App, mut c: wire::SetOperationState) -> Answer {
        let s = self.session(app, c.session)?;
        if self.logins.managed() {
            return Err(CKR_FUNCTION_NOT_SUPPORTED);
        }
        // 0 is "no key"; any other must be a key this application may use.
        for key in [c.encryption_key, c.authentication_key] {
            if key != 0 {
                self.key(app, key)?;
            }
        }
        // SAFETY: `c.state` is given with its length and outlives the call; the keys are 0 or the
        // app's (checked above), handles only.
        let rv = unsafe {
            p11!(
                self.backend,
                C_SetOperationState(
                    s,
                    c.state.as_mut_ptr(),
                    c.state.len() as CK_ULONG,
                    c.encryption_key as CK_OBJECT_HANDLE,
                    c.authentication_key as CK_OBJECT_HANDLE,
                )
            )
        };
        Ok(reply::rv(rv))
    }
}
