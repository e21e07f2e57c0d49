//! Object management: create, copy, destroy, attributes, search.

use hsmbridge_proto::template;

use crate::prelude::*;

#[no_mangle]
pub extern "C" fn C_CreateObject(
    session: CK_SESSION_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    object: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        if object.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let h = crate::out::ulong(l.call(Call::CreateObject(wire::SessionTemplate { session, template }))?)?;
        unsafe { put(object, l.tag(h)) }
    })
}

#[no_mangle]
pub extern "C" fn C_CopyObject(
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
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        if new_object.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let h = crate::out::ulong(l.call(Call::CopyObject(wire::ObjectTemplate { session, object, template }))?)?;
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

#[no_mangle]
pub extern "C" fn C_GetObjectSize(session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE, size: *mut CK_ULONG) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let object = l.object(object)?;
        if size.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let n = crate::out::ulong(l.call(Call::GetObjectSize(wire::Object { session, object }))?)?;
        unsafe { put(size, n as CK_ULONG) }
    })
}

#[no_mangle]
pub extern "C" fn C_GetAttributeValue(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let object = l.object(object)?;
        let template = unsafe { template::request_from_c(tmpl, count) }?;
        let r = l.call(Call::GetAttributeValue(wire::ObjectTemplate { session, object, template }))?;
        // The template is written back whatever the CK_RV: per-attribute
        // results accompany CKR_ATTRIBUTE_SENSITIVE, _TYPE_INVALID, _BUFFER_TOO_SMALL.
        if let Some(Body::Template(answer)) = &r.result {
            unsafe { template::write_back(tmpl, count, answer) };
        }
        check(r.rv)
    })
}

#[no_mangle]
pub extern "C" fn C_SetAttributeValue(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let object = l.object(object)?;
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        check(l.call(Call::SetAttributeValue(wire::ObjectTemplate { session, object, template }))?.rv)
    })
}

#[no_mangle]
pub extern "C" fn C_FindObjectsInit(session: CK_SESSION_HANDLE, tmpl: *mut CK_ATTRIBUTE, count: CK_ULONG) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let template = unsafe { template::values_from_c(tmpl, count) }?;
        check(l.call(Call::FindObjectsInit(wire::SessionTemplate { session, template }))?.rv)
    })
}

#[no_mangle]
pub extern "C" fn C_FindObjects(
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
        let found = body!(l.call(Call::FindObjects(wire::FindObjects { session, max_count: max_count as u64 }))?, Ulongs);
        let n = found.values.len().min(max_count as usize);
        for (i, h) in found.values.iter().take(n).enumerate() {
            unsafe { *objects.add(i) = l.tag(*h) };
        }
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
