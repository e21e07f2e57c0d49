//! Random numbers and the legacy parallel-function calls.

use crate::prelude::*;

#[no_mangle]
pub extern "C" fn C_SeedRandom(session: CK_SESSION_HANDLE, seed: *mut CK_BYTE, len: CK_ULONG) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let data = unsafe { input(seed, len) }?;
        check(l.call(Call::SeedRandom(wire::SessionBytes { session, data }))?.rv)
    })
}

#[no_mangle]
pub extern "C" fn C_GenerateRandom(session: CK_SESSION_HANDLE, out: *mut CK_BYTE, len: CK_ULONG) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        if out.is_null() && len != 0 {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let r = l.call(Call::GenerateRandom(wire::GenerateRandom { session, length: len as u64 }))?;
        let o = body!(r, Output);
        if o.data.len() as u64 != len as u64 {
            return Err(CKR_DEVICE_ERROR);
        }
        if len != 0 {
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
