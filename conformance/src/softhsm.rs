//! A SoftHSM token in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::paths::fresh_temp_dir;

/// The token every fixture initializes unless told otherwise.
pub const LABEL: &str = "conformance";
pub const USER_PIN: &str = "1234";
pub const SO_PIN: &str = "5678";

/// A temporary SoftHSM configuration with one initialized token (plus the
/// free slot SoftHSM always adds). Removed on drop.
pub struct SoftHsm {
    dir: PathBuf,
    conf: PathBuf,
}

impl SoftHsm {
    /// A token labelled [`LABEL`] with [`USER_PIN`] and [`SO_PIN`].
    pub fn new() -> Self {
        Self::with_token(LABEL, USER_PIN, SO_PIN)
    }

    pub fn with_token(label: &str, pin: &str, so_pin: &str) -> Self {
        let dir = fresh_temp_dir("softhsm");
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap_or_else(|e| panic!("creating {}: {e}", tokens.display()));
        let conf = dir.join("softhsm2.conf");
        let text = format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        );
        std::fs::write(&conf, text).unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
        let hsm = SoftHsm { dir, conf };
        hsm.init_token(label, pin, so_pin);
        hsm
    }

    fn init_token(&self, label: &str, pin: &str, so_pin: &str) {
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                pin,
                "--so-pin",
                so_pin,
            ])
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .unwrap_or_else(|e| panic!("running softhsm2-util (is softhsm2 installed?): {e}"));
        assert!(
            out.status.success(),
            "softhsm2-util --init-token failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The value for `SOFTHSM2_CONF`.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The fixture's directory (other fixtures put their files here too).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Default for SoftHsm {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SoftHsm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
