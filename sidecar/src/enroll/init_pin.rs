//! The `pkcs11-init-pin` method: the one-time setup password is the token's
//! SO PIN as issued; it is exchanged once for a permanent secret.
//!
//! 1. log in as SO with the setup password;
//! 2. draw the permanent secret from the token's RNG and set it as the user
//!    PIN (C_InitPIN);
//! 3. deliver it (file or Kubernetes Secret) while the setup password still
//!    works, so a failed delivery can be retried instead of leaving a token
//!    whose PINs nobody knows;
//! 4. replace the SO PIN with a random value nobody keeps, so the setup
//!    password is spent.

use std::path::Path;

use cryptoki_sys::*;
use tracing::warn;
use zeroize::Zeroizing;

use super::{Credential, EnrollError};
use crate::backend::{p11, Backend};
use crate::rv::Rv;

/// Bytes of randomness in a generated PIN (hex-encoded, so twice as many characters).
const SECRET_BYTES: usize = 24;

/// Enrolls the token labelled `token`; `deliver` stores the credential.
pub fn enroll(
    module: &Path,
    token: &str,
    setup: &[u8],
    deliver: &mut dyn FnMut(&Credential) -> Result<(), EnrollError>,
) -> Result<(), EnrollError> {
    let backend = Backend::load(module)?;
    let result = enroll_with(&backend, token, setup, deliver);
    backend.finalize_for_shutdown();
    result
}

fn enroll_with(
    backend: &Backend,
    token: &str,
    setup: &[u8],
    deliver: &mut dyn FnMut(&Credential) -> Result<(), EnrollError>,
) -> Result<(), EnrollError> {
    let (slot, max_pin_len) = find_token(backend, token)?;
    let mut session: CK_SESSION_HANDLE = 0;
    let flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    // SAFETY: `session` is a live handle for the module to write; no application pointer (NULL) and no
    // notify callback.
    step("C_OpenSession", unsafe {
        p11!(
            backend,
            C_OpenSession(slot, flags, std::ptr::null_mut(), None, &mut session)
        )
    })?;
    let result = (|| {
        // SAFETY: `setup` is the setup password, borrowed for the call with its length; C_Login only reads
        // it (the `*mut` is the C signature's).
        let rv = unsafe {
            p11!(
                backend,
                C_Login(session, CKU_SO, setup.as_ptr() as *mut u8, setup.len() as CK_ULONG)
            )
        };
        match rv {
            CKR_OK => {}
            CKR_PIN_INCORRECT | CKR_PIN_LOCKED | CKR_PIN_EXPIRED | CKR_PIN_INVALID | CKR_PIN_LEN_RANGE => {
                return Err(EnrollError::SetupPasswordRejected(format!("SO login: {}", Rv(rv))))
            }
            _ => step("C_Login (SO)", rv)?,
        }
        let credential = Credential {
            pin: random_pin(backend, session, max_pin_len)?,
            secrets_cfg: None,
        };
        // SAFETY: `credential.pin` is borrowed for the call with its length; C_InitPIN only reads it.
        let rv = unsafe {
            p11!(
                backend,
                C_InitPIN(
                    session,
                    credential.pin.as_ptr() as *mut u8,
                    credential.pin.len() as CK_ULONG
                )
            )
        };
        step("C_InitPIN", rv)?;
        deliver(&credential)?;
        spend_setup_password(backend, session, setup, max_pin_len);
        // SAFETY: only the session handle opened above; no pointers.
        unsafe { p11!(backend, C_Logout(session)) };
        Ok(())
    })();
    // SAFETY: only the session handle opened above; no pointers.
    unsafe { p11!(backend, C_CloseSession(session)) };
    result
}

/// Replaces the SO PIN with a random value nobody keeps. The credential is
/// already stored, so a failure here does not undo the enrollment; it is
/// reported loudly because the setup password stays usable.
fn spend_setup_password(backend: &Backend, session: CK_SESSION_HANDLE, setup: &[u8], max_pin_len: usize) {
    let result = random_pin(backend, session, max_pin_len).and_then(|spent| {
        // SAFETY: `setup` and `spent` are borrowed for the call with their lengths; C_SetPIN only
        // reads them (the `*mut` is the C signature's).
        let rv = unsafe {
            p11!(
                backend,
                C_SetPIN(
                    session,
                    setup.as_ptr() as *mut u8,
                    setup.len() as CK_ULONG,
                    spent.as_ptr() as *mut u8,
                    spent.len() as CK_ULONG
                )
            )
        };
        step("C_SetPIN (replacing the SO PIN)", rv)
    });
    if let Err(e) = result {
        warn!(
            "the credential is stored, but the setup password could not be spent and still opens the token as SO: {e}"
        );
    }
}

fn step(step: &'static str, rv: CK_RV) -> Result<(), EnrollError> {
    if rv == CKR_OK {
        Ok(())
    } else {
        Err(EnrollError::Pkcs11 { step, rv: Rv(rv) })
    }
}

fn find_token(backend: &Backend, label: &str) -> Result<(CK_SLOT_ID, usize), EnrollError> {
    let slots = backend.present_slots().map_err(|rv| EnrollError::Pkcs11 {
        step: "C_GetSlotList",
        rv: Rv(rv),
    })?;
    for slot in slots {
        let mut info = CK_TOKEN_INFO::default();
        // SAFETY: `info` is a live, aligned CK_TOKEN_INFO for the module to fill.
        if unsafe { p11!(backend, C_GetTokenInfo(slot, &mut info)) } != CKR_OK {
            continue;
        }
        let found = String::from_utf8_lossy(&info.label);
        if found.trim_end_matches([' ', '\0']) == label {
            return Ok((slot, info.ulMaxPinLen as usize));
        }
    }
    Err(EnrollError::NoToken(label.to_string()))
}

/// A PIN of random hex digits from the token's RNG, as long as the token allows.
fn random_pin(
    backend: &Backend,
    session: CK_SESSION_HANDLE,
    max_len: usize,
) -> Result<Zeroizing<Vec<u8>>, EnrollError> {
    let mut raw = Zeroizing::new(vec![0u8; SECRET_BYTES]);
    // SAFETY: `raw` holds `raw.len()` bytes, the length given, and outlives the call.
    step("C_GenerateRandom", unsafe {
        p11!(
            backend,
            C_GenerateRandom(session, raw.as_mut_ptr(), raw.len() as CK_ULONG)
        )
    })?;
    let mut pin = super::hex(&raw);
    if max_len >= 4 && pin.len() > max_len {
        pin.truncate(max_len);
    }
    Ok(pin)
}
