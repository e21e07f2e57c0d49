//! CK_RV values shown to humans by name ("CKR_PIN_INCORRECT (0xa0)").

use std::fmt;

use cryptoki_sys::CK_RV;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rv(pub CK_RV);

impl fmt::Display for Rv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::names::rv(self.0) {
            "CKR_VENDOR_DEFINED" | "CKR_UNKNOWN" => write!(f, "CK_RV {:#x}", self.0),
            name => write!(f, "{name} ({:#x})", self.0),
        }
    }
}
