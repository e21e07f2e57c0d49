//! Shim side: an app's `CK_ATTRIBUTE` arrays described in messages, and the
//! sidecar's answer to C_GetAttributeValue written back into them.

use std::mem::size_of;
use std::ptr;

use cryptoki_sys::*;

use super::is_template;
use crate::limits::{MAX_ATTRIBUTES, MAX_NESTING};
use crate::mechanism::copy_bytes;
use crate::wire::{self, attribute::Value};

/// The app's `count` attributes at `p`, refusing more than [`MAX_ATTRIBUTES`]
/// and a NULL array with a count.
///
/// # Safety
/// `p` is NULL or valid for reads of `count` aligned `CK_ATTRIBUTE`s that
/// nothing writes while `'a` lasts.
unsafe fn attrs<'a>(p: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<&'a [CK_ATTRIBUTE], CK_RV> {
    if count == 0 {
        Ok(&[])
    } else if count as usize > MAX_ATTRIBUTES {
        Err(CKR_HOST_MEMORY)
    } else if p.is_null() {
        Err(CKR_ARGUMENTS_BAD)
    } else {
        // SAFETY: `p` is not NULL and `count` is 1 to MAX_ATTRIBUTES (checked
        // above), so by this function's contract `p` holds `count` readable,
        // aligned attributes that stay unchanged for `'a`.
        Ok(unsafe { std::slice::from_raw_parts(p, count as usize) })
    }
}

fn nested_count(len: CK_ULONG) -> Result<CK_ULONG, CK_RV> {
    let size = size_of::<CK_ATTRIBUTE>() as CK_ULONG;
    if !len.is_multiple_of(size) {
        return Err(CKR_ATTRIBUTE_VALUE_INVALID);
    }
    Ok(len / size)
}

