//! Deep copy of `CK_MECHANISM` parameters between C memory and messages.
//!
//! One table ([`layout`]) says how each mechanism's parameter is laid out.
//! The shim reads an app's parameter only in that layout ([`from_c`]); the
//! sidecar rebuilds a C parameter only from the wire variant the table
//! prescribes for the mechanism ([`to_c`]) and refuses any other with
//! `CKR_MECHANISM_PARAM_INVALID`, so the module never reads a structure (and
//! the pointers in it) that a peer wrote. A mechanism the table does not know
//! passes without a parameter; with one, only as plain bytes and only if the
//! sidecar's operator declared it pointer-free ([`RawParamMechanisms`]).

use std::collections::HashSet;

use cryptoki_sys::{CKM_VENDOR_DEFINED, CK_MECHANISM_TYPE};

mod from_c;
mod layout;
mod to_c;

pub use from_c::{copy_bytes, from_c};
pub use to_c::{to_c, OwnedMechanism};

/// Whether the layout table prescribes wire variant `p` for `mechanism` (for
/// a mechanism it does not know: none).
pub fn prescribes(mechanism: u64, p: &crate::wire::mechanism::Parameter) -> bool {
    crate::to_ulong(mechanism)
        .and_then(layout::layout)
        .is_some_and(|l| l.prescribes(p))
}

/// Vendor mechanisms whose parameter the sidecar's operator declared to be a
/// plain byte string (`hsm-sidecar serve --raw-param-mechanism`).
#[derive(Clone, Debug, Default)]
pub struct RawParamMechanisms(HashSet<u64>);

/// Why a mechanism cannot be declared raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawParamError {
    /// Below `CKM_VENDOR_DEFINED`: standard mechanisms have a layout or none.
    NotVendorDefined(u64),
    /// The table knows its layout; a raw copy would bypass it.
    KnownLayout(u64),
}

impl std::fmt::Display for RawParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawParamError::NotVendorDefined(m) => {
                write!(f, "mechanism {m:#x} is not vendor-defined (>= {CKM_VENDOR_DEFINED:#x})")
            }
            RawParamError::KnownLayout(m) => write!(f, "mechanism {m:#x} has a known parameter layout"),
        }
    }
}

impl std::error::Error for RawParamError {}

impl RawParamMechanisms {
    pub fn new(mechanisms: impl IntoIterator<Item = u64>) -> Result<Self, RawParamError> {
        let mut set = HashSet::new();
        for m in mechanisms {
            if m < CKM_VENDOR_DEFINED as u64 {
                return Err(RawParamError::NotVendorDefined(m));
            }
            if crate::to_ulong(m).and_then(layout::layout).is_some() {
                return Err(RawParamError::KnownLayout(m));
            }
            set.insert(m);
        }
        Ok(RawParamMechanisms(set))
    }

    fn allows(&self, mechanism: CK_MECHANISM_TYPE) -> bool {
        self.0.contains(&(mechanism as u64))
    }
}

#[cfg(test)]
mod tests;
