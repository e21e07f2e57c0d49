//! Deep copy of `CK_ATTRIBUTE` templates between C memory and messages,
//! including the attributes (`CKA_WRAP_TEMPLATE` and friends) whose value is
//! itself a template.

use std::mem::size_of;
use std::ptr;

use cryptoki_sys::*;

use crate::mechanism::copy_bytes;
use crate::wire::{self, attribute::Value};

/// Array attributes hold templates; one level of nesting is what PKCS#11
/// defines, a little more is tolerated, unbounded recursion is not.
const MAX_DEPTH: usize = 4;

/// Largest attribute buffer the sidecar allocates for one value.
pub const MAX_VALUE_CAPACITY: u64 = 16 << 20;

/// Attributes whose value is itself a template. (Other CKF_ARRAY_ATTRIBUTE
/// attributes, such as CKA_ALLOWED_MECHANISMS, hold plain arrays of numbers.)
fn is_template(attr_type: u64) -> bool {
    matches!(attr_type as CK_ATTRIBUTE_TYPE, CKA_WRAP_TEMPLATE | CKA_UNWRAP_TEMPLATE | CKA_DERIVE_TEMPLATE)
}

unsafe fn attrs<'a>(p: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<&'a [CK_ATTRIBUTE], CK_RV> {
    if count == 0 {
        Ok(&[])
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
    if depth > MAX_DEPTH {
        return Err(CKR_ATTRIBUTE_VALUE_INVALID);
    }
    let mut out = Vec::with_capacity(count as usize);
    for a in attrs(p, count)? {
        let value = if a.pValue.is_null() {
            None
        } else if is_template(a.type_) {
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
    if depth > MAX_DEPTH {
        return Err(CKR_ATTRIBUTE_VALUE_INVALID);
    }
    let mut out = Vec::with_capacity(count as usize);
    for a in attrs(p, count)? {
        let (capacity, value) = if a.pValue.is_null() {
            (None, None)
        } else if is_template(a.type_) && a.ulValueLen as usize >= size_of::<CK_ATTRIBUTE>() {
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

/// A template rebuilt in C memory (sidecar side), owning every buffer.
pub struct OwnedTemplate {
    raw: Vec<CK_ATTRIBUTE>,
    slots: Vec<Slot>,
    /// The app passed a NULL template: the backend gets NULL as well.
    null: bool,
}

enum Slot {
    Null,
    Bytes(Vec<u8>),
    Nested(OwnedTemplate),
}

impl OwnedTemplate {
    pub fn as_mut_ptr(&mut self) -> *mut CK_ATTRIBUTE {
        if self.null {
            ptr::null_mut()
        } else {
            self.raw.as_mut_ptr()
        }
    }

    pub fn count(&self) -> CK_ULONG {
        self.raw.len() as CK_ULONG
    }

    /// A template with the values the app supplied.
    pub fn values(t: Option<&wire::Template>) -> Result<Self, CK_RV> {
        t.map_or_else(|| Ok(Self::null()), |t| Self::build(t, false))
    }

    /// Empty buffers of the capacities the app's C_GetAttributeValue template has.
    pub fn buffers(t: Option<&wire::Template>) -> Result<Self, CK_RV> {
        t.map_or_else(|| Ok(Self::null()), |t| Self::build(t, true))
    }

    fn null() -> Self {
        OwnedTemplate { raw: Vec::new(), slots: Vec::new(), null: true }
    }

    fn build(t: &wire::Template, for_output: bool) -> Result<Self, CK_RV> {
        let mut slots = Vec::with_capacity(t.attributes.len());
        let mut raw = Vec::with_capacity(t.attributes.len());
        for a in &t.attributes {
            let attr_type = crate::to_ulong(a.r#type).ok_or(CKR_ATTRIBUTE_TYPE_INVALID)?;
            let mut slot = match (&a.value, for_output) {
                (Some(Value::Nested(inner)), _) => Slot::Nested(Self::build(inner, for_output)?),
                (Some(Value::Bytes(v)), false) => Slot::Bytes(v.clone()),
                (None, true) => match a.capacity {
                    Some(c) => Slot::Bytes(vec![0; c.min(MAX_VALUE_CAPACITY) as usize]),
                    None => Slot::Null,
                },
                _ => Slot::Null,
            };
            let (p, len) = match &mut slot {
                Slot::Null => (ptr::null_mut(), a.length),
                Slot::Bytes(v) => (v.as_mut_ptr() as *mut _, v.len() as u64),
                Slot::Nested(inner) => {
                    (inner.raw.as_mut_ptr() as *mut _, (inner.raw.len() * size_of::<CK_ATTRIBUTE>()) as u64)
                }
            };
            raw.push(CK_ATTRIBUTE { type_: attr_type, pValue: p, ulValueLen: crate::to_ulong(len).ok_or(CKR_ATTRIBUTE_VALUE_INVALID)? });
            slots.push(slot);
        }
        Ok(OwnedTemplate { raw, slots, null: false })
    }

    /// Reads back what the backend wrote into a C_GetAttributeValue template.
    pub fn read_back(&self) -> wire::Template {
        let attributes = self
            .raw
            .iter()
            .zip(&self.slots)
            .map(|(a, slot)| {
                let length = a.ulValueLen as u64;
                let written = a.ulValueLen != CK_UNAVAILABLE_INFORMATION;
                let value = match slot {
                    Slot::Bytes(buf) if written && (a.ulValueLen as usize) <= buf.len() => {
                        Some(Value::Bytes(buf[..a.ulValueLen as usize].to_vec()))
                    }
                    Slot::Nested(inner) if written => Some(Value::Nested(inner.read_back())),
                    _ => None,
                };
                wire::Attribute { r#type: a.type_ as u64, value, capacity: None, length }
            })
            .collect();
        wire::Template { attributes }
    }
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
