//! Key management: generate, wrap, unwrap, derive.

use hsmbridge_proto::{mechanism, template};

use crate::prelude::*;

/// # Safety
/// PKCS#11 caller contract: `mech` is NULL or points to a readable `CK_MECHANISM`
/// whose parameter memory is valid for its mechanism type;
/// `tmpl` is NULL or valid for reads of `count` `CK_ATTRIBUTE`s, each
/// `pValue` NULL or valid for reads of `ulValueLen` bytes (attribute arrays
/// likewise, recursively); `key` is NULL or valid for writes of a `CK_OBJECT_HANDLE`.
#[no_mangle]
pub unsafe extern "C" fn C_GenerateKey(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    tmpl: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        // SAFETY: `mech` is NULL (CKR_ARGUMENTS_BAD) or a valid CK_MECHANISM
        // with valid parameter memory, by this function's contract, which is
        // what `from_c` requires.
        let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
        // SAFETY: `tmpl` is NULL or `count` readable attributes with readable
        // values, by this function's contract, which is what
        // `values_from_c` requires.
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        if key.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let h = crate::out::ulong(l.call(Call::GenerateKey(wire::GenerateKey {
            session,
            mechanism,
            template,
        }))?)?;
        // SAFETY: `key` is not NULL (checked above) and, by this function's
        // contract, an aligned pointer valid for writes.
        unsafe { put(key, l.tag(h)) }
    })
}

/// # Safety
/// PKCS#11 caller contract: `mech` is NULL or points to a readable `CK_MECHANISM`
/// whose parameter memory is valid for its mechanism type;
/// `public_tmpl`/`public_count` and `private_tmpl`/`private_count` are each
/// NULL or valid for reads of that many `CK_ATTRIBUTE`s with readable
/// values; `public_key` and `private_key` are NULL or valid for writes of a
/// `CK_OBJECT_HANDLE`.
#[no_mangle]
pub unsafe extern "C" fn C_GenerateKeyPair(
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
        // SAFETY: `mech` is NULL (CKR_ARGUMENTS_BAD) or a valid CK_MECHANISM
        // with valid parameter memory, by this function's contract, which is
        // what `from_c` requires.
        let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
        // SAFETY: `public_tmpl` is NULL or `public_count` readable attributes
        // with readable values, by this function's contract, which is what
        // `values_from_c` requires.
        let public_template = unsafe { template::values_from_c(public_tmpl, public_count) }?;
        // SAFETY: `private_tmpl` is NULL or `private_count` readable attributes
        // with readable values, by this function's contract, which is what
        // `values_from_c` requires.
        let private_template = unsafe { template::values_from_c(private_tmpl, private_count) }?;
        if public_key.is_null() || private_key.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let call = Call::GenerateKeyPair(wire::GenerateKeyPair {
            session,
            mechanism,
            public_template,
            private_template,
        });
        let pair = body!(l.call(call)?, KeyPair);
        // SAFETY: `public_key` and `private_key` are not NULL (checked above)
        // and, by this function's contract, aligned pointers valid for writes.
        unsafe {
            put(public_key, l.tag(pair.public_key))?;
            put(private_key, l.tag(pair.private_key))
        }
    })
}

/// # Safety
/// PKCS#11 caller contract: `mech` is NULL or points to a readable `CK_MECHANISM`
/// whose parameter memory is valid for its mechanism type;
/// `wrapped_len` is NULL or valid for reads and writes of a `CK_ULONG`;
/// `wrapped` is NULL or valid for writes of `*wrapped_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn C_WrapKey(
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
        // SAFETY: `mech` is NULL (CKR_ARGUMENTS_BAD) or a valid CK_MECHANISM
        // with valid parameter memory, by this function's contract, which is
        // what `from_c` requires.
        let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
        // SAFETY: `wrapped_len` is NULL or a readable CK_ULONG, by this
        // function's contract.
        let (capacity, length_null) = unsafe { out_spec(wrapped, wrapped_len) };
        let call = Call::WrapKey(wire::WrapKey {
            session,
            mechanism,
            wrapping_key,
            key,
            capacity,
            length_null,
        });
        let r = l.call(call)?;
        // SAFETY: `wrapped`/`wrapped_len` are this call's output arguments,
        // whose capacity `out_spec` read above: `wrapped_len` is NULL or
        // writable, `wrapped` NULL or valid for `capacity` bytes.
        unsafe { write_output(r, wrapped, wrapped_len, capacity) }
    })
}

/// # Safety
/// PKCS#11 caller contract: `mech` is NULL or points to a readable `CK_MECHANISM`
/// whose parameter memory is valid for its mechanism type;
/// `wrapped` is NULL or valid for reads of `wrapped_len` bytes;
/// `tmpl` is NULL or valid for reads of `count` `CK_ATTRIBUTE`s, each
/// `pValue` NULL or valid for reads of `ulValueLen` bytes (attribute arrays
/// likewise, recursively); `key` is NULL or valid for writes of a `CK_OBJECT_HANDLE`.
#[no_mangle]
pub unsafe extern "C" fn C_UnwrapKey(
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
        // SAFETY: `mech` is NULL (CKR_ARGUMENTS_BAD) or a valid CK_MECHANISM
        // with valid parameter memory, by this function's contract, which is
        // what `from_c` requires.
        let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
        // SAFETY: `wrapped` is NULL or valid for `wrapped_len` bytes, by this
        // function's contract.
        let wrapped_key = unsafe { input(wrapped, wrapped_len) }?;
        // SAFETY: `tmpl` is NULL or `count` readable attributes with readable
        // values, by this function's contract, which is what
        // `values_from_c` requires.
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        if key.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let call = Call::UnwrapKey(wire::UnwrapKey {
            session,
            mechanism,
            unwrapping_key,
            wrapped_key,
            template,
        });
        let h = crate::out::ulong(l.call(call)?)?;
        // SAFETY: `key` is not NULL (checked above) and, by this function's
        // contract, an aligned pointer valid for writes.
        unsafe { put(key, l.tag(h)) }
    })
}

/// # Safety
/// PKCS#11 caller contract: `mech` is NULL or points to a readable `CK_MECHANISM`
/// whose parameter memory is valid for its mechanism type;
/// `tmpl` is NULL or valid for reads of `count` `CK_ATTRIBUTE`s, each
/// `pValue` NULL or valid for reads of `ulValueLen` bytes (attribute arrays
/// likewise, recursively); `key` is NULL or valid for writes of a `CK_OBJECT_HANDLE`.
#[no_mangle]
pub unsafe extern "C" fn C_DeriveKey(
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
        // SAFETY: `mech` is NULL (CKR_ARGUMENTS_BAD) or a valid CK_MECHANISM
        // with valid parameter memory, by this function's contract, which is
        // what `from_c` requires.
        let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
        // SAFETY: `tmpl` is NULL or `count` readable attributes with readable
        // values, by this function's contract, which is what
        // `values_from_c` requires.
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        if key.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let h = crate::out::ulong(l.call(Call::DeriveKey(wire::DeriveKey {
            session,
            mechanism,
            base_key,
            template,
        }))?)?;
        // SAFETY: `key` is not NULL (checked above) and, by this function's
        // contract, an aligned pointer valid for writes.
        unsafe { put(key, l.tag(h)) }
    })
}
