//! `Api`: every PKCS#11 v2.40 function, called through a module's function
//! list and recorded in a [`Transcript`]. The methods take the arguments a
//! test varies and return what the module returned, so a test reads as the
//! call sequence it checks. Files by function group: general purpose, slots
//! and sessions, objects, cryptographic operations.

mod crypto;
mod general;
mod mutex;
mod objects;
mod sessions;

use std::collections::{BTreeSet, HashMap, HashSet};

use cryptoki_sys::*;

pub use general::InitArgs;
pub use general::BAD_SLOT;
pub use objects::AttrReq;
pub use sessions::{RO, RW};

use crate::mechs::{Mech, Use};
use crate::module::Module;
use crate::names;
use crate::transcript::Transcript;

/// How an output buffer is passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    /// NULL buffer: a length query.
    Query,
    /// A buffer of exactly this many bytes.
    Size(usize),
    /// A length query, then a call with a buffer of the returned length.
    Auto,
}

/// A handle no module hands out in these tests.
pub const BAD_HANDLE: CK_ULONG = 0x0bad_cafe;

/// The entry `$name` of the function list (which must be present), as an
/// `unsafe extern "C" fn` pointer: calling it is the caller's `unsafe {}`.
///
/// The pointer is callable while `$api` lives: the `Api` owns the `Module`,
/// which keeps the library loaded. So the SAFETY line of a call through it
/// has only to say that the arguments are what PKCS#11 requires of `$name`.
macro_rules! ck {
    ($api:expr, $name:ident) => {
        $api.fl()
            .$name
            .expect(concat!(stringify!($name), " is NULL in the function list"))
    };
}
pub(crate) use ck;

pub struct Api {
    module: Module,
    pub t: Transcript,
    exercised: BTreeSet<CK_MECHANISM_TYPE>,
    attempted: BTreeSet<CK_MECHANISM_TYPE>,
    /// Whether the active operation of a session (per family) has
    /// randomized output.
    randomized: HashMap<(CK_SESSION_HANDLE, Use), bool>,
    /// Keys with random values (generated, or derived from such): outputs
    /// made with them differ between modules by nature.
    random_objects: HashSet<CK_OBJECT_HANDLE>,
}

impl Api {
    /// Loads the module at `path`; `echo` prints transcript lines as they come.
    pub fn load(path: &std::path::Path, echo: bool) -> Self {
        let module = Module::load(path).unwrap_or_else(|e| panic!("loading PKCS#11 module: {e}"));
        Api {
            module,
            t: Transcript::new(echo),
            exercised: BTreeSet::new(),
            attempted: BTreeSet::new(),
            randomized: HashMap::new(),
            random_objects: HashSet::new(),
        }
    }

