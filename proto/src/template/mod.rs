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

#[cfg(test)]
mod tests;
