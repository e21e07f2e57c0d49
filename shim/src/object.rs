//! Object management: create, copy, destroy, attributes, search.

use hsmbridge_proto::template;

use crate::prelude::*;

/// # Safety
/// PKCS#11 caller contract: /// `tmpl` is NULL or valid for reads of `count` `CK_ATTRIBUTE`s, each
/// `pValue` NULL or valid for reads of `ulValueLen` bytes (attribute arrays
/// likewise, recursively); `object` is NULL or valid for writes of a
/// `CK_OBJECT_HANDLE`.
#[no_mangle]
pub unsafe extern "C" fn C_CreateObject(
    session: CK_SESSION_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    object: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        // SAFETY: `tmpl` is NULL or `count` readable attributes with readable
        // values, by this function's contract, which is what
        // `values_from_c` requires.
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        if object.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let h = crate::out::ulong(l.call(Call::CreateObject(wire::SessionTemplate { session, template }))?)?;
        // SAFETY: `object` is not NULL (checked above) and, by this function's
        // contract, an aligned pointer valid for writes.
        unsafe { put(object, l.tag(h)) }
    })
}

/// # Safety
/// PKCS#11 caller contract: /// `tmpl` is NULL or valid for reads of `count` `CK_ATTRIBUTE`s, each
/// `pValue` NULL or valid for reads of `ulValueLen` bytes (attribute arrays
/// likewise, recursively); `new_object` is NULL or valid for writes of
/// a `CK_OBJECT_HANDLE`.
#[no_mangle]
pub unsafe extern "C" fn C_CopyObject(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    new_object: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let object = l.object(object)?;
        // SAFETY: `tmpl` is NULL or `count` readable attributes with readable
        // values, by this function's contract, which is what
        // `values_from_c` requires.
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        if new_object.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let h = crate::out::ulong(l.call(Call::CopyObject(wire::ObjectTemplate {
            session,
            object,
            template,
        }))?)?;
        // SAFETY: `new_object` is not NULL (checked above) and, by this function's
        // contract, an aligned pointer valid for writes.
        unsafe { put(new_object, l.tag(h)) }
    })
}

#[no_mangle]
pub extern "C" fn C_DestroyObject(session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let object = l.object(object)?;
        check(l.call(Call::DestroyObject(wire::Object { session, object }))?.rv)
    })
}

/// # Safety
/// PKCS#11 caller contract: `size` is NULL or valid for writes of a
/// `CK_ULONG`.
#[no_mangle]
pub unsafe extern "C" fn C_GetObjectSize(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    size: *mut CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let object = l.object(object)?;
        if size.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let n = crate::out::ulong(l.call(Call::GetObjectSize(wire::Object { session, object }))?)?;
        // SAFETY: `size` is not NULL (checked above) and, by this function's
        // contract, an aligned pointer valid for writes.
        unsafe { put(size, n as CK_ULONG) }
    })
}

/// # Safety
/// PKCS#11 caller contract: `tmpl` is NULL or valid for reads and writes of
/// `count` `CK_ATTRIBUTE`s, each `pValue` NULL or valid for writes of
/// `ulValueLen` bytes (attribute arrays likewise, recursively).
#[no_mangle]
pub unsafe extern "C" fn C_GetAttributeValue(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let object = l.object(object)?;
        // SAFETY: `tmpl` is NULL or `count` readable attributes, by this
        // function's contract; `request_from_c` reads only their types,
        // lengths and pointers, never the (possibly uninitialised) values.
        let template = unsafe { template::request_from_c(tmpl, count) }?;
        let r = l.call(Call::GetAttributeValue(wire::ObjectTemplate {
            session,
            object,
            template,
        }))?;
        // The template is written back whatever the CK_RV: per-attribute
        // results accompany CKR_ATTRIBUTE_SENSITIVE, _TYPE_INVALID, _BUFFER_TOO_SMALL.
        if let Some(Body::Template(answer)) = &r.result {
            // SAFETY: `tmpl`/`count` are the template `request_from_c` read
            // above for this call: NULL or `count` writable attributes whose
            // `pValue`s are NULL or writable for `ulValueLen` bytes.
            unsafe { template::write_back(tmpl, count, answer) };
        }
        check(r.rv)
    })
}

/// # Safety
/// PKCS#11 caller contract: /// `tmpl` is NULL or valid for reads of `count` `CK_ATTRIBUTE`s, each
/// `pValue` NULL or valid for reads of `ulValueLen` bytes (attribute arrays
/// likewise, recursively).
#[no_mangle]
pub unsafe extern "C" fn C_SetAttributeValue(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let object = l.object(object)?;
        // SAFETY: `tmpl` is NULL or `count` readable attributes with readable
        // values, by this function's contract, which is what
        // `values_from_c` requires.
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        check(
            l.call(Call::SetAttributeValue(wire::ObjectTemplate {
                session,
                object,
                template,
            }))?
            .rv,
        )
    })
}

/// # Safety
/// PKCS#11 caller contract: /// `tmpl` is NULL or valid for reads of `count` `CK_ATTRIBUTE`s, each
/// `pValue` NULL or valid for reads of `ulValueLen` bytes (attribute arrays
/// likewise, recursively).
#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsInit(
    session: CK_SESSION_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        // SAFETY: `tmpl` is NULL or `count` readable attributes with readable
        // values, by this function's contract, which is what
        // `values_from_c` requires.
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        check(
            l.call(Call::FindObjectsInit(wire::SessionTemplate { session, template }))?
                .rv,
        )
    })
}

/// # Safety
/// PKCS#11 caller contract: `objects` is NULL (only with `max_count` 0) or
/// valid for writes of `max_count` handles; `count` is NULL or valid for
/// writes of a `CK_ULONG`.
#[no_mangle]
pub unsafe extern "C" fn C_FindObjects(
    session: CK_SESSION_HANDLE,
    objects: *mut CK_OBJECT_HANDLE,
    max_count: CK_ULONG,
    count: *mut CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        if count.is_null() || (objects.is_null() && max_count != 0) {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let found = body!(
            l.call(Call::FindObjects(wire::FindObjects {
                session,
                max_count: max_count as u64
            }))?,
            Ulongs
        );
        let n = found.values.len().min(max_count as usize);
        for (i, h) in found.values.iter().take(n).enumerate() {
            // SAFETY: `i < n <= max_count`, so `max_count` is not 0 and
            // `objects` is not NULL (checked above); by this function's
            // contract it is then valid for writes of `max_count` handles.
            unsafe { *objects.add(i) = l.tag(*h) };
        }
        // SAFETY: `count` is not NULL (checked above) and, by this function's
        // contract, an aligned pointer valid for writes.
        unsafe { put(count, n as CK_ULONG) }
    })
}

#[no_mangle]
pub extern "C" fn C_FindObjectsFinal(session: CK_SESSION_HANDLE) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        check(l.call(Call::FindObjectsFinal(wire::Session { session }))?.rv)
    })
}
