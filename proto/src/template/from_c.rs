//! Shim side: an app's `CK_ATTRIBUTE` arrays described in messages, and the
//! sidecar's answer to C_GetAttributeValue written back into them.

use std::mem::size_of;
use std::ptr;

use cryptoki_sys::*;

use super::is_template;
use crate::limits::{MAX_ATTRIBUTES, MAX_NESTING};
use crate::mechanism::copy_bytes;
use crate::wire::{self, attribute::Value};

unsafe fn attrs<'a>(p: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<&'a [CK_ATTRIBUTE], CK_RV> {
    if count == 0 {
        Ok(&[])
    } else if count as usize > MAX_ATTRIBUTES {
        Err(CKR_HOST_MEMORY)
    } else if p.is_null() {
        Err(CKR_ARGUMENTS_BAD)
    } else {
        Ok(std::slice::from_raw_parts(p, count as usize))
    }
}

fn nested_count(len: CK_ULONG) -> Result<CK_ULONG, CK_RV> {
    let size = size_of::<CK_ATTRIBUTE>() as CK_ULONG;
    if len % size != 0 {
        return Err(CKR_ATTRIBUTE_VALUE_INVALID);
    }
    Ok(len / size)
}

/// Copies a template whose values the app supplies (C_CreateObject,
/// C_SetAttributeValue, key generation, C_FindObjectsInit, ...). A NULL
/// template with no attributes is `None`, so the backend sees the NULL too.
///
/// # Safety
/// `p` is NULL or valid for `count` attributes whose values are readable.
pub unsafe fn values_from_c(p: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<Option<wire::Template>, CK_RV> {
    if p.is_null() && count == 0 {
        return Ok(None);
    }
    values_at_depth(p, count, 0).map(Some)
}

unsafe fn values_at_depth(p: *const CK_ATTRIBUTE, count: CK_ULONG, depth: usize) -> Result<wire::Template, CK_RV> {
    if depth > MAX_NESTING {
        return Err(CKR_ATTRIBUTE_VALUE_INVALID);
    }
    let mut out = Vec::with_capacity(count as usize);
    for a in attrs(p, count)? {
        let value = if a.pValue.is_null() {
            // A module would read ulValueLen bytes at NULL.
            if a.ulValueLen != 0 {
                return Err(CKR_ATTRIBUTE_VALUE_INVALID);
            }
            None
        } else if is_template(a.type_ as u64) {
            let inner = values_at_depth(a.pValue as *const CK_ATTRIBUTE, nested_count(a.ulValueLen)?, depth + 1)?;
            Some(Value::Nested(inner))
        } else {
            copy_bytes(a.pValue as *const u8, a.ulValueLen).map(Value::Bytes)
        };
        out.push(wire::Attribute { r#type: a.type_ as u64, value, capacity: None, length: a.ulValueLen as u64 });
    }
    Ok(wire::Template { attributes: out })
}

/// Describes the buffers of a C_GetAttributeValue template: for each
/// attribute its capacity (or NULL) and, for array attributes, the inner
/// template to fill.
///
/// # Safety
/// As for [`values_from_c`]; the values need not be initialised.
pub unsafe fn request_from_c(p: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<Option<wire::Template>, CK_RV> {
    if p.is_null() && count == 0 {
        return Ok(None);
    }
    request_at_depth(p, count, 0).map(Some)
}

unsafe fn request_at_depth(p: *const CK_ATTRIBUTE, count: CK_ULONG, depth: usize) -> Result<wire::Template, CK_RV> {
    if depth > MAX_NESTING {
        return Err(CKR_ATTRIBUTE_VALUE_INVALID);
    }
    let mut out = Vec::with_capacity(count as usize);
    for a in attrs(p, count)? {
        let (capacity, value) = if a.pValue.is_null() {
            (None, None)
        } else if is_template(a.type_ as u64) && a.ulValueLen as usize >= size_of::<CK_ATTRIBUTE>() {
            let inner = request_at_depth(a.pValue as *const CK_ATTRIBUTE, a.ulValueLen / size_of::<CK_ATTRIBUTE>() as CK_ULONG, depth + 1)?;
            (Some(a.ulValueLen as u64), Some(Value::Nested(inner)))
        } else {
            (Some(a.ulValueLen as u64), None)
        };
        out.push(wire::Attribute { r#type: a.type_ as u64, value, capacity, length: 0 });
    }
    Ok(wire::Template { attributes: out })
}

/// Writes the backend's answer to C_GetAttributeValue into the app's
/// template: every ulValueLen, and the values the backend wrote.
///
/// # Safety
/// `p` is the template described by [`request_from_c`] for this call.
pub unsafe fn write_back(p: *mut CK_ATTRIBUTE, count: CK_ULONG, answer: &wire::Template) {
    if p.is_null() {
        return;
    }
    let app = std::slice::from_raw_parts_mut(p, count as usize);
    for (a, got) in app.iter_mut().zip(&answer.attributes) {
        // The backend names the attributes of a nested template it describes.
        a.type_ = got.r#type as CK_ATTRIBUTE_TYPE;
        // On 32-bit hosts u64::MAX narrows to CK_UNAVAILABLE_INFORMATION as it should.
        a.ulValueLen = got.length as CK_ULONG;
        if a.pValue.is_null() {
            continue;
        }
        match &got.value {
            Some(Value::Bytes(v)) if v.len() <= a.ulValueLen as usize => {
                ptr::copy_nonoverlapping(v.as_ptr(), a.pValue as *mut u8, v.len());
            }
            Some(Value::Nested(inner)) => {
                let n = inner.attributes.len() as CK_ULONG;
                write_back(a.pValue as *mut CK_ATTRIBUTE, n, inner);
            }
            _ => {}
        }
    }
}

