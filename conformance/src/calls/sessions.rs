//! Session management, login, PINs, operation state, random numbers and the
//! legacy parallel-function calls.

use cryptoki_sys::*;

use super::{ck, input, Api, Out};

/// Readable `CK_STATE`.
fn state_name(state: CK_STATE) -> String {
    match state {
        CKS_RO_PUBLIC_SESSION => "RO_PUBLIC".into(),
        CKS_RO_USER_FUNCTIONS => "RO_USER".into(),
        CKS_RW_PUBLIC_SESSION => "RW_PUBLIC".into(),
        CKS_RW_USER_FUNCTIONS => "RW_USER".into(),
        CKS_RW_SO_FUNCTIONS => "RW_SO".into(),
        other => format!("{other:#x}"),
    }
}

fn user_name(user: CK_USER_TYPE) -> String {
    match user {
        CKU_SO => "CKU_SO".into(),
        CKU_USER => "CKU_USER".into(),
        CKU_CONTEXT_SPECIFIC => "CKU_CONTEXT_SPECIFIC".into(),
        other => format!("CKU_{other:#x}"),
    }
}

/// RW serial session flags.
pub const RW: CK_FLAGS = CKF_SERIAL_SESSION | CKF_RW_SESSION;
/// RO serial session flags.
pub const RO: CK_FLAGS = CKF_SERIAL_SESSION;

impl Api {
    pub fn open_session(&mut self, slot: CK_SLOT_ID, flags: CK_FLAGS) -> (CK_RV, CK_SESSION_HANDLE) {
        let mut h: CK_SESSION_HANDLE = 0;
        // SAFETY: C_OpenSession is an entry of `self`'s loaded module (see `ck!`); no application
        // pointer or notify callback, `h` is a live, writable handle.
        let rv = unsafe { ck!(self, C_OpenSession)(slot, flags, std::ptr::null_mut(), None, &mut h) };
        let details = if rv == CKR_OK {
            self.t.new_session(h)
        } else {
            String::new()
        };
        let call = format!("C_OpenSession({}, flags={flags:#x})", self.t.slot(slot));
        self.line(&call, rv, &details);
        (rv, h)
    }

    /// Opens a session and panics (with the rv) if the module refuses.
    pub fn must_open_session(&mut self, slot: CK_SLOT_ID, flags: CK_FLAGS) -> CK_SESSION_HANDLE {
        let (rv, h) = self.open_session(slot, flags);
        assert_eq!(rv, CKR_OK, "C_OpenSession failed: {}", crate::names::rv(rv));
        h
    }

    pub fn close_session(&mut self, s: CK_SESSION_HANDLE) -> CK_RV {
        // SAFETY: C_CloseSession is an entry of `self`'s loaded module (see `ck!`); it takes no
        // pointers.
        let rv = unsafe { ck!(self, C_CloseSession)(s) };
        let call = format!("C_CloseSession({})", self.t.session(s));
        self.line(&call, rv, "")
    }

    pub fn close_all_sessions(&mut self, slot: CK_SLOT_ID) -> CK_RV {
        // SAFETY: C_CloseAllSessions is an entry of `self`'s loaded module (see `ck!`); it takes no
        // pointers.
        let rv = unsafe { ck!(self, C_CloseAllSessions)(slot) };
        let call = format!("C_CloseAllSessions({})", self.t.slot(slot));
        self.line(&call, rv, "")
    }

    pub fn session_info(&mut self, s: CK_SESSION_HANDLE) -> (CK_RV, Option<CK_SESSION_INFO>) {
        let mut info = CK_SESSION_INFO {
            slotID: 0,
            state: 0,
            flags: 0,
            ulDeviceError: 0,
        };
        // SAFETY: C_GetSessionInfo is an entry of `self`'s loaded module (see `ck!`); `info` is a
        // live, writable CK_SESSION_INFO.
        let rv = unsafe { ck!(self, C_GetSessionInfo)(s, &mut info) };
        let details = if rv == CKR_OK {
            format!(
                "slot={} state={} flags={:#x} device_error={}",
                self.t.slot(info.slotID),
                state_name(info.state),
                info.flags,
                info.ulDeviceError
            )
        } else {
            String::new()
        };
        let call = format!("C_GetSessionInfo({})", self.t.session(s));
        self.line(&call, rv, &details);
        (rv, (rv == CKR_OK).then_some(info))
    }

    /// C_Login; `pin == None` passes a NULL PIN (protected authentication path).
    pub fn login(&mut self, s: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: Option<&str>) -> CK_RV {
        let (ptr, len) = match pin {
            Some(p) => input(p.as_bytes()),
            None => (std::ptr::null_mut(), 0),
        };
        // SAFETY: C_Login is an entry of `self`'s loaded module (see `ck!`); `ptr` is NULL (a
        // protected path PIN) or holds the `len` PIN bytes.
        let rv = unsafe { ck!(self, C_Login)(s, user, ptr, len) };
        let call = format!("C_Login({}, {}, pin={pin:?})", self.t.session(s), user_name(user));
        self.line(&call, rv, "")
    }

