//! CK_RV values shown to humans by name ("CKR_PIN_INCORRECT (0xa0)").

use std::fmt;

use cryptoki_sys::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rv(pub CK_RV);

impl fmt::Display for Rv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            CKR_OK => "CKR_OK",
            CKR_GENERAL_ERROR => "CKR_GENERAL_ERROR",
            CKR_ARGUMENTS_BAD => "CKR_ARGUMENTS_BAD",
            CKR_DEVICE_ERROR => "CKR_DEVICE_ERROR",
            CKR_TOKEN_NOT_PRESENT => "CKR_TOKEN_NOT_PRESENT",
            CKR_PIN_INCORRECT => "CKR_PIN_INCORRECT",
            CKR_PIN_LOCKED => "CKR_PIN_LOCKED",
            CKR_PIN_EXPIRED => "CKR_PIN_EXPIRED",
            CKR_PIN_LEN_RANGE => "CKR_PIN_LEN_RANGE",
            CKR_USER_NOT_LOGGED_IN => "CKR_USER_NOT_LOGGED_IN",
            CKR_USER_PIN_NOT_INITIALIZED => "CKR_USER_PIN_NOT_INITIALIZED",
            CKR_SLOT_ID_INVALID => "CKR_SLOT_ID_INVALID",
            CKR_CRYPTOKI_ALREADY_INITIALIZED => "CKR_CRYPTOKI_ALREADY_INITIALIZED",
            _ => "",
        };
        if name.is_empty() {
            write!(f, "CK_RV {:#x}", self.0)
        } else {
            write!(f, "{name} ({:#x})", self.0)
        }
    }
}
