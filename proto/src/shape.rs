//! A look at an encoded `Request` before it is decoded: how many template
//! attributes it holds and how deep they nest.
//!
//! Decoding allocates a struct per attribute (about 60 bytes for 2 bytes of
//! wire), so a frame of empty attributes would cost thirty times its size.
//! This walk reads the wire format in place, allocates nothing, and refuses
//! a request past [`MAX_ATTRIBUTES`] or [`MAX_NESTING`] before prost builds
//! anything. Field numbers are those of `pkcs11.proto`; the walk only
//! descends into fields that hold templates and skips everything else.

use cryptoki_sys::{CKR_ATTRIBUTE_VALUE_INVALID, CKR_HOST_MEMORY, CK_RV};

use crate::limits::{MAX_ATTRIBUTES, MAX_NESTING};

/// Why a request was refused before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not protobuf at all: the connection is closed.
    Malformed,
    /// Well-formed but past a limit: answered with this CK_RV.
    Limit(CK_RV),
}

/// Checks an encoded `Request` against the template limits.
pub fn check_request(buf: &[u8]) -> Result<(), Refusal> {
    let mut count = 0usize;
    for field in Fields(buf) {
        let (number, value) = field?;
        let Value::Bytes(call) = value else { continue };
        for nested in template_fields_of_call(number) {
            for field in Fields(call) {
                let (n, v) = field?;
                if let (Value::Bytes(t), true) = (v, n == *nested) {
                    count_template(t, 0, &mut count)?;
                }
            }
        }
    }
    Ok(())
}

/// Which fields of a call's message are `Template`s (see pkcs11.proto).
fn template_fields_of_call(call: u64) -> &'static [u64] {
    match call {
        // SessionTemplate: create_object, find_objects_init
        19 | 25 => &[2],
        // ObjectTemplate: copy_object, get_attribute_value, set_attribute_value
        20 | 23 | 24 => &[3],
        57 => &[3],    // GenerateKey.template
        58 => &[3, 4], // GenerateKeyPair.public_template, private_template
        60 => &[5],    // UnwrapKey.template
        61 => &[4],    // DeriveKey.template
        _ => &[],
    }
}

/// Template.attributes = 1; Attribute.nested = 3.
fn count_template(template: &[u8], depth: usize, count: &mut usize) -> Result<(), Refusal> {
    if depth > MAX_NESTING {
        return Err(Refusal::Limit(CKR_ATTRIBUTE_VALUE_INVALID));
    }
    for field in Fields(template) {
        let (n, v) = field?;
        let (1, Value::Bytes(attribute)) = (n, v) else { continue };
        *count += 1;
        if *count > MAX_ATTRIBUTES {
            return Err(Refusal::Limit(CKR_HOST_MEMORY));
        }
        for field in Fields(attribute) {
            if let (3, Value::Bytes(inner)) = field? {
                count_template(inner, depth + 1, count)?;
            }
        }
    }
    Ok(())
}

enum Value<'a> {
    Scalar,
    Bytes(&'a [u8]),
}

/// The fields of one message, in wire order.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), Refusal>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        Some(self.field())
    }
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Result<(u64, Value<'a>), Refusal> {
        let key = self.varint()?;
        let number = key >> 3;
        let value = match key & 7 {
            0 => self.varint().map(|_| Value::Scalar)?,
            1 => self.take(8).map(|_| Value::Scalar)?,
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Refusal::Malformed)?;
                Value::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Scalar)?,
            // Groups (3, 4) are not used by this protocol; 6 and 7 do not exist.
            _ => return Err(Refusal::Malformed),
        };
        if number == 0 {
            return Err(Refusal::Malformed);
        }
        // Stop after a malformed field: the rest cannot be delimited.
        Ok((number, value))
    }

    fn varint(&mut self) -> Result<u64, Refusal> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.0.split_first().ok_or(Refusal::Malformed)?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Refusal::Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Refusal> {
        if n > self.0.len() {
            return Err(Refusal::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}

#[cfg(test)]
#[path = "shape_tests.rs"]
mod tests;
