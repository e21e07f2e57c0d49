//! Session management: open/close, session info, operation state, login.

use crate::prelude::*;

/// # Safety
/// PKCS#11 caller contract: `session` is NULL or valid for writes of a
/// `CK_SESSION_HANDLE`. `_application` and `_notify` are never used.
#[no_mangle]
pub unsafe extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _application: *mut c_void,
    _notify: CK_NOTIFY,
    session: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        if session.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        // Notify callbacks cannot cross the socket; PKCS#11 lets a library
        // never call them (SoftHSM does not either).
        let r = l.call(Call::OpenSession(wire::OpenSession {
            slot: slot as u64,
            flags: flags as u64,
        }))?;
        let h = crate::out::ulong(r)?;
        // SAFETY: `session` is not NULL (checked above) and, by this
        // function's contract, an aligned pointer valid for writes.
        unsafe { put(session, l.tag(h)) }
    })
}

#[no_mangle]
pub extern "C" fn C_CloseSession(session: CK_SESSION_HANDLE) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        check(l.call(Call::CloseSession(wire::Session { session }))?.rv)
    })
}

#[no_mangle]
pub extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        check(l.call(Call::CloseAllSessions(wire::Slot { slot: slot as u64 }))?.rv)
    })
}

/// # Safety
/// PKCS#11 caller contract: `info` is NULL or valid for writes of a
/// `CK_SESSION_INFO`.
#[no_mangle]
pub unsafe extern "C" fn C_GetSessionInfo(session: CK_SESSION_HANDLE, info: *mut CK_SESSION_INFO) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        // SAFETY: `info` is NULL (CKR_ARGUMENTS_BAD) or an aligned, writable
        // CK_SESSION_INFO, by this function's contract.
        let out = unsafe { info.as_mut() }.ok_or(CKR_ARGUMENTS_BAD)?;
        let s = body!(l.call(Call::GetSessionInfo(wire::Session { session }))?, SessionInfo);
        out.slotID = s.slot as CK_SLOT_ID;
        out.state = s.state as CK_STATE;
        out.flags = s.flags as CK_FLAGS;
        out.ulDeviceError = s.device_error as CK_ULONG;
        Ok(())
    })
}

/// # Safety
/// PKCS#11 caller contract: `len` is NULL or valid for reads and writes of a
/// `CK_ULONG`; `state` is NULL or valid for writes of `*len` bytes.
#[no_mangle]
pub unsafe extern "C" fn C_GetOperationState(
    session: CK_SESSION_HANDLE,
    state: *mut CK_BYTE,
    len: *mut CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        // SAFETY: `len` is NULL or a readable CK_ULONG, by this function's
        // contract.
        let (capacity, length_null) = unsafe { out_spec(state, len) };
        let r = l.call(Call::GetOperationState(wire::SessionOutput {
            session,
            capacity,
            length_null,
        }))?;
        // SAFETY: `state`/`len` are this call's output arguments, whose
        // capacity `out_spec` read above: `len` is NULL or writable, `state`
        // NULL or valid for `capacity` bytes.
        unsafe { write_output(r, state, len, capacity) }
    })
}

/// # Safety
/// PKCS#11 caller contract: `state` is NULL or valid for reads of `len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn C_SetOperationState(
    session: CK_SESSION_HANDLE,
    state: *mut CK_BYTE,
    len: CK_ULONG,
    encryption_key: CK_OBJECT_HANDLE,
    authentication_key: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let encryption_key = l.key(encryption_key)?;
        let authentication_key = l.key(authentication_key)?;
        // SAFETY: `state` is NULL or valid for `len` bytes, by this
        // function's contract.
        let state = unsafe { input(state, len) }?;
        let call = Call::SetOperationState(wire::SetOperationState {
            session,
            state,
            encryption_key,
            authentication_key,
        });
        check(l.call(call)?.rv)
    })
}

/// # Safety
/// PKCS#11 caller contract: `pin` is NULL (protected authentication path) or
/// valid for reads of `pin_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn C_Login(
    session: CK_SESSION_HANDLE,
    user_type: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    pin_len: CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        // SAFETY: `pin` is NULL or valid for `pin_len` bytes, by this
        // function's contract.
        let pin = unsafe { optional_input(pin, pin_len) };
        check(
            l.call(Call::Login(wire::Login {
                session,
                user_type: user_type as u64,
                pin,
            }))?
            .rv,
        )
    })
}

#[no_mangle]
pub extern "C" fn C_Logout(session: CK_SESSION_HANDLE) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        check(l.call(Call::Logout(wire::Session { session }))?.rv)
    })
}
