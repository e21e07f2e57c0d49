//! The handful of PKCS#11 calls the benchmark needs, on a module loaded by
//! `hsmbridge_conformance::module::Module`. Every failure says which function
//! failed and with which CK_RV.

use std::ptr;

use cryptoki_sys::*;

/// Calls `$f.$name(args…)`; a missing entry in the function list is
/// `CKR_FUNCTION_NOT_SUPPORTED` rather than a panic.
///
/// The call is an unsafe operation and the macro does not hide it: use it
/// inside an `unsafe {}` block whose SAFETY line says why the arguments are
/// what PKCS#11 requires of `$name` (live buffers of the stated lengths) and
/// that `$f` is the list of a module still loaded.
macro_rules! call {
    ($f:expr, $name:ident $(, $arg:expr)* $(,)?) => {
        match $f.$name {
            Some(func) => func($($arg),*),
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    };
}
pub(crate) use call;

/// A module's function list, as `Module::fl` gives it. Its entries are
/// callable only while that `Module` lives (the `'static` is not checked):
/// every caller here holds the `Module` for as long as it uses the list.
pub type Fl = &'static CK_FUNCTION_LIST;

pub fn check(what: &str, rv: CK_RV) -> Result<(), String> {
    if rv == CKR_OK {
        Ok(())
    } else {
        Err(format!("{what} returned {rv:#x}"))
    }
}

/// C_Initialize with CKF_OS_LOCKING_OK: the benchmark calls from several threads.
pub fn initialize(f: Fl) -> Result<(), String> {
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: ptr::null_mut(),
    };
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); `args` is a live CK_C_INITIALIZE_ARGS
    // with no callbacks and a NULL pReserved.
    check("C_Initialize", unsafe {
        call!(f, C_Initialize, &mut args as *mut _ as *mut _)
    })
}

pub fn finalize(f: Fl) -> Result<(), String> {
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); pReserved must be NULL.
    check("C_Finalize", unsafe { call!(f, C_Finalize, ptr::null_mut()) })
}

/// "description version" of the library, from C_GetInfo.
pub fn library_info(f: Fl) -> Result<String, String> {
    let mut info = CK_INFO::default();
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); `info` is a live, writable CK_INFO.
    check("C_GetInfo", unsafe { call!(f, C_GetInfo, &mut info) })?;
    Ok(format!(
        "{} {}.{}",
        padded_str(&info.libraryDescription),
        info.libraryVersion.major,
        info.libraryVersion.minor
    ))
}

fn padded_str(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end_matches([' ', '\0']).to_string()
}

fn padded_label(label: &str) -> [u8; 32] {
    let mut out = [b' '; 32];
    let n = label.len().min(32);
    out[..n].copy_from_slice(&label.as_bytes()[..n]);
    out
}

fn slots(f: Fl) -> Result<Vec<CK_SLOT_ID>, String> {
    let mut n: CK_ULONG = 0;
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); a NULL list asks for the count, written
    // to the live `n`.
    check("C_GetSlotList", unsafe {
        call!(f, C_GetSlotList, CK_TRUE, ptr::null_mut(), &mut n)
    })?;
    let mut list = vec![0; n as usize];
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); `list` holds `n` slot ids, the capacity
    // passed in the live `n`.
    check("C_GetSlotList", unsafe {
        call!(f, C_GetSlotList, CK_TRUE, list.as_mut_ptr(), &mut n)
    })?;
    list.truncate(n as usize);
    Ok(list)
}

fn token_info(f: Fl, slot: CK_SLOT_ID) -> Result<CK_TOKEN_INFO, String> {
    let mut info = CK_TOKEN_INFO::default();
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); `info` is a live, writable CK_TOKEN_INFO.
    check("C_GetTokenInfo", unsafe { call!(f, C_GetTokenInfo, slot, &mut info) })?;
    Ok(info)
}

/// The slot whose token carries `label`.
pub fn find_slot(f: Fl, label: &str) -> Result<CK_SLOT_ID, String> {
    for slot in slots(f)? {
        if padded_str(&token_info(f, slot)?.label) == label {
            return Ok(slot);
        }
    }
    Err(format!("no token labelled {label:?}"))
}

