//! General-purpose functions: C_Initialize, C_Finalize, C_GetInfo, the
//! function list and the PKCS#11 3.0 interface discovery, slot events.

use crate::client;
use crate::function_list::{FUNCTION_LIST, INTERFACE};
use crate::out::fixed;
use crate::prelude::*;

/// The interface version this module implements.
const VERSION: CK_VERSION = CK_VERSION { major: 2, minor: 40 };

/// # Safety
/// PKCS#11 caller contract: `args` is NULL or points to a readable
/// `CK_C_INITIALIZE_ARGS`.
#[no_mangle]
pub unsafe extern "C" fn C_Initialize(args: *mut c_void) -> CK_RV {
    guard(|| {
        // SAFETY: `args` is NULL (None) or points to a readable, aligned
        // CK_C_INITIALIZE_ARGS, by this function's contract.
        if let Some(a) = unsafe { (args as *const CK_C_INITIALIZE_ARGS).as_ref() } {
            if !a.pReserved.is_null() {
                return Err(CKR_ARGUMENTS_BAD);
            }
            let given = [
                a.CreateMutex.is_some(),
                a.DestroyMutex.is_some(),
                a.LockMutex.is_some(),
                a.UnlockMutex.is_some(),
            ];
            // All or none: a partial set of mutex callbacks is an app bug.
            // We always lock with OS primitives, which covers every valid case.
            if given.contains(&true) && given.contains(&false) {
                return Err(CKR_ARGUMENTS_BAD);
            }
        }
        client::initialize()
    })
}

#[no_mangle]
pub extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV {
    guard(|| {
        if !reserved.is_null() {
            client::current()?;
            return Err(CKR_ARGUMENTS_BAD);
        }
        client::finalize()
    })
}

/// # Safety
/// PKCS#11 caller contract: `info` is NULL or valid for writes of a `CK_INFO`.
#[no_mangle]
pub unsafe extern "C" fn C_GetInfo(info: *mut CK_INFO) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        // SAFETY: `info` is NULL (CKR_ARGUMENTS_BAD) or an aligned, writable
        // CK_INFO, by this function's contract.
        let out = unsafe { info.as_mut() }.ok_or(CKR_ARGUMENTS_BAD)?;
        let i = body!(l.call(Call::GetInfo(wire::Empty {}))?, Info);
        let backend = version(i.cryptoki_version);
        // We present the v2.40 function list whatever the backend speaks.
        out.cryptokiVersion = if (backend.major, backend.minor) > (VERSION.major, VERSION.minor) {
            VERSION
        } else {
            backend
        };
        fixed(&mut out.manufacturerID, &i.manufacturer_id);
        out.flags = i.flags as CK_FLAGS;
        fixed(&mut out.libraryDescription, &i.library_description);
        out.libraryVersion = version(i.library_version);
        Ok(())
    })
}

/// # Safety
/// PKCS#11 caller contract: `list` is NULL or valid for writes of a pointer.
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    // SAFETY: `list` is NULL (CKR_ARGUMENTS_BAD) or valid for writes, by this
    // function's contract. The pointer written is to an immutable static the
    // app only reads (PKCS#11: the list is read-only).
    guard(|| unsafe { put(list, &FUNCTION_LIST as *const _ as *mut _) })
}

/// # Safety
/// PKCS#11 caller contract: `count` is NULL or valid for reads and writes of
/// a `CK_ULONG`; `list` is NULL or valid for writes of `*count` interfaces.
#[no_mangle]
pub unsafe extern "C" fn C_GetInterfaceList(list: *mut CK_INTERFACE, count: *mut CK_ULONG) -> CK_RV {
    guard(|| {
        // SAFETY: `count` is NULL (CKR_ARGUMENTS_BAD) or an aligned CK_ULONG
        // valid for reads and writes, by this function's contract.
        let n = unsafe { count.as_mut() }.ok_or(CKR_ARGUMENTS_BAD)?;
        if list.is_null() {
            *n = 1;
            return Ok(());
        }
        if *n < 1 {
            *n = 1;
            return Err(CKR_BUFFER_TOO_SMALL);
        }
        *n = 1;
        // SAFETY: `list` is not NULL and the app said it holds `*count` >= 1
        // interfaces (both checked above), so by this function's contract it
        // is valid for writes of one CK_INTERFACE.
        unsafe { *list = INTERFACE.0 };
        Ok(())
    })
}

/// # Safety
/// PKCS#11 caller contract: `name` is NULL or a NUL-terminated string;
/// `version` is NULL or points to a readable `CK_VERSION`; `interface` is
/// NULL or valid for writes of a pointer.
#[no_mangle]
pub unsafe extern "C" fn C_GetInterface(
    name: *mut CK_UTF8CHAR,
    version: *mut CK_VERSION,
    interface: *mut *mut CK_INTERFACE,
    flags: CK_FLAGS,
) -> CK_RV {
    guard(|| {
        // SAFETY: `interface` is NULL (CKR_ARGUMENTS_BAD) or an aligned
        // pointer valid for writes, by this function's contract.
        let out = unsafe { interface.as_mut() }.ok_or(CKR_ARGUMENTS_BAD)?;
        // SAFETY: `name` is not NULL here, so by this function's contract it
        // is a readable NUL-terminated string.
        let name_ok = name.is_null() || unsafe { std::ffi::CStr::from_ptr(name as *const _) }.to_bytes() == b"PKCS 11";
        // SAFETY: `version` is NULL (None: any version) or points to a
        // readable CK_VERSION, by this function's contract.
        let version_ok =
            unsafe { version.as_ref() }.is_none_or(|v| (v.major, v.minor) == (VERSION.major, VERSION.minor));
        // Our interface has no flags (not CKF_INTERFACE_FORK_SAFE), so any requested flag cannot match.
        if !name_ok || !version_ok || flags != 0 {
            return Err(CKR_ARGUMENTS_BAD);
        }
        *out = &INTERFACE.0 as *const _ as *mut _;
        Ok(())
    })
}

/// # Safety
/// PKCS#11 caller contract: `slot` is NULL or valid for writes of a
/// `CK_SLOT_ID`.
#[no_mangle]
pub unsafe extern "C" fn C_WaitForSlotEvent(flags: CK_FLAGS, slot: *mut CK_SLOT_ID, _reserved: *mut c_void) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let call = Call::WaitForSlotEvent(wire::WaitForSlotEvent { flags: flags as u64 });
        // A blocking wait holds only its own connection: other threads lease others.
        let r = if flags & CKF_DONT_BLOCK != 0 {
            l.call(call)?
        } else {
            l.call_unbounded(call)?
        };
        let s = crate::out::ulong(r)?;
        // SAFETY: `slot` is NULL (None, not written) or an aligned, writable
        // CK_SLOT_ID, by this function's contract.
        if let Some(slot) = unsafe { slot.as_mut() } {
            *slot = s as CK_SLOT_ID;
        }
        Ok(())
    })
}
