//! What every function-group module uses.

pub use cryptoki_sys::*;
pub use hsmbridge_proto::wire::{self, request::Call, response::Result as Body};
pub use std::ffi::c_void;

pub use crate::client::lease;
pub use crate::guard::{check, guard, Rv};
pub use crate::out::{input, optional_input, out_spec, write_output, write_ulongs};

/// The expected body of a successful answer, or CKR_DEVICE_ERROR for a
/// sidecar that answered something else.
macro_rules! body {
    ($resp:expr, $variant:ident) => {{
        let r = $resp;
        $crate::guard::check(r.rv)?;
        match r.result {
            Some(Body::$variant(v)) => v,
            _ => return Err(CKR_DEVICE_ERROR),
        }
    }};
}
pub(crate) use body;

pub fn version(v: Option<wire::Version>) -> CK_VERSION {
    let v = v.unwrap_or_default();
    CK_VERSION {
        major: v.major as u8,
        minor: v.minor as u8,
    }
}

/// `*p = v` for an output argument the app must supply; NULL is
/// CKR_ARGUMENTS_BAD.
///
/// # Safety
/// `p` is NULL or a properly aligned pointer valid for writes of a `T`.
pub unsafe fn put<T>(p: *mut T, v: T) -> Rv {
    // SAFETY: by this function's contract `p` is NULL (`as_mut` gives None,
    // refused) or aligned and valid for writes of a `T`.
    *unsafe { p.as_mut() }.ok_or(CKR_ARGUMENTS_BAD)? = v;
    Ok(())
}
