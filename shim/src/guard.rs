//! The barrier every exported function goes through: no panic crosses the C
//! ABI, and `Result<(), CK_RV>` flattens into the CK_RV the app sees.

use std::panic::{catch_unwind, AssertUnwindSafe};

use cryptoki_sys::{CKR_GENERAL_ERROR, CKR_OK, CK_RV};

pub type Rv<T = ()> = Result<T, CK_RV>;

pub fn guard(f: impl FnOnce() -> Rv) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(rv)) => rv,
        Err(_) => CKR_GENERAL_ERROR,
    }
}

/// Turns a backend CK_RV into `Err` unless it is CKR_OK.
pub fn check(rv: u64) -> Rv {
    if rv == CKR_OK as u64 {
        Ok(())
    } else {
        Err(rv as CK_RV)
    }
}
