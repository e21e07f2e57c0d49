//! Sidecar side: a template rebuilt in C memory from a message, owning every
//! buffer the module is given. Only the shapes PKCS#11 defines are built:
//! nested templates only as the value of a `CKA_*_TEMPLATE` attribute and
//! at most [`MAX_NESTING`] deep, no NULL value with a length, at most
//! [`MAX_ATTRIBUTES`] attributes and [`MAX_DATA`] bytes of output buffers.

use std::mem::size_of;
use std::ptr;

use cryptoki_sys::*;

use super::{is_template, may_hold_pointers};
use crate::limits::{MAX_ATTRIBUTES, MAX_DATA, MAX_NESTING};
use crate::wire::{self, attribute::Value};

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

/// What a template is built for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Values the app supplies (C_CreateObject, key templates, searches).
    Values,
    /// Buffers of the capacities the app's C_GetAttributeValue template has.
    Buffers,
    /// The same template with every value NULL: a length query.
    Lengths,
}

/// What building may still spend.
struct Budget {
    attributes: usize,
    bytes: usize,
}

impl Budget {
    fn new() -> Self {
        Budget {
            attributes: MAX_ATTRIBUTES,
            bytes: MAX_DATA,
        }
    }
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
        Self::build_opt(t, Purpose::Values)
    }

    /// Empty buffers of the capacities the app's C_GetAttributeValue template
    /// has. `CKR_HOST_MEMORY` when they add up to more than [`MAX_DATA`]; see
    /// [`OwnedTemplate::buffers_for_lengths`].
    pub fn buffers(t: Option<&wire::Template>) -> Result<Self, CK_RV> {
        Self::build_opt(t, Purpose::Buffers)
    }

    /// The app's C_GetAttributeValue template with NULL values: the module
    /// answers every length.
    pub fn lengths(t: Option<&wire::Template>) -> Result<Self, CK_RV> {
        Self::build_opt(t, Purpose::Lengths)
    }

    /// Buffers for the app's template no larger than the lengths `query` (a
    /// [`OwnedTemplate::lengths`] template the module answered) found: for
    /// apps whose buffers are much larger than the values.
    pub fn buffers_for_lengths(t: &wire::Template, query: &OwnedTemplate) -> Result<Self, CK_RV> {
        let mut fitted = t.clone();
        fit_capacities(&mut fitted, query);
        Self::build(&fitted, Purpose::Buffers, 0, &mut Budget::new())
    }

    fn build_opt(t: Option<&wire::Template>, purpose: Purpose) -> Result<Self, CK_RV> {
        match t {
            None => Ok(OwnedTemplate {
                raw: Vec::new(),
                slots: Vec::new(),
                null: true,
            }),
            Some(t) => Self::build(t, purpose, 0, &mut Budget::new()),
        }
    }

    fn build(t: &wire::Template, purpose: Purpose, depth: usize, budget: &mut Budget) -> Result<Self, CK_RV> {
        if depth > MAX_NESTING {
            return Err(CKR_ATTRIBUTE_VALUE_INVALID);
        }
        budget.attributes = budget
            .attributes
            .checked_sub(t.attributes.len())
            .ok_or(CKR_HOST_MEMORY)?;
        let mut slots = Vec::with_capacity(t.attributes.len());
        let mut raw = Vec::with_capacity(t.attributes.len());
        for a in &t.attributes {
            let attr_type = crate::to_ulong(a.r#type).ok_or(CKR_ATTRIBUTE_TYPE_INVALID)?;
            let mut slot = match (&a.value, purpose) {
                (Some(Value::Nested(_)), _) if !is_template(a.r#type) => return Err(CKR_ATTRIBUTE_VALUE_INVALID),
                (Some(Value::Nested(inner)), Purpose::Lengths) => {
                    // Count the inner attributes against the limits all the same.
                    Self::build(inner, Purpose::Lengths, depth + 1, budget)?;
                    Slot::Null
                }
                (Some(Value::Nested(inner)), _) => Slot::Nested(Self::build(inner, purpose, depth + 1, budget)?),
                // Bytes the module would read as CK_ATTRIBUTEs, pointers included.
                (Some(Value::Bytes(_)), _) if may_hold_pointers(a.r#type) => return Err(CKR_ATTRIBUTE_VALUE_INVALID),
                (Some(Value::Bytes(v)), Purpose::Values) => Slot::Bytes(v.clone()),
                // A module would read (or write) ulValueLen bytes at NULL.
                (None, Purpose::Values) if a.length != 0 => return Err(CKR_ATTRIBUTE_VALUE_INVALID),
                (None, Purpose::Values) => Slot::Null,
                // Output templates describe buffers, never values.
                (Some(Value::Bytes(_)), _) => return Err(CKR_ARGUMENTS_BAD),
                (None, Purpose::Lengths) => Slot::Null,
                // A buffer the module would fill with CK_ATTRIBUTEs (its own pointers):
                // template attributes are read into a nested template, or asked for their length.
                (None, Purpose::Buffers)
                    if may_hold_pointers(a.r#type)
                        && a.capacity.is_some_and(|c| c >= size_of::<CK_ATTRIBUTE>() as u64) =>
                {
                    return Err(CKR_ARGUMENTS_BAD)
                }
                (None, Purpose::Buffers) => match a.capacity {
                    Some(c) => {
                        let c = usize::try_from(c).map_err(|_| CKR_HOST_MEMORY)?;
                        budget.bytes = budget.bytes.checked_sub(c).ok_or(CKR_HOST_MEMORY)?;
                        Slot::Bytes(vec![0; c])
                    }
                    None => Slot::Null,
                },
            };
            let (p, len) = match &mut slot {
                Slot::Null => (ptr::null_mut(), 0),
                Slot::Bytes(v) => (v.as_mut_ptr() as *mut _, v.len()),
                Slot::Nested(inner) => (
                    inner.raw.as_mut_ptr() as *mut _,
                    inner.raw.len() * size_of::<CK_ATTRIBUTE>(),
                ),
            };
            raw.push(CK_ATTRIBUTE {
                type_: attr_type,
                pValue: p,
                ulValueLen: len as CK_ULONG,
            });
            slots.push(slot);
        }
        Ok(OwnedTemplate {
            raw,
            slots,
            null: false,
        })
    }

    /// Reads back what the backend wrote into a C_GetAttributeValue template:
    /// each length, and a value only where the module reported one that fits
    /// the buffer it was given.
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
                wire::Attribute {
                    r#type: a.type_ as u64,
                    value,
                    capacity: None,
                    length,
                }
            })
            .collect();
        wire::Template { attributes }
    }
}

/// Lowers each buffer's capacity to the length the module reported for it
/// (an unknown or unavailable length keeps a zero-length buffer, which the
/// module answers with the same CK_UNAVAILABLE_INFORMATION).
fn fit_capacities(t: &mut wire::Template, query: &OwnedTemplate) {
    for (a, got) in t.attributes.iter_mut().zip(&query.raw) {
        if let (Some(c), None) = (a.capacity, &a.value) {
            let len = got.ulValueLen as u64;
            a.capacity = Some(if got.ulValueLen == CK_UNAVAILABLE_INFORMATION {
                0
            } else {
                c.min(len)
            });
        }
    }
}
