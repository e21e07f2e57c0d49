//! A PKCS#11 module loaded with dlopen, called through its function list.

use std::path::Path;

use cryptoki_sys::*;

pub struct Module {
    // Keeps the library mapped while `f` points into it.
    _lib: libloading::Library,
    f: &'static CK_FUNCTION_LIST,
}

impl Module {
    /// Loads `path` and fetches its function list (before C_Initialize, as
    /// PKCS#11 allows). Each path is loaded once per process by the dynamic
    /// linker, so two `Module`s of one path share their state.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, String> {
        let path = path.as_ref();
        // SAFETY: loading runs the library's initialisers. The harness loads
        // only the PKCS#11 modules under test (SoftHSM, p11-kit's client
        // module, our shim), which have no load-time preconditions.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: the type given is C_GetFunctionList's PKCS#11 prototype
        // (CK_C_GetFunctionList), which every module exports under that name.
        let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
            unsafe { lib.get(b"C_GetFunctionList\0") }.map_err(|e| format!("{}: {e}", path.display()))?;
        let mut list = std::ptr::null_mut();
        // SAFETY: `get` is the module's C_GetFunctionList, `lib` (loaded) is
        // alive; `list` is a live, writable pointer.
        let rv = unsafe { get(&mut list) };
        if rv != CKR_OK || list.is_null() {
            return Err(format!("{}: C_GetFunctionList returned {rv:#x}", path.display()));
        }
        // SAFETY: `list` is not NULL (checked above) and points to the
        // module's function list, which PKCS#11 keeps valid and unchanged
        // while the library is loaded; `_lib` keeps it loaded as long as this
        // `Module` lives (see `fl`).
        let f = unsafe { &*list };
        Ok(Module { _lib: lib, f })
    }

    /// The function list; call entries as `(m.fl().C_Foo.unwrap())(...)`.
    /// The entries are callable only while this `Module` lives: the
    /// `'static` lifetime is not checked, holding the `Module` is on the caller.
    pub fn fl(&self) -> &'static CK_FUNCTION_LIST {
        self.f
    }

    pub fn library(&self) -> &libloading::Library {
        &self._lib
    }
}
