//! The vendor PKCS#11 module, loaded with dlopen and called through its
//! function list (cryptoki-sys types).

use std::path::Path;

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
}

/// Calls a backend function; an entry the module left NULL is CKR_FUNCTION_NOT_SUPPORTED.
macro_rules! p11 {
    ($backend:expr, $func:ident ( $($arg:expr),* $(,)? )) => {
        match $backend.functions().$func {
            #[allow(unused_unsafe)]
            Some(f) => unsafe { f($($arg),*) },
            None => cryptoki_sys::CKR_FUNCTION_NOT_SUPPORTED,
        }
    };
}
pub(crate) use p11;

impl Backend {
    /// Loads the module and initializes it for OS locking (real concurrency).
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let shown = path.display().to_string();
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|source| LoadError::Open { path: shown.clone(), source })?;
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
            unsafe { lib.get(b"C_GetFunctionList\0") }
                .map_err(|e| LoadError::NotPkcs11 { path: shown.clone(), reason: e.to_string() })?;
        let mut list = std::ptr::null_mut();
        let rv = unsafe { get(&mut list) };
        // SAFETY: a module's function list lives as long as the module, which is never unloaded.
        let f = match unsafe { list.as_ref() } {
            Some(f) if rv == CKR_OK => f,
            _ => {
                return Err(LoadError::NotPkcs11 {
                    path: shown,
                    reason: format!("C_GetFunctionList returned {}", crate::rv::Rv(rv)),
                })
            }
        };
        let backend = Backend { f, _lib: lib };
        let mut args = CK_C_INITIALIZE_ARGS { flags: CKF_OS_LOCKING_OK, ..Default::default() };
        let rv = p11!(backend, C_Initialize(&mut args as *mut _ as *mut _));
        if rv != CKR_OK {
            return Err(LoadError::Initialize { path: shown, rv: crate::rv::Rv(rv) });
        }
        Ok(backend)
    }

    pub fn functions(&self) -> &'static CK_FUNCTION_LIST {
        self.f
    }

    pub fn finalize(&self) -> CK_RV {
        p11!(self, C_Finalize(std::ptr::null_mut()))
    }

    /// Whether some slot holds an initialized token the module can talk to
    /// (Primus: at least one HSM of the cluster answers).
    pub fn token_reachable(&self) -> bool {
        self.present_slots().unwrap_or_default().into_iter().any(|slot| {
            let mut info = CK_TOKEN_INFO::default();
            p11!(self, C_GetTokenInfo(slot, &mut info)) == CKR_OK && info.flags & CKF_TOKEN_INITIALIZED != 0
        })
    }

    /// Slots with a token present (empty when the HSM cannot be reached).
    pub fn present_slots(&self) -> Result<Vec<CK_SLOT_ID>, CK_RV> {
        let mut n: CK_ULONG = 0;
        let rv = p11!(self, C_GetSlotList(CK_TRUE, std::ptr::null_mut(), &mut n));
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut slots = vec![0; n as usize];
        let rv = p11!(self, C_GetSlotList(CK_TRUE, slots.as_mut_ptr(), &mut n));
        if rv != CKR_OK {
            return Err(rv);
        }
        slots.truncate(n as usize);
        Ok(slots)
    }
}