/// Copies a template whose values the app supplies (C_CreateObject,
/// C_SetAttributeValue, key generation, C_FindObjectsInit, ...). A NULL
/// template with no attributes is `None`, so the backend sees the NULL too.
///
/// # Safety
/// `p` is NULL or valid for reads of `count` aligned `CK_ATTRIBUTE`s, each
/// `pValue` NULL or valid for reads of `ulValueLen` bytes (for a
/// `CKA_*_TEMPLATE` attribute, an aligned attribute array of that many bytes,
/// likewise, recursively), none of it written during the call.
pub unsafe fn values_from_c(p: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<Option<wire::Template>, CK_RV> {
    if p.is_null() && count == 0 {
        return Ok(None);
    }
    // SAFETY: this function's contract is `values_at_depth`'s.
    unsafe { values_at_depth(p, count, 0) }.map(Some)
}

/// [`values_from_c`] at nesting depth `depth`.
///
/// # Safety
/// As for [`values_from_c`].
unsafe fn values_at_depth(p: *const CK_ATTRIBUTE, count: CK_ULONG, depth: usize) -> Result<wire::Template, CK_RV> {
    if depth > MAX_NESTING {
        return Err(CKR_ATTRIBUTE_VALUE_INVALID);
    }
    // SAFETY: `p` is NULL or `count` readable, aligned attributes, unchanged
    // during the call, by this function's contract.
    let app = unsafe { attrs(p, count) }?;
    // `attrs` checked `count` against MAX_ATTRIBUTES before this allocation.
    let mut out = Vec::with_capacity(app.len());
    for a in app {
        let value = if a.pValue.is_null() {
            // A module would read ulValueLen bytes at NULL.
            if a.ulValueLen != 0 {
                return Err(CKR_ATTRIBUTE_VALUE_INVALID);
            }
            None
        } else if is_template(a.type_ as u64) {
            // SAFETY: a template attribute with a value: by this function's
            // contract an aligned array of `ulValueLen` bytes, that is
            // `nested_count` attributes (a whole number of them, checked), which
            // meet this same contract.
            let inner =
                unsafe { values_at_depth(a.pValue as *const CK_ATTRIBUTE, nested_count(a.ulValueLen)?, depth + 1) }?;
            Some(Value::Nested(inner))
        } else {
            // SAFETY: `pValue` is not NULL here, so by this function's contract
            // it is valid for reads of `ulValueLen` bytes.
            unsafe { copy_bytes(a.pValue as *const u8, a.ulValueLen) }.map(Value::Bytes)
        };
        out.push(wire::Attribute {
            r#type: a.type_ as u64,
            value,
            capacity: None,
            length: a.ulValueLen as u64,
        });
    }
    Ok(wire::Template { attributes: out })
}

/// Describes the buffers of a C_GetAttributeValue template: for each
/// attribute its capacity (or NULL) and, for array attributes, the inner
/// template to fill.
///
/// # Safety
/// `p` is NULL or valid for reads of `count` aligned `CK_ATTRIBUTE`s, none of
/// them written during the call; a `CKA_*_TEMPLATE` attribute's `pValue`, when
/// not NULL and `ulValueLen` is at least one `CK_ATTRIBUTE`, is an aligned
/// attribute array of that many bytes, likewise, recursively. Other values
/// are not read and need not be initialised.
pub unsafe fn request_from_c(p: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<Option<wire::Template>, CK_RV> {
    if p.is_null() && count == 0 {
        return Ok(None);
    }
    // SAFETY: this function's contract is `request_at_depth`'s.
    unsafe { request_at_depth(p, count, 0) }.map(Some)
}

/// [`request_from_c`] at nesting depth `depth`.
///
/// # Safety
/// As for [`request_from_c`].
unsafe fn request_at_depth(p: *const CK_ATTRIBUTE, count: CK_ULONG, depth: usize) -> Result<wire::Template, CK_RV> {
    if depth > MAX_NESTING {
        return Err(CKR_ATTRIBUTE_VALUE_INVALID);
    }
    // SAFETY: `p` is NULL or `count` readable, aligned attributes, unchanged
    // during the call, by this function's contract.
    let app = unsafe { attrs(p, count) }?;
    // `attrs` checked `count` against MAX_ATTRIBUTES before this allocation.
    let mut out = Vec::with_capacity(app.len());
    for a in app {
        let (capacity, value) = if a.pValue.is_null() {
            (None, None)
        } else if is_template(a.type_ as u64) && a.ulValueLen as usize >= size_of::<CK_ATTRIBUTE>() {
            // SAFETY: a template attribute with a value of at least one attribute
            // (checked): by this function's contract an aligned array of
            // `ulValueLen / size_of::<CK_ATTRIBUTE>()` attributes meeting this
            // same contract.
            let inner = unsafe {
                request_at_depth(
                    a.pValue as *const CK_ATTRIBUTE,
                    a.ulValueLen / size_of::<CK_ATTRIBUTE>() as CK_ULONG,
                    depth + 1,
                )
            }?;
            (Some(a.ulValueLen as u64), Some(Value::Nested(inner)))
        } else {
            (Some(a.ulValueLen as u64), None)
        };
        out.push(wire::Attribute {
            r#type: a.type_ as u64,
            value,
            capacity,
            length: 0,
        });
    }
    Ok(wire::Template { attributes: out })
}

/// Writes the backend's answer to C_GetAttributeValue into the app's
/// template: every ulValueLen, and the values the backend wrote. The answer
/// is not trusted with the app's memory: a value is written only into a
/// buffer it fits as the app sized it, and a nested template only into an
/// attribute that [`request_from_c`] described as one, at most as many
/// attributes as the app's array holds.
///
/// # Safety
/// `p` is NULL or valid for reads and writes of `count` aligned
/// `CK_ATTRIBUTE`s that nothing else accesses during the call, each `pValue`
/// NULL or valid for writes of `ulValueLen` bytes; a `CKA_*_TEMPLATE`
/// attribute's non-NULL value of at least one `CK_ATTRIBUTE` is an aligned
/// attribute array of that many bytes, likewise, recursively. (That is the
/// template [`request_from_c`] read for this call, unchanged since.)
pub unsafe fn write_back(p: *mut CK_ATTRIBUTE, count: CK_ULONG, answer: &wire::Template) {
    if p.is_null() {
        return;
    }
    // SAFETY: `p` is not NULL, so by this function's contract it holds `count`
    // aligned attributes, readable and writable, that nothing else accesses
    // while `app` is in use.
    let app = unsafe { std::slice::from_raw_parts_mut(p, count as usize) };
    for (a, got) in app.iter_mut().zip(&answer.attributes) {
        // The app's buffer as it sized it, and whether `request_from_c` sent it
        // as a nested template, before the answer overwrites type and length.
        let capacity = a.ulValueLen as usize;
        let nested = is_template(a.type_ as u64) && capacity >= size_of::<CK_ATTRIBUTE>();
        // The backend names the attributes of a nested template it describes.
        a.type_ = got.r#type as CK_ATTRIBUTE_TYPE;
        // On 32-bit hosts u64::MAX narrows to CK_UNAVAILABLE_INFORMATION as it should.
        a.ulValueLen = got.length as CK_ULONG;
        if a.pValue.is_null() {
            continue;
        }
        match &got.value {
            Some(Value::Bytes(v)) if v.len() <= a.ulValueLen as usize && v.len() <= capacity => {
                // SAFETY: `pValue` is not NULL, so by this function's contract it is
                // valid for writes of `capacity` bytes, and `v` is no longer (checked
                // just above); `v` is the decoded answer's own memory, so the two
                // cannot overlap.
                unsafe { ptr::copy_nonoverlapping(v.as_ptr(), a.pValue as *mut u8, v.len()) };
            }
            Some(Value::Nested(inner)) if nested => {
                let n = inner.attributes.len().min(capacity / size_of::<CK_ATTRIBUTE>()) as CK_ULONG;
                // SAFETY: `a` is a template attribute with a non-NULL value of at
                // least one attribute (`nested`, checked above), so by this
                // function's contract its value is an array of `capacity /
                // size_of::<CK_ATTRIBUTE>()` attributes, at least `n`, meeting this
                // same contract.
                unsafe { write_back(a.pValue as *mut CK_ATTRIBUTE, n, inner) };
            }
            _ => {}
        }
    }
}
