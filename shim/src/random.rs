//! Random numbers and the legacy parallel-function calls.

use crate::prelude::*;

/// # Safety
/// PKCS#11 caller contract: `seed` is NULL or valid for reads of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn C_SeedRandom(session: CK_SESSION_HANDLE, seed: *mut CK_BYTE, len: CK_ULONG) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        // SAFETY: `seed` is NULL or valid for `len` bytes, by this function's
        // contract.
        let data = unsafe { input(seed, len) }?;
        check(l.call(Call::SeedRandom(wire::SessionBytes { session, data }))?.rv)
    })
}

/// # Safety
/// PKCS#11 caller contract: `out` is NULL (only with `len` 0) or valid for
/// writes of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn C_GenerateRandom(session: CK_SESSION_HANDLE, out: *mut CK_BYTE, len: CK_ULONG) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        if out.is_null() && len != 0 {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let r = l.call(Call::GenerateRandom(wire::GenerateRandom {
            session,
            length: len as u64,
        }))?;
        let o = body!(r, Output);
        if o.data.len() as u64 != len as u64 {
            return Err(CKR_DEVICE_ERROR);
        }
        if len != 0 {
            // SAFETY: `len` is not 0, so `out` is not NULL (checked above) and,
            // by this function's contract, valid for writes of `len` bytes;
            // `o.data.len() == len` (checked above); `o.data` is our own Vec,
            // so it cannot overlap the app's buffer.
            unsafe { std::ptr::copy_nonoverlapping(o.data.as_ptr(), out, o.data.len()) };
        }
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn C_GetFunctionStatus(session: CK_SESSION_HANDLE) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        check(l.call(Call::GetFunctionStatus(wire::Session { session }))?.rv)
    })
}

#[no_mangle]
pub extern "C" fn C_CancelFunction(session: CK_SESSION_HANDLE) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        check(l.call(Call::CancelFunction(wire::Session { session }))?.rv)
    })
}
