//! The handful of PKCS#11 calls the benchmark needs, on a module loaded by
//! `hsmbridge_conformance::module::Module`. Every failure says which function
//! failed and with which CK_RV.

use std::ptr;

use cryptoki_sys::*;

/// Calls `$f.$name(args…)`; a missing entry in the function list is
/// `CKR_FUNCTION_NOT_SUPPORTED` rather than a panic.
macro_rules! call {
    ($f:expr, $name:ident $(, $arg:expr)* $(,)?) => {
        match $f.$name {
            // SAFETY: the callers pass pointers to live buffers of the stated lengths.
            Some(func) => unsafe { func($($arg),*) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    };
}
pub(crate) use call;

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
    check("C_Initialize", call!(f, C_Initialize, &mut args as *mut _ as *mut _))
}

pub fn finalize(f: Fl) -> Result<(), String> {
    check("C_Finalize", call!(f, C_Finalize, ptr::null_mut()))
}

/// "description version" of the library, from C_GetInfo.
pub fn library_info(f: Fl) -> Result<String, String> {
    let mut info = CK_INFO::default();
    check("C_GetInfo", call!(f, C_GetInfo, &mut info))?;
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
    check("C_GetSlotList", call!(f, C_GetSlotList, CK_TRUE, ptr::null_mut(), &mut n))?;
    let mut list = vec![0; n as usize];
    check("C_GetSlotList", call!(f, C_GetSlotList, CK_TRUE, list.as_mut_ptr(), &mut n))?;
    list.truncate(n as usize);
    Ok(list)
}

fn token_info(f: Fl, slot: CK_SLOT_ID) -> Result<CK_TOKEN_INFO, String> {
    let mut info = CK_TOKEN_INFO::default();
    check("C_GetTokenInfo", call!(f, C_GetTokenInfo, slot, &mut info))?;
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
        call!(f, C_InitToken, slot, so.as_mut_ptr(), so.len() as CK_ULONG, lbl.as_mut_ptr()),
    )?;
    let s = open_session(f, slot, true)?;
    login(f, s, CKU_SO, so_pin)?;
    let mut user = user_pin.as_bytes().to_vec();
    let rv = call!(f, C_InitPIN, s, user.as_mut_ptr(), user.len() as CK_ULONG);
    let _ = call!(f, C_Logout, s);
    close_session(f, s);
    check("C_InitPIN", rv)
}

pub fn open_session(f: Fl, slot: CK_SLOT_ID, rw: bool) -> Result<CK_SESSION_HANDLE, String> {
    let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
    let mut s = CK_INVALID_HANDLE;
    check("C_OpenSession", call!(f, C_OpenSession, slot, flags, ptr::null_mut(), None, &mut s))?;
    Ok(s)
}

pub fn close_session(f: Fl, s: CK_SESSION_HANDLE) {
    let _ = call!(f, C_CloseSession, s);
}

pub fn login(f: Fl, s: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &str) -> Result<(), String> {
    let mut pin = pin.as_bytes().to_vec();
    let rv = call!(f, C_Login, s, user, pin.as_mut_ptr(), pin.len() as CK_ULONG);
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
    let mut t = Template::default().ulong(CKA_CLASS, class).bytes(CKA_LABEL, label.as_bytes());
    check("C_FindObjectsInit", call!(f, C_FindObjectsInit, s, t.as_mut_ptr(), t.len()))?;
    let mut found = [CK_INVALID_HANDLE; 2];
    let mut n: CK_ULONG = 0;
    let rv = call!(f, C_FindObjects, s, found.as_mut_ptr(), 2, &mut n);
    let _ = call!(f, C_FindObjectsFinal, s);
    check("C_FindObjects", rv)?;
    match n {
        1 => Ok(found[0]),
        0 => Err(format!("no object labelled {label:?} of class {class:#x}")),
        _ => Err(format!("several objects labelled {label:?} of class {class:#x}")),
    }
}
