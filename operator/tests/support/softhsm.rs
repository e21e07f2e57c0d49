//! A SoftHSM token standing in for the HSM partition: its SO PIN is the one-time setup
//! password, and enrollment (`pkcs11-init-pin`) must leave a user PIN that logs in.

use std::path::Path;
use std::process::Command;

use hsmbridge_conformance::softhsm::SoftHsm;

use super::paths;

/// The user PIN the token is initialized with, before enrollment replaces it.
pub const INITIAL_USER_PIN: &str = "initial-user-pin";

pub struct SoftHsmToken {
    hsm: SoftHsm,
    label: String,
}

impl SoftHsmToken {
    /// A SoftHSM config of its own with one token `label` whose SO PIN is `setup_password`.
    pub fn new(label: &str, setup_password: &str) -> SoftHsmToken {
        SoftHsmToken {
            hsm: SoftHsm::with_token(label, INITIAL_USER_PIN, setup_password),
            label: label.to_owned(),
        }
    }

    /// The value of `SOFTHSM2_CONF` for processes that must see this token.
    pub fn conf(&self) -> &Path {
        self.hsm.conf()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Logs in to the token with `pin` as `user` or `so` (pkcs11-tool, a real PKCS#11 login),
    /// and lists objects: Ok if the login worked, Err(pkcs11-tool's output) otherwise.
    pub fn login(&self, login_type: &str, pin: &str) -> Result<(), String> {
        let module = paths::softhsm_module();
        let out = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&module)
            .args([
                "--token-label",
                &self.label,
                "--login",
                "--login-type",
                login_type,
                "--pin",
                pin,
                "--list-objects",
            ])
            .env("SOFTHSM2_CONF", self.hsm.conf())
            .output()
            .unwrap_or_else(|e| panic!("running pkcs11-tool (is opensc installed?): {e}"));
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pkcs11-tool --login --login-type {login_type} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}
