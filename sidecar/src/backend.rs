//! The vendor PKCS#11 module, loaded with dlopen and called through its
//! function list (cryptoki-sys types).

use std::path::Path;
use std::time::Duration;

use parking_lot::{RwLock, RwLockReadGuard};

use cryptoki_sys::*;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot load PKCS#11 module {path}: {source}")]
    Open { path: String, source: libloading::Error },
    #[error("{path} is not a PKCS#11 module: {reason}")]
    NotPkcs11 { path: String, reason: String },
    #[error("C_Initialize of {path} failed: {rv}")]
    Initialize { path: String, rv: crate::rv::Rv },
}

pub struct Backend {
    f: &'static CK_FUNCTION_LIST,
    // Unloading a module that other threads may still be in is unsafe; the
    // library stays mapped for the life of the process.
    _lib: &'static libloading::Library,
    /// Held shared while a request is served ([`Backend::enter`]), and
    /// exclusively while the module is re-initialized
    /// ([`Backend::reinitialize_if`], [`Backend::reinitialize_draining`]), so
    /// no call is ever inside the module across its C_Finalize. parking_lot's
    /// lock is task-fair: a writer waiting holds new readers back, so a drain
    /// ends; shared holders never enter again while they hold it.
    gate: RwLock<()>,
}

/// How long [`Backend::finalize_for_shutdown`] waits for calls inside the module.
const FINALIZE_WAIT: Duration = Duration::from_secs(5);

/// What [`Backend::reinitialize_if`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reinit {
    /// C_Finalize and C_Initialize ran; the value is C_Initialize's CK_RV.
    Done(CK_RV),
    /// A call was in the module, or the condition did not hold: nothing done.
    Skipped,
}

/// Calls a backend function: expands to the raw call through the module's
/// function list, or to CKR_FUNCTION_NOT_SUPPORTED when the module left the
/// entry NULL. The call is to C code that dereferences the pointers it is
/// given, so the macro is usable only inside an `unsafe {}` block, whose
/// `// SAFETY:` line says why the arguments are what PKCS#11 requires of that
/// function (buffers live and as long as the lengths beside them, output
/// pointers writable, reserved pointers NULL). The module is initialized with
/// CKF_OS_LOCKING_OK (see [`Backend::load`]), so it may be called from any
/// thread at any time.
macro_rules! p11 {
    ($backend:expr, $func:ident ( $($arg:expr),* $(,)? )) => {
        match $backend.functions().$func {
            Some(f) => f($($arg),*),
            None => cryptoki_sys::CKR_FUNCTION_NOT_SUPPORTED,
        }
    };
}
pub(crate) use p11;

