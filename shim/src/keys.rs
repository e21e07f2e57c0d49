//! Key management: generate, wrap, unwrap, derive.

use hsmbridge_proto::{mechanism, template};

use crate::prelude::*;

#[no_mangle]
pub extern "C" fn C_GenerateKey(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    tmpl: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        if key.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let h = crate::out::ulong(l.call(Call::GenerateKey(wire::GenerateKey { session, mechanism, template }))?)?;
        unsafe { put(key, l.tag(h)) }
    })
}

#[no_mangle]
pub extern "C" fn C_GenerateKeyPair(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    public_tmpl: *mut CK_ATTRIBUTE,
    public_count: CK_ULONG,
    private_tmpl: *mut CK_ATTRIBUTE,
    private_count: CK_ULONG,
    public_key: *mut CK_OBJECT_HANDLE,
    private_key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
        let public_template = unsafe { template::values_from_c(public_tmpl, public_count) }?;
        let private_template = unsafe { template::values_from_c(private_tmpl, private_count) }?;
        if public_key.is_null() || private_key.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let call = Call::GenerateKeyPair(wire::GenerateKeyPair { session, mechanism, public_template, private_template });
        let pair = body!(l.call(call)?, KeyPair);
        unsafe {
            put(public_key, l.tag(pair.public_key))?;
            put(private_key, l.tag(pair.private_key))
        }
    })
}

#[no_mangle]
pub extern "C" fn C_WrapKey(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    wrapping_key: CK_OBJECT_HANDLE,
    key: CK_OBJECT_HANDLE,
    wrapped: *mut CK_BYTE,
    wrapped_len: *mut CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let wrapping_key = l.key(wrapping_key)?;
        let key = l.key(key)?;
        let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
        let (capacity, length_null) = unsafe { out_spec(wrapped, wrapped_len) };
        let call = Call::WrapKey(wire::WrapKey { session, mechanism, wrapping_key, key, capacity, length_null });
        let r = l.call(call)?;
        unsafe { write_output(r, wrapped, wrapped_len, capacity) }
    })
}

#[no_mangle]
pub extern "C" fn C_UnwrapKey(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    unwrapping_key: CK_OBJECT_HANDLE,
    wrapped: *mut CK_BYTE,
    wrapped_len: CK_ULONG,
    tmpl: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let unwrapping_key = l.key(unwrapping_key)?;
        let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
        let wrapped_key = unsafe { input(wrapped, wrapped_len) }?;
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        if key.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let call = Call::UnwrapKey(wire::UnwrapKey { session, mechanism, unwrapping_key, wrapped_key, template });
        let h = crate::out::ulong(l.call(call)?)?;
        unsafe { put(key, l.tag(h)) }
    })
}

#[no_mangle]
pub extern "C" fn C_DeriveKey(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    base_key: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let base_key = l.key(base_key)?;
        let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        if key.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let h = crate::out::ulong(l.call(Call::DeriveKey(wire::DeriveKey { session, mechanism, base_key, template }))?)?;
        unsafe { put(key, l.tag(h)) }
    })
}
