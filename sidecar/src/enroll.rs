//! `hsm-sidecar enroll`, the `pkcs11-init-pin` method of ppin-style
//! enrollment: the one-time setup password (the token's SO PIN as issued)
//! is exchanged once for a permanent secret.
//!
//! 1. log in as SO with the setup password;
//! 2. draw the permanent secret from the token's RNG and set it as the user
//!    PIN (C_InitPIN);
//! 3. replace the SO PIN with a random value nobody keeps, so the setup
//!    password is spent;
//! 4. write the permanent secret to a 0600 file.

use std::path::Path;

use cryptoki_sys::*;
use zeroize::Zeroizing;

use crate::backend::{p11, Backend, LoadError};
use crate::rv::Rv;

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot read the setup password file: {0}")]
    SetupPasswordFile(std::io::Error),
    #[error("no token labelled {0:?} is present")]
    NoToken(String),
    #[error("the HSM rejected the setup password ({0}); it is not retried")]
    SetupPasswordRejected(Rv),
    #[error("{step} failed: {rv}")]
    Pkcs11 { step: &'static str, rv: Rv },
    #[error("cannot write the permanent secret: {0}")]
    Output(std::io::Error),
}

impl EnrollError {
    /// Distinct exit codes let the operator tell a spent or wrong setup
    /// password (never retry) from a transient failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            EnrollError::SetupPasswordRejected(_) => 3,
            EnrollError::NoToken(_) => 4,
            _ => 1,
        }
    }
}

fn step(step: &'static str, rv: CK_RV) -> Result<(), EnrollError> {
    if rv == CKR_OK {
        Ok(())
    } else {
        Err(EnrollError::Pkcs11 { step, rv: Rv(rv) })
    }
}

/// Bytes of randomness in a generated PIN (hex-encoded, so twice as many characters).
const SECRET_BYTES: usize = 24;

pub fn enroll(module: &Path, token: &str, setup_password_file: &Path, pin_out: &Path) -> Result<(), EnrollError> {
    let setup = crate::secret_file::read(setup_password_file).map_err(EnrollError::SetupPasswordFile)?;
    let backend = Backend::load(module)?;
    let result = enroll_with(&backend, token, &setup, pin_out);
    backend.finalize();
    result
}

fn enroll_with(backend: &Backend, token: &str, setup: &[u8], pin_out: &Path) -> Result<(), EnrollError> {
    let (slot, max_pin_len) = find_token(backend, token)?;
    let mut session: CK_SESSION_HANDLE = 0;
    let flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    step("C_OpenSession", p11!(backend, C_OpenSession(slot, flags, std::ptr::null_mut(), None, &mut session)))?;
    let result = (|| {
        let rv = p11!(backend, C_Login(session, CKU_SO, setup.as_ptr() as *mut u8, setup.len() as CK_ULONG));
        match rv {
            CKR_OK => {}
            CKR_PIN_INCORRECT | CKR_PIN_LOCKED | CKR_PIN_EXPIRED | CKR_PIN_INVALID | CKR_PIN_LEN_RANGE => {
                return Err(EnrollError::SetupPasswordRejected(Rv(rv)))
            }
            _ => step("C_Login (SO)", rv)?,
        }
        let secret = random_pin(backend, session, max_pin_len)?;
        step("C_InitPIN", p11!(backend, C_InitPIN(session, secret.as_ptr() as *mut u8, secret.len() as CK_ULONG)))?;
        let spent = random_pin(backend, session, max_pin_len)?;
        let rv = p11!(
            backend,
            C_SetPIN(
                session,
                setup.as_ptr() as *mut u8,
                setup.len() as CK_ULONG,
                spent.as_ptr() as *mut u8,
                spent.len() as CK_ULONG
            )
        );
        step("C_SetPIN (replacing the SO PIN)", rv)?;
        crate::secret_file::write(pin_out, &secret).map_err(EnrollError::Output)?;
        p11!(backend, C_Logout(session));
        Ok(())
    })();
    p11!(backend, C_CloseSession(session));
    result
}

fn find_token(backend: &Backend, label: &str) -> Result<(CK_SLOT_ID, usize), EnrollError> {
    let slots = backend.present_slots().map_err(|rv| EnrollError::Pkcs11 { step: "C_GetSlotList", rv: Rv(rv) })?;
    for slot in slots {
        let mut info = CK_TOKEN_INFO::default();
        if p11!(backend, C_GetTokenInfo(slot, &mut info)) != CKR_OK {
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
fn random_pin(backend: &Backend, session: CK_SESSION_HANDLE, max_len: usize) -> Result<Zeroizing<Vec<u8>>, EnrollError> {
    let mut raw = Zeroizing::new(vec![0u8; SECRET_BYTES]);
    step("C_GenerateRandom", p11!(backend, C_GenerateRandom(session, raw.as_mut_ptr(), raw.len() as CK_ULONG)))?;
    let mut pin = Zeroizing::new(Vec::with_capacity(SECRET_BYTES * 2));
    for b in raw.iter() {
        pin.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    if max_len >= 4 && pin.len() > max_len {
        pin.truncate(max_len);
    }
    Ok(pin)
}