impl Backend {
    /// Loads the module and initializes it for OS locking (real concurrency).
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let shown = path.display().to_string();
        // SAFETY: loading runs the library's initialisers; `path` is the vendor
        // PKCS#11 module the operator configured (`--module`), which is trusted
        // code by design: the sidecar exists to run it. It is never unloaded
        // (leaked below), so none of its code or data goes away while in use.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|source| LoadError::Open {
            path: shown.clone(),
            source,
        })?;
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        // SAFETY: the type given is C_GetFunctionList's signature in the PKCS#11
        // headers (CK_C_GetFunctionList), which every PKCS#11 module exports.
        let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
            unsafe { lib.get(b"C_GetFunctionList\0") }.map_err(|e| LoadError::NotPkcs11 {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        let mut list = std::ptr::null_mut();
        // SAFETY: `get` is the module's C_GetFunctionList (typed above); its one
        // argument is `&mut list`, a live, aligned location for the pointer it writes.
        let rv = unsafe { get(&mut list) };
        // The list is only looked at when the module reports that it wrote it.
        let f = if rv == CKR_OK {
            // SAFETY: on CKR_OK the module has set `list` to its function list, an
            // aligned CK_FUNCTION_LIST (or left it NULL: None). The module owns it
            // and keeps it for as long as it is loaded, which is for the rest of
            // the process (`lib` is leaked), so the `'static` borrow holds; the
            // sidecar never writes through it.
            unsafe { list.as_ref() }
        } else {
            None
        };
        let Some(f) = f else {
            return Err(LoadError::NotPkcs11 {
                path: shown,
                reason: format!("C_GetFunctionList returned {}", crate::rv::Rv(rv)),
            });
        };
        let backend = Backend {
            f,
            _lib: lib,
            gate: RwLock::new(()),
        };
        let rv = backend.initialize();
        if rv != CKR_OK {
            return Err(LoadError::Initialize {
                path: shown,
                rv: crate::rv::Rv(rv),
            });
        }
        Ok(backend)
    }

    /// A backend calling a function list the test itself implements (`login_tests.rs`).
    #[cfg(test)]
    pub fn from_functions(f: &'static CK_FUNCTION_LIST) -> Self {
        let lib = libloading::Library::from(libloading::os::unix::Library::this());
        Backend {
            f,
            _lib: Box::leak(Box::new(lib)),
            gate: RwLock::new(()),
        }
    }

    /// C_Initialize for OS locking (real concurrency).
    fn initialize(&self) -> CK_RV {
        let mut args = CK_C_INITIALIZE_ARGS {
            flags: CKF_OS_LOCKING_OK,
            ..Default::default()
        };
        // SAFETY: `args` is a live CK_C_INITIALIZE_ARGS for the call: no mutex
        // callbacks (all None), CKF_OS_LOCKING_OK, pReserved NULL (Default).
        unsafe { p11!(self, C_Initialize(&mut args as *mut _ as *mut _)) }
    }

    /// Entered by every request before it calls the module; a
    /// re-initialization waits until no request is inside.
    pub fn enter(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read()
    }

    /// C_Finalize then C_Initialize, if no request is inside the module now
    /// and `idle()` (checked while none can enter) holds. Never waits: with
    /// a request inside, it returns [`Reinit::Skipped`] at once, so it cannot
    /// stall the data path.
    pub fn reinitialize_if(&self, idle: impl FnOnce() -> bool) -> Reinit {
        let Some(_exclusive) = self.gate.try_write() else {
            return Reinit::Skipped;
        };
        if !idle() {
            return Reinit::Skipped;
        }
        self.finalize();
        Reinit::Done(self.initialize())
    }

    /// Waits up to `wait` for the calls inside the module to end (new ones
    /// wait meanwhile), then runs `under` with none inside, and C_Finalize and
    /// C_Initialize: the C_Initialize CK_RV, or `None` when a call stayed inside
    /// (a blocking C_WaitForSlotEvent): then nothing was done.
    pub fn reinitialize_draining(&self, wait: Duration, under: impl FnOnce()) -> Option<CK_RV> {
        let _exclusive = self.gate.try_write_for(wait)?;
        under();
        self.finalize();
        Some(self.initialize())
    }

    pub fn functions(&self) -> &'static CK_FUNCTION_LIST {
        self.f
    }

    /// C_Finalize when the process is done with the module, once no request is
    /// inside it. It waits up to [`FINALIZE_WAIT`] for them (the connections
    /// are closed by then); a call still inside after that (a blocking
    /// C_WaitForSlotEvent) leaves the module unfinalized: `None`, and the
    /// process exits without it.
    pub fn finalize_for_shutdown(&self) -> Option<CK_RV> {
        let _exclusive = self.gate.try_write_for(FINALIZE_WAIT)?;
        Some(self.finalize())
    }

    fn finalize(&self) -> CK_RV {
        // SAFETY: C_Finalize takes only pReserved, which must be NULL; after it
        // the module answers calls with CKR_CRYPTOKI_NOT_INITIALIZED. Callers
        // hold the gate exclusively, so no other call is inside the module.
        unsafe { p11!(self, C_Finalize(std::ptr::null_mut())) }
    }

    /// Whether some slot holds an initialized token the module can talk to
    /// (Primus: at least one HSM of the cluster answers).
    pub fn token_reachable(&self) -> bool {
        let _inside = self.enter();
        self.present_slots().unwrap_or_default().into_iter().any(|slot| {
            let mut info = CK_TOKEN_INFO::default();
            // SAFETY: `info` is a live, aligned CK_TOKEN_INFO for the module to fill;
            // the slot is only a number, which the module checks itself.
            let rv = unsafe { p11!(self, C_GetTokenInfo(slot, &mut info)) };
            rv == CKR_OK && info.flags & CKF_TOKEN_INITIALIZED != 0
        })
    }

    /// Slots with a token present (empty when the HSM cannot be reached).
    pub fn present_slots(&self) -> Result<Vec<CK_SLOT_ID>, CK_RV> {
        let mut n: CK_ULONG = 0;
        // SAFETY: a NULL list asks for the count only; `n` is a live CK_ULONG to
        // write it to.
        let rv = unsafe { p11!(self, C_GetSlotList(CK_TRUE, std::ptr::null_mut(), &mut n)) };
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut slots = vec![0; n as usize];
        // SAFETY: `slots` holds `n` CK_SLOT_IDs and `n` says so, so the module
        // writes at most that many (more is CKR_BUFFER_TOO_SMALL); `n` is live.
        let rv = unsafe { p11!(self, C_GetSlotList(CK_TRUE, slots.as_mut_ptr(), &mut n)) };
        if rv != CKR_OK {
            return Err(rv);
        }
        slots.truncate(n as usize);
        Ok(slots)
    }
}
