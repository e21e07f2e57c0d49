//! Managed mode's user PIN, held by the sidecar and read from `--pin-file`.
//!
//! A real HSM counts every wrong PIN and locks the partition out after a few
//! (and pkcs11-init-pin enrollment threw the SO PIN away, so nothing can
//! unlock it). So the held PIN costs the HSM at most one attempt: once the
//! module rejects it, logins are answered here with the module's CK_RV and
//! health reports NOT_SERVING, until the file's content changes (a new
//! enrollment, an administrator's fix; the kubelet swaps Secret files in
//! place) and the monitor adopts it. Rejections are kept per slot, so that an app logging in on
//! another token of the module cannot condemn the PIN for the right one.
//!
//! Rotation: the monitor (`monitor.rs`) re-reads the file every few seconds
//! ([`HeldPin::changed_on_disk`]) and adopts a new PIN ([`HeldPin::adopt`]) as
//! it re-initializes the module, so that the next backend login offers it,
//! without a restart. The `generation` file beside it (the Secret's
//! `hsmbridge_contract::GENERATION_KEY`) says which credential it is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use cryptoki_sys::*;
use tracing::{error, info, warn};
use zeroize::Zeroizing;

use crate::rv::Rv;
use crate::secret_file;

pub struct HeldPin {
    path: PathBuf,
    /// `GENERATION_KEY` beside the PIN file.
    generation_path: PathBuf,
    state: Mutex<State>,
    /// The last answer of `is_rejected`, for health checks that come while a
    /// login holds the state (a module may take long to answer).
    rejected_seen: AtomicBool,
    /// The generation of the PIN held (read without the state's lock).
    generation: AtomicI64,
}

struct State {
    pin: Zeroizing<Vec<u8>>,
    /// The module's answer to `pin` on each slot that rejected it.
    rejected: HashMap<CK_SLOT_ID, CK_RV>,
    /// Whether `pin` logged in on some slot since the module's last C_Initialize.
    accepted: bool,
}

/// Answers that condemn the PIN itself (as opposed to the session or token).
fn rejects_pin(rv: CK_RV) -> bool {
    matches!(
        rv,
        CKR_PIN_INCORRECT | CKR_PIN_LOCKED | CKR_PIN_EXPIRED | CKR_PIN_INVALID | CKR_PIN_LEN_RANGE
    )
}

impl HeldPin {
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let pin = secret_file::read(path)?;
        let generation_path = path.with_file_name(hsmbridge_contract::GENERATION_KEY);
        let state = Mutex::new(State {
            pin,
            rejected: HashMap::new(),
            accepted: false,
        });
        Ok(HeldPin {
            path: path.to_path_buf(),
            generation: AtomicI64::new(read_generation(&generation_path)),
            generation_path,
            state,
            rejected_seen: AtomicBool::new(false),
        })
    }

    /// The generation of the PIN held now (0 without a generation file).
    pub fn generation(&self) -> i64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Whether the file holds another PIN than the one held (not adopted yet). `false` while a
    /// login holds the state (it is asked again at the next check).
    pub fn changed_on_disk(&self) -> bool {
        let held = match self.state.try_lock() {
            Ok(s) => s.pin.clone(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().pin.clone(),
            Err(TryLockError::WouldBlock) => return false,
        };
        secret_file::read_again(&self.path).is_ok_and(|pin| pin != held)
    }

    /// Takes the file's PIN if it changed (a rejection of the old one is forgotten): the
    /// generation now held, or `None` if it had not. Only the monitor calls it (`monitor.rs`),
    /// as the module is re-initialized unless the held PIN stood rejected.
    pub fn adopt(&self) -> Option<i64> {
        let mut s = self.state();
        self.reload(&mut s).then(|| self.generation())
    }

    /// The module was re-initialized: whether the held PIN logs in is to be seen again (a
    /// rejection stands: the file has not changed).
    pub fn module_reinitialized(&self) {
        self.state().accepted = false;
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one login attempt `login` with the held PIN and records the
    /// module's answer. While the PIN stands rejected (until a new one is
    /// adopted), answers the rejection without calling `login`. Attempts are
    /// serialized, so concurrent logins cannot offer a PIN the module is
    /// about to reject a second time.
    pub fn attempt(&self, slot: CK_SLOT_ID, login: impl FnOnce(&Zeroizing<Vec<u8>>) -> CK_RV) -> CK_RV {
        let mut s = self.state();
        if let Some(rv) = s.rejected.get(&slot).copied() {
            return rv;
        }
        let pin = s.pin.clone();
        let rv = login(&pin);
        if rejects_pin(rv) {
            s.rejected.insert(slot, rv);
            error!(
                pin_file = %self.path.display(),
                slot,
                rv = %Rv(rv),
                "the token rejected the held PIN; no further login is tried on this slot until the PIN file changes"
            );
        } else if rv == CKR_OK {
            s.accepted = true;
        }
        rv
    }

    /// Whether the held PIN stands rejected (on some slot, and it logged in
    /// on none).
    pub fn is_rejected(&self) -> bool {
        let s = match self.state.try_lock() {
            Ok(s) => s,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return self.rejected_seen.load(Ordering::Relaxed),
        };
        let rejected = !s.rejected.is_empty() && !s.accepted;
        self.rejected_seen.store(rejected, Ordering::Relaxed);
        rejected
    }

    /// Re-reads the file and takes its PIN; true if it is a new one.
    fn reload(&self, s: &mut State) -> bool {
        match secret_file::read_again(&self.path) {
            Ok(pin) if pin != s.pin => {
                s.pin = pin;
                s.rejected.clear();
                s.accepted = false;
                let generation = read_generation(&self.generation_path);
                self.generation.store(generation, Ordering::Relaxed);
                info!(
                    pin_file = %self.path.display(),
                    generation,
                    "the PIN file changed; the next login tries it"
                );
                true
            }
            Ok(_) => false,
            Err(e) => {
                warn!(pin_file = %self.path.display(), error = %e, "cannot re-read the PIN file");
                false
            }
        }
    }
}

/// The counter beside the PIN file; 0 without one.
fn read_generation(path: &Path) -> i64 {
    crate::generation_file::read(path).unwrap_or(0)
}

#[cfg(test)]
#[path = "held_pin_tests.rs"]
mod tests;
