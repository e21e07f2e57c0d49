//! A key's name for the audit trail: its class, `CKA_LABEL` and `CKA_ID`, read from the module
//! once per token object handle and cached (session objects are read each time: their handles
//! die with their session). The cache is bounded ([`MAX_CACHED`]), forgets a handle its object
//! is destroyed through, and is cleared when the module is re-initialized (handles start over).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use cryptoki_sys::*;

use crate::backend::{p11, Backend};

/// Handles named at most; a full cache starts over.
pub const MAX_CACHED: usize = 4096;
/// The longest label and ID read (longer ones are shown as their length only).
pub const MAX_NAME_BYTES: usize = 256;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyName {
    pub handle: u64,
    pub class: Option<CK_OBJECT_CLASS>,
    /// `CKA_LABEL` as UTF-8 (lossy); `None` when the object has none or it cannot be read.
    pub label: Option<String>,
    /// `CKA_ID` in hex.
    pub id: Option<String>,
}

impl KeyName {
    /// Whether the object is a private or secret key (or its class could not be read: then it
    /// is audited, to be safe).
    pub fn is_private_or_secret(&self) -> bool {
        self.class.is_none_or(|c| c == CKO_PRIVATE_KEY || c == CKO_SECRET_KEY)
    }

    pub fn class_name(&self) -> Option<&'static str> {
        Some(match self.class? {
            CKO_DATA => "data",
            CKO_CERTIFICATE => "certificate",
            CKO_PUBLIC_KEY => "public_key",
            CKO_PRIVATE_KEY => "private_key",
            CKO_SECRET_KEY => "secret_key",
            CKO_HW_FEATURE => "hw_feature",
            CKO_DOMAIN_PARAMETERS => "domain_parameters",
            CKO_MECHANISM => "mechanism",
            _ => "other",
        })
    }
}

#[derive(Default)]
pub struct KeyNames {
    cache: Mutex<HashMap<u64, Arc<KeyName>>>,
}

impl KeyNames {
    fn cache(&self) -> MutexGuard<'_, HashMap<u64, Arc<KeyName>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The name of `handle`, read through `session` (a session of the calling application,
    /// checked by the caller) unless cached. `session_object`: do not cache it.
    pub fn name(
        &self,
        backend: &Backend,
        session: CK_SESSION_HANDLE,
        handle: CK_OBJECT_HANDLE,
        session_object: bool,
    ) -> Arc<KeyName> {
        if let Some(name) = self.cache().get(&(handle as u64)) {
            return name.clone();
        }
        let name = Arc::new(read(backend, session, handle));
        if !session_object && name.class.is_some() {
            let mut cache = self.cache();
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(handle as u64, name.clone());
        }
        name
    }

    /// The object behind `handle` was destroyed.
    pub fn forget(&self, handle: u64) {
        self.cache().remove(&handle);
    }

    /// The module was re-initialized: every handle may name another object now.
    pub fn clear(&self) {
        self.cache().clear();
    }
}

/// Reads class, label and ID (each on its own, so one unreadable attribute does not hide the
/// others); a public key's class only (its uses are not audited: no more calls for them).
fn read(backend: &Backend, session: CK_SESSION_HANDLE, handle: CK_OBJECT_HANDLE) -> KeyName {
    let class = read_attribute(backend, session, handle, CKA_CLASS).and_then(|v| {
        let bytes: [u8; std::mem::size_of::<CK_OBJECT_CLASS>()] = v.as_slice().try_into().ok()?;
        Some(CK_OBJECT_CLASS::from_ne_bytes(bytes))
    });
    if class == Some(CKO_PUBLIC_KEY) {
        return KeyName {
            handle: handle as u64,
            class,
            label: None,
            id: None,
        };
    }
    let label = read_attribute(backend, session, handle, CKA_LABEL).map(|v| String::from_utf8_lossy(&v).into_owned());
    let id = read_attribute(backend, session, handle, CKA_ID).map(|v| v.iter().map(|b| format!("{b:02x}")).collect());
    KeyName {
        handle: handle as u64,
        class,
        label,
        id,
    }
}

fn read_attribute(
    backend: &Backend,
    session: CK_SESSION_HANDLE,
    handle: CK_OBJECT_HANDLE,
    attribute: CK_ATTRIBUTE_TYPE,
) -> Option<Vec<u8>> {
    let mut query = CK_ATTRIBUTE {
        type_: attribute,
        pValue: std::ptr::null_mut(),
        ulValueLen: 0,
    };
    // SAFETY: one CK_ATTRIBUTE with a NULL value asks for the length only; `query` is live and
    // the count (1) says how many there are. Session and object are plain numbers the module checks.
    let rv = unsafe { p11!(backend, C_GetAttributeValue(session, handle, &mut query, 1)) };
    let len = usize::try_from(query.ulValueLen).ok()?;
    if rv != CKR_OK || query.ulValueLen == CK_UNAVAILABLE_INFORMATION || len > MAX_NAME_BYTES {
        return None;
    }
    let mut value = vec![0u8; len];
    let mut read = CK_ATTRIBUTE {
        type_: attribute,
        pValue: value.as_mut_ptr().cast(),
        ulValueLen: len as CK_ULONG,
    };
    // SAFETY: `read` points at `value`, `len` writable bytes that outlive the call, and says so in
    // ulValueLen; the module writes at most that many (more is CKR_BUFFER_TOO_SMALL).
    let rv = unsafe { p11!(backend, C_GetAttributeValue(session, handle, &mut read, 1)) };
    if rv != CKR_OK {
        return None;
    }
    value.truncate(usize::try_from(read.ulValueLen).unwrap_or(0).min(len));
    Some(value)
}
