//! Attribute templates that own their values.

use std::ffi::c_void;

use cryptoki_sys::*;

use crate::names;

/// A `CK_ATTRIBUTE` array with the values it points to.
#[derive(Default)]
pub struct Template {
    attrs: Vec<CK_ATTRIBUTE>,
    // Heap buffers the attributes point into (moving a Vec keeps them in place).
    values: Vec<Vec<u8>>,
    nested: Vec<Template>,
    desc: Vec<String>,
}

impl Template {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn bytes(mut self, ty: CK_ATTRIBUTE_TYPE, value: &[u8]) -> Self {
        let buf = value.to_vec();
        self.attrs.push(CK_ATTRIBUTE {
            type_: ty,
            pValue: if buf.is_empty() {
                std::ptr::null_mut()
            } else {
                buf.as_ptr() as *mut c_void
            },
            ulValueLen: buf.len() as CK_ULONG,
        });
        self.values.push(buf);
        let shown = if value.len() > 16 {
            format!("{}B", value.len())
        } else {
            names::hex(value)
        };
        self.desc.push(format!("{}={shown}", names::attribute(ty)));
        self
    }

    /// Like `bytes`, for a value read from a random object (generated domain parameters): the
    /// description rounds its length up to 8 bytes, as random integers lose leading zeros.
    pub fn random_bytes(self, ty: CK_ATTRIBUTE_TYPE, value: &[u8]) -> Self {
        let mut t = self.bytes(ty, value);
        if let Some(last) = t.desc.last_mut() {
            *last = format!("{}=~{}B", names::attribute(ty), value.len().div_ceil(8) * 8);
        }
        t
    }

    pub fn bool(self, ty: CK_ATTRIBUTE_TYPE, value: bool) -> Self {
        let mut t = self.bytes(ty, &[value as CK_BBOOL]);
        t.relabel(format!("{}={value}", names::attribute(ty)));
        t
    }

    pub fn ulong(self, ty: CK_ATTRIBUTE_TYPE, value: CK_ULONG) -> Self {
        let mut t = self.bytes(ty, &value.to_ne_bytes());
        t.relabel(format!("{}={value:#x}", names::attribute(ty)));
        t
    }

    pub fn text(self, ty: CK_ATTRIBUTE_TYPE, value: &str) -> Self {
        let mut t = self.bytes(ty, value.as_bytes());
        t.relabel(format!("{}={value:?}", names::attribute(ty)));
        t
    }

    /// An attribute-array attribute such as `CKA_WRAP_TEMPLATE`.
    pub fn nested(mut self, ty: CK_ATTRIBUTE_TYPE, inner: Template) -> Self {
        self.attrs.push(CK_ATTRIBUTE {
            type_: ty,
            pValue: inner.attrs.as_ptr() as *mut c_void,
            ulValueLen: (inner.attrs.len() * std::mem::size_of::<CK_ATTRIBUTE>()) as CK_ULONG,
        });
        self.desc
            .push(format!("{}=[{}]", names::attribute(ty), inner.describe()));
        self.nested.push(inner);
        self
    }

    fn relabel(&mut self, desc: String) {
        if let Some(last) = self.desc.last_mut() {
            *last = desc;
        }
    }

    /// Adds all attributes of `other` (used to extend a key template).
    pub fn with(mut self, other: Template) -> Self {
        self.attrs.extend(other.attrs);
        self.values.extend(other.values);
        self.nested.extend(other.nested);
        self.desc.extend(other.desc);
        self
    }

    pub fn describe(&self) -> String {
        self.desc.join(", ")
    }

    pub fn len(&self) -> CK_ULONG {
        self.attrs.len() as CK_ULONG
    }

    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }

    /// For the module to read; valid while `self` lives.
    pub fn as_ptr(&self) -> *mut CK_ATTRIBUTE {
        if self.attrs.is_empty() {
            std::ptr::null_mut()
        } else {
            self.attrs.as_ptr() as *mut CK_ATTRIBUTE
        }
    }
}