    pub fn fl(&self) -> &'static CK_FUNCTION_LIST {
        self.module.fl()
    }

    pub fn module(&self) -> &Module {
        &self.module
    }

    /// Records `call -> RV details` and returns `rv`.
    pub fn line(&mut self, call: &str, rv: CK_RV, details: &str) -> CK_RV {
        let sep = if details.is_empty() { "" } else { " " };
        self.t.record(format!("{call} -> {}{sep}{details}", names::rv(rv)));
        rv
    }

    /// Records a call the methods do not cover (NULL pointers and other
    /// deliberate misuse): `desc -> RV`.
    pub fn raw(&mut self, desc: &str, call: impl FnOnce(&CK_FUNCTION_LIST) -> CK_RV) -> CK_RV {
        let rv = call(self.fl());
        self.line(desc, rv, "")
    }

    /// Records a note that is not a call (a value computed on this side).
    pub fn note(&mut self, text: impl Into<String>) {
        self.t.record(format!("# {}", text.into()));
    }

    /// Mechanisms that some call accepted with CKR_OK on this module.
    pub fn exercised(&self) -> &BTreeSet<CK_MECHANISM_TYPE> {
        &self.exercised
    }

    fn mark_exercised(&mut self, rv: CK_RV, mech: &Mech) {
        self.attempted.insert(mech.ty());
        if rv == CKR_OK {
            self.exercised.insert(mech.ty());
        }
    }

    /// Marks `h` as holding random key material (see `random_objects`).
    pub fn mark_random(&mut self, h: CK_OBJECT_HANDLE) {
        self.random_objects.insert(h);
    }

    pub fn is_random(&self, h: CK_OBJECT_HANDLE) -> bool {
        self.random_objects.contains(&h)
    }

    /// Panics unless every mechanism of `mechs` was used successfully
    /// (those in `may_fail` need only have been tried: the module may
    /// refuse them).
    pub fn assert_exercised(&self, mechs: &[CK_MECHANISM_TYPE], may_fail: &[CK_MECHANISM_TYPE]) {
        let missing: Vec<String> = mechs
            .iter()
            .filter(|m| !(self.exercised.contains(m) || may_fail.contains(m) && self.attempted.contains(m)))
            .map(|m| names::mechanism(*m))
            .collect();
        assert!(missing.is_empty(), "mechanisms never accepted with CKR_OK: {missing:?}");
    }

    /// Runs one output-buffer call (`call(buf, &mut len)`) the way `out`
    /// says and records it; returns the rv and the bytes written. `call`
    /// always gets a live, writable `len` and a `buf` that is NULL or valid
    /// for writes of `*len` bytes (dangling when that is 0).
    fn out_call(
        &mut self,
        label: &str,
        out: Out,
        randomized: bool,
        mut call: impl FnMut(*mut u8, *mut CK_ULONG) -> CK_RV,
    ) -> (CK_RV, Vec<u8>) {
        let size = match out {
            Out::Size(n) => n,
            Out::Query | Out::Auto => {
                let mut len: CK_ULONG = 0;
                let rv = call(std::ptr::null_mut(), &mut len);
                let details = if rv == CKR_OK {
                    format!("len={len}")
                } else {
                    String::new()
                };
                self.line(&format!("{label} buf=NULL"), rv, &details);
                if out == Out::Query || rv != CKR_OK {
                    return (rv, Vec::new());
                }
                len as usize
            }
        };
        let mut buf = vec![0u8; size];
        let mut len = size as CK_ULONG;
        // A zero-length buffer still is a buffer (not NULL).
        let ptr = if buf.is_empty() {
            std::ptr::NonNull::dangling().as_ptr()
        } else {
            buf.as_mut_ptr()
        };
        let rv = call(ptr, &mut len);
        let details = match rv {
            CKR_OK => {
                buf.truncate((len as usize).min(size));
                let shown = if randomized {
                    format!("<{} random bytes>", buf.len())
                } else {
                    names::hex(&buf)
                };
                format!("len={len} out={shown}")
            }
            CKR_BUFFER_TOO_SMALL => format!("len={len}"),
            _ => String::new(),
        };
        self.line(&format!("{label} buf={size}"), rv, &details);
        if rv != CKR_OK {
            buf.clear();
        }
        (rv, buf)
    }

    /// Runs a list call (`call(list, &mut count)`: slot and mechanism lists)
    /// the way `out` says (sizes count elements); records via `show`. `call`
    /// always gets a live, writable `count` and a `list` that is NULL or
    /// valid for writes of `*count` elements (and of at least one).
    fn list_call<T: Copy + Default>(
        &mut self,
        label: &str,
        out: Out,
        mut call: impl FnMut(*mut T, *mut CK_ULONG) -> CK_RV,
        show: impl Fn(&mut Self, &[T]) -> String,
    ) -> (CK_RV, Vec<T>) {
        let size = match out {
            Out::Size(n) => n,
            Out::Query | Out::Auto => {
                let mut count: CK_ULONG = 0;
                let rv = call(std::ptr::null_mut(), &mut count);
                let details = if rv == CKR_OK {
                    format!("count={count}")
                } else {
                    String::new()
                };
                self.line(&format!("{label} list=NULL"), rv, &details);
                if out == Out::Query || rv != CKR_OK {
                    return (rv, Vec::new());
                }
                count as usize
            }
        };
        let mut list = vec![T::default(); size.max(1)];
        let mut count = size as CK_ULONG;
        let rv = call(list.as_mut_ptr(), &mut count);
        list.truncate(if rv == CKR_OK { (count as usize).min(size) } else { 0 });
        let details = match rv {
            CKR_OK => format!("count={count} [{}]", show(&mut *self, &list)),
            CKR_BUFFER_TOO_SMALL => format!("count={count}"),
            _ => String::new(),
        };
        self.line(&format!("{label} list={size}"), rv, &details);
        (rv, list)
    }
}

/// `1.2` for a CK_VERSION.
pub(crate) fn version(v: &CK_VERSION) -> String {
    format!("{}.{}", v.major, v.minor)
}

/// A byte slice as pointer and length for input arguments: the pointer is
/// valid for reads of the length (dangling when that is 0) while `data`
/// lives. It is `*mut` as the C prototypes want; modules only read inputs.
pub(crate) fn input(data: &[u8]) -> (*mut u8, CK_ULONG) {
    // Empty input is a valid non-NULL pointer: NULL arguments are tested on purpose, elsewhere.
    let ptr = if data.is_empty() {
        std::ptr::NonNull::dangling().as_ptr()
    } else {
        data.as_ptr() as *mut u8
    };
    (ptr, data.len() as CK_ULONG)
}