    pub fn logout(&mut self, s: CK_SESSION_HANDLE) -> CK_RV {
        // SAFETY: C_Logout is an entry of `self`'s loaded module (see `ck!`); it takes no pointers.
        let rv = unsafe { ck!(self, C_Logout)(s) };
        let call = format!("C_Logout({})", self.t.session(s));
        self.line(&call, rv, "")
    }

    pub fn init_pin(&mut self, s: CK_SESSION_HANDLE, pin: &str) -> CK_RV {
        let (ptr, len) = input(pin.as_bytes());
        // SAFETY: C_InitPIN is an entry of `self`'s loaded module (see `ck!`); `ptr` holds the
        // `len` PIN bytes (see `input`).
        let rv = unsafe { ck!(self, C_InitPIN)(s, ptr, len) };
        let call = format!("C_InitPIN({}, {pin:?})", self.t.session(s));
        self.line(&call, rv, "")
    }

    pub fn set_pin(&mut self, s: CK_SESSION_HANDLE, old: &str, new: &str) -> CK_RV {
        let (o, ol) = input(old.as_bytes());
        let (n, nl) = input(new.as_bytes());
        // SAFETY: C_SetPIN is an entry of `self`'s loaded module (see `ck!`); `o` holds the `ol`
        // old PIN bytes, `n` the `nl` new ones (see `input`).
        let rv = unsafe { ck!(self, C_SetPIN)(s, o, ol, n, nl) };
        let call = format!("C_SetPIN({}, {old:?}, {new:?})", self.t.session(s));
        self.line(&call, rv, "")
    }

    pub fn get_operation_state(&mut self, s: CK_SESSION_HANDLE, out: Out) -> (CK_RV, Vec<u8>) {
        let f = ck!(self, C_GetOperationState);
        let label = format!("C_GetOperationState({})", self.t.session(s));
        // A saved state is opaque and module-specific: compare its presence, not its bytes.
        // SAFETY: `f` is C_GetOperationState, an entry of `self`'s loaded module (see `ck!`);
        // `p`/`n` come from `out_call`.
        self.out_call(&label, out, true, |p, n| unsafe { f(s, p, n) })
    }

    pub fn set_operation_state(
        &mut self,
        s: CK_SESSION_HANDLE,
        state: &[u8],
        enc_key: CK_OBJECT_HANDLE,
        auth_key: CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let (p, n) = input(state);
        // SAFETY: C_SetOperationState is an entry of `self`'s loaded module (see `ck!`); `p` holds
        // the `n` state bytes (see `input`).
        let rv = unsafe { ck!(self, C_SetOperationState)(s, p, n, enc_key, auth_key) };
        let call = format!(
            "C_SetOperationState({}, {}B, {}, {})",
            self.t.session(s),
            state.len(),
            self.t.object(enc_key),
            self.t.object(auth_key)
        );
        self.line(&call, rv, "")
    }

    pub fn seed_random(&mut self, s: CK_SESSION_HANDLE, seed: &[u8]) -> CK_RV {
        let (p, n) = input(seed);
        // SAFETY: C_SeedRandom is an entry of `self`'s loaded module (see `ck!`); `p` holds the `n`
        // seed bytes (see `input`).
        let rv = unsafe { ck!(self, C_SeedRandom)(s, p, n) };
        let call = format!("C_SeedRandom({}, {}B)", self.t.session(s), seed.len());
        self.line(&call, rv, "")
    }

    /// C_GenerateRandom; records the length and whether the bytes are all zero.
    pub fn generate_random(&mut self, s: CK_SESSION_HANDLE, len: usize) -> (CK_RV, Vec<u8>) {
        let mut buf = vec![0u8; len];
        let ptr = if len == 0 {
            std::ptr::NonNull::dangling().as_ptr()
        } else {
            buf.as_mut_ptr()
        };
        // SAFETY: C_GenerateRandom is an entry of `self`'s loaded module (see `ck!`); `ptr` is
        // `buf`, `len` writable bytes (dangling only when `len` is 0).
        let rv = unsafe { ck!(self, C_GenerateRandom)(s, ptr, len as CK_ULONG) };
        let details = if rv == CKR_OK && len >= 16 {
            format!("all_zero={}", buf.iter().all(|b| *b == 0))
        } else {
            String::new()
        };
        let call = format!("C_GenerateRandom({}, {len})", self.t.session(s));
        self.line(&call, rv, &details);
        (rv, buf)
    }

    pub fn get_function_status(&mut self, s: CK_SESSION_HANDLE) -> CK_RV {
        // SAFETY: C_GetFunctionStatus is an entry of `self`'s loaded module (see `ck!`); it takes
        // no pointers.
        let rv = unsafe { ck!(self, C_GetFunctionStatus)(s) };
        let call = format!("C_GetFunctionStatus({})", self.t.session(s));
        self.line(&call, rv, "")
    }

    pub fn cancel_function(&mut self, s: CK_SESSION_HANDLE) -> CK_RV {
        // SAFETY: C_CancelFunction is an entry of `self`'s loaded module (see `ck!`); it takes no
        // pointers.
        let rv = unsafe { ck!(self, C_CancelFunction)(s) };
        let call = format!("C_CancelFunction({})", self.t.session(s));
        self.line(&call, rv, "")
    }
}