/// Initializes the first uninitialized token (SoftHSM always offers one) as
/// `label` with `so_pin`, and sets `user_pin` as its user PIN.
pub fn init_token(f: Fl, label: &str, so_pin: &str, user_pin: &str) -> Result<(), String> {
    let mut free = None;
    for slot in slots(f)? {
        if token_info(f, slot)?.flags & CKF_TOKEN_INITIALIZED == 0 {
            free = Some(slot);
            break;
        }
    }
    let slot = free.ok_or("no uninitialized token to set up")?;
    let mut so = so_pin.as_bytes().to_vec();
    let mut lbl = padded_label(label);
    check(
        "C_InitToken",
        // SAFETY: `f` is a loaded module's list (see [`Fl`]); `so` holds the `so.len()` PIN bytes
        // passed, `lbl` the 32-byte label PKCS#11 requires.
        unsafe {
            call!(
                f,
                C_InitToken,
                slot,
                so.as_mut_ptr(),
                so.len() as CK_ULONG,
                lbl.as_mut_ptr()
            )
        },
    )?;
    let s = open_session(f, slot, true)?;
    login(f, s, CKU_SO, so_pin)?;
    let mut user = user_pin.as_bytes().to_vec();
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); `user` holds the `user.len()` PIN bytes
    // passed.
    let rv = unsafe { call!(f, C_InitPIN, s, user.as_mut_ptr(), user.len() as CK_ULONG) };
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); C_Logout takes no pointers.
    let _ = unsafe { call!(f, C_Logout, s) };
    close_session(f, s);
    check("C_InitPIN", rv)
}

pub fn open_session(f: Fl, slot: CK_SLOT_ID, rw: bool) -> Result<CK_SESSION_HANDLE, String> {
    let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
    let mut s = CK_INVALID_HANDLE;
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); no application pointer or notify
    // callback; `s` is a live, writable handle.
    check("C_OpenSession", unsafe {
        call!(f, C_OpenSession, slot, flags, ptr::null_mut(), None, &mut s)
    })?;
    Ok(s)
}

pub fn close_session(f: Fl, s: CK_SESSION_HANDLE) {
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); C_CloseSession takes no pointers.
    let _ = unsafe { call!(f, C_CloseSession, s) };
}

pub fn login(f: Fl, s: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &str) -> Result<(), String> {
    let mut pin = pin.as_bytes().to_vec();
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); `pin` holds the `pin.len()` bytes passed.
    let rv = unsafe { call!(f, C_Login, s, user, pin.as_mut_ptr(), pin.len() as CK_ULONG) };
    if rv == CKR_USER_ALREADY_LOGGED_IN {
        return Ok(());
    }
    check("C_Login", rv)
}

/// An attribute template that owns the values its CK_ATTRIBUTEs point to.
#[derive(Default)]
pub struct Template {
    attrs: Vec<CK_ATTRIBUTE>,
    // Each inner Vec's heap buffer stays put when `values` grows.
    values: Vec<Vec<u8>>,
}

impl Template {
    pub fn bytes(mut self, kind: CK_ATTRIBUTE_TYPE, value: &[u8]) -> Self {
        let mut v = value.to_vec();
        self.attrs.push(CK_ATTRIBUTE {
            type_: kind,
            pValue: v.as_mut_ptr().cast(),
            ulValueLen: v.len() as CK_ULONG,
        });
        self.values.push(v);
        self
    }

    pub fn bool(self, kind: CK_ATTRIBUTE_TYPE, value: bool) -> Self {
        self.bytes(kind, &[if value { CK_TRUE } else { CK_FALSE }])
    }

    pub fn ulong(self, kind: CK_ATTRIBUTE_TYPE, value: CK_ULONG) -> Self {
        self.bytes(kind, &value.to_ne_bytes())
    }

    pub fn as_mut_ptr(&mut self) -> *mut CK_ATTRIBUTE {
        self.attrs.as_mut_ptr()
    }

    pub fn len(&self) -> CK_ULONG {
        self.attrs.len() as CK_ULONG
    }
}

/// The single object of `class` labelled `label`.
pub fn find_object(
    f: Fl,
    s: CK_SESSION_HANDLE,
    class: CK_OBJECT_CLASS,
    label: &str,
) -> Result<CK_OBJECT_HANDLE, String> {
    let mut t = Template::default()
        .ulong(CKA_CLASS, class)
        .bytes(CKA_LABEL, label.as_bytes());
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); `t` holds `t.len()` attributes whose
    // values it owns, alive for the call.
    check("C_FindObjectsInit", unsafe {
        call!(f, C_FindObjectsInit, s, t.as_mut_ptr(), t.len())
    })?;
    let mut found = [CK_INVALID_HANDLE; 2];
    let mut n: CK_ULONG = 0;
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); `found` has room for the 2 handles
    // passed as the maximum, `n` is a live, writable count.
    let rv = unsafe { call!(f, C_FindObjects, s, found.as_mut_ptr(), 2, &mut n) };
    // SAFETY: `f` is a loaded module's list (see [`Fl`]); C_FindObjectsFinal takes no pointers.
    let _ = unsafe { call!(f, C_FindObjectsFinal, s) };
    check("C_FindObjects", rv)?;
    match n {
        1 => Ok(found[0]),
        0 => Err(format!("no object labelled {label:?} of class {class:#x}")),
        _ => Err(format!("several objects labelled {label:?} of class {class:#x}")),
    }
}
