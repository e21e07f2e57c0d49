//! Deep copy of `CK_ATTRIBUTE` templates between C memory and messages,
//! including the attributes (`CKA_WRAP_TEMPLATE` and friends) whose value is
//! itself a template: [`from_c`] on the shim's side, [`owned`] on the
//! sidecar's.

use cryptoki_sys::*;

mod from_c;
mod owned;

pub use from_c::{request_from_c, values_from_c, write_back};
pub use owned::OwnedTemplate;

/// Attributes whose value is itself a template. (Other CKF_ARRAY_ATTRIBUTE
/// attributes, such as CKA_ALLOWED_MECHANISMS, hold plain arrays of numbers.)
fn is_template(attr_type: u64) -> bool {
    crate::to_ulong(attr_type)
        .is_some_and(|t| matches!(t, CKA_WRAP_TEMPLATE | CKA_UNWRAP_TEMPLATE | CKA_DERIVE_TEMPLATE))
}

/// Array attributes whose value may be (or, for a vendor's, may contain) an
/// attribute array: everything with `CKF_ARRAY_ATTRIBUTE` except the plain
/// list of numbers `CKA_ALLOWED_MECHANISMS`. They travel as nested
/// templates only, never as bytes.
fn may_hold_pointers(attr_type: u64) -> bool {
    attr_type & CKF_ARRAY_ATTRIBUTE as u64 != 0 && attr_type != CKA_ALLOWED_MECHANISMS as u64
}

#[cfg(test)]
mod tests;
