//! Object management: create, copy, destroy, size, attributes, search.

use std::ffi::c_void;

use cryptoki_sys::*;

use super::{ck, Api};
use crate::names;
use crate::template::Template;

/// One attribute asked for by C_GetAttributeValue.
#[derive(Clone, Copy, Debug)]
pub enum AttrReq {
    /// `pValue == NULL`: a length query.
    Len(CK_ATTRIBUTE_TYPE),
    /// A buffer of this many bytes.
    Buf(CK_ATTRIBUTE_TYPE, usize),
}

impl AttrReq {
    fn ty(&self) -> CK_ATTRIBUTE_TYPE {
        match *self {
            AttrReq::Len(t) | AttrReq::Buf(t, _) => t,
        }
    }
}

/// `ulValueLen` as returned, with CK_UNAVAILABLE_INFORMATION spelled out.
fn len_text(len: CK_ULONG) -> String {
    if len == CK_UNAVAILABLE_INFORMATION {
        "UNAVAILABLE".into()
    } else {
        len.to_string()
    }
}

/// Key material that is a big integer: random in a generated key, and liable to lose leading
/// zero bytes.
const INTEGERS: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_VALUE,
    CKA_MODULUS,
    CKA_PRIVATE_EXPONENT,
    CKA_PRIME_1,
    CKA_PRIME_2,
    CKA_EXPONENT_1,
    CKA_EXPONENT_2,
    CKA_COEFFICIENT,
    CKA_PRIME,
    CKA_SUBPRIME,
    CKA_BASE,
];

/// Whether a value of a random key (generated, derived from one) differs
/// between modules by nature: its key material and what is computed from
/// it. Flags, sizes, types and what the template fixed do not.
fn redacted(ty: CK_ATTRIBUTE_TYPE, _value: &[u8]) -> bool {
    INTEGERS.contains(&ty) || [CKA_CHECK_VALUE, CKA_PUBLIC_KEY_INFO, CKA_EC_POINT].contains(&ty)
}

/// A random big integer (a DSA/DH public value, a generated prime) loses its leading zero
/// bytes now and then, so two runs give lengths a byte or so apart: a random object's integer
/// attributes show their length rounded up to 8 bytes.
fn shown_len(random: bool, ty: CK_ATTRIBUTE_TYPE, len: CK_ULONG) -> String {
    if random && INTEGERS.contains(&ty) && len != CK_UNAVAILABLE_INFORMATION {
        format!("~{}", len.div_ceil(8) * 8)
    } else {
        len_text(len)
    }
}

/// Whether C_GetAttributeValue's per-attribute lengths mean something
/// after returning `rv` (PKCS#11 2.40, 5.7).
fn attribute_results_defined(rv: CK_RV) -> bool {
    matches!(
        rv,
        CKR_OK | CKR_ATTRIBUTE_SENSITIVE | CKR_ATTRIBUTE_TYPE_INVALID | CKR_BUFFER_TOO_SMALL
    )
}

impl Api {
    pub fn create_object(&mut self, s: CK_SESSION_HANDLE, t: &Template) -> (CK_RV, CK_OBJECT_HANDLE) {
        let mut h: CK_OBJECT_HANDLE = 0;
        // SAFETY: C_CreateObject is an entry of `self`'s loaded module (see `ck!`); `t` holds
        // `t.len()` attributes whose values it owns, `h` is a live, writable handle.
        let rv = unsafe { ck!(self, C_CreateObject)(s, t.as_ptr(), t.len(), &mut h) };
        let details = if rv == CKR_OK {
            self.t.new_object(h)
        } else {
            String::new()
        };
        let call = format!("C_CreateObject({}, [{}])", self.t.session(s), t.describe());
        self.line(&call, rv, &details);
        (rv, h)
    }

    /// Creates an object and panics (with the rv) if the module refuses.
    pub fn must_create(&mut self, s: CK_SESSION_HANDLE, t: &Template) -> CK_OBJECT_HANDLE {
        let (rv, h) = self.create_object(s, t);
        assert_eq!(
            rv,
            CKR_OK,
            "C_CreateObject([{}]) failed: {}",
            t.describe(),
            names::rv(rv)
        );
        h
    }

    pub fn copy_object(
        &mut self,
        s: CK_SESSION_HANDLE,
        o: CK_OBJECT_HANDLE,
        t: &Template,
    ) -> (CK_RV, CK_OBJECT_HANDLE) {
        let mut h: CK_OBJECT_HANDLE = 0;
        // SAFETY: C_CopyObject is an entry of `self`'s loaded module (see `ck!`); `t` holds
        // `t.len()` attributes whose values it owns, `h` is a live, writable handle.
        let rv = unsafe { ck!(self, C_CopyObject)(s, o, t.as_ptr(), t.len(), &mut h) };
        let details = if rv == CKR_OK {
            self.t.new_object(h)
        } else {
            String::new()
        };
        let call = format!(
            "C_CopyObject({}, {}, [{}])",
            self.t.session(s),
            self.t.object(o),
            t.describe()
        );
        self.line(&call, rv, &details);
        (rv, h)
    }

    pub fn destroy_object(&mut self, s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> CK_RV {
        // SAFETY: C_DestroyObject is an entry of `self`'s loaded module (see `ck!`); it takes no
        // pointers.
        let rv = unsafe { ck!(self, C_DestroyObject)(s, o) };
        let call = format!("C_DestroyObject({}, {})", self.t.session(s), self.t.object(o));
        self.line(&call, rv, "")
    }

    pub fn object_size(&mut self, s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> CK_RV {
        let mut size: CK_ULONG = 0;
        // SAFETY: C_GetObjectSize is an entry of `self`'s loaded module (see `ck!`); `size` is a
        // live, writable CK_ULONG.
        let rv = unsafe { ck!(self, C_GetObjectSize)(s, o, &mut size) };
        let details = if rv == CKR_OK {
            format!("size={}", len_text(size))
        } else {
            String::new()
        };
        let call = format!("C_GetObjectSize({}, {})", self.t.session(s), self.t.object(o));
        self.line(&call, rv, &details)
    }

    /// One C_GetAttributeValue call as `reqs` describe; returns the rv and,
    /// per attribute, `ulValueLen` and the bytes written. Key material of
    /// random keys is recorded by length only (see [`redacted`]).
    pub fn get_attributes(
        &mut self,
        s: CK_SESSION_HANDLE,
        o: CK_OBJECT_HANDLE,
        reqs: &[AttrReq],
    ) -> (CK_RV, Vec<(CK_ULONG, Vec<u8>)>) {
        let random = self.is_random(o);
        let mut bufs: Vec<Vec<u8>> = reqs
            .iter()
            .map(|r| {
                if let AttrReq::Buf(_, n) = r {
                    vec![0u8; *n]
                } else {
                    Vec::new()
                }
            })
            .collect();
        let mut attrs: Vec<CK_ATTRIBUTE> = reqs
            .iter()
            .zip(bufs.iter_mut())
            .map(|(r, b)| CK_ATTRIBUTE {
                type_: r.ty(),
                pValue: match r {
                    AttrReq::Len(_) => std::ptr::null_mut(),
                    AttrReq::Buf(..) if b.is_empty() => std::ptr::NonNull::<u8>::dangling().as_ptr().cast(),
                    AttrReq::Buf(..) => b.as_mut_ptr().cast::<c_void>(),
                },
                ulValueLen: b.len() as CK_ULONG,
            })
            .collect();
        // SAFETY: C_GetAttributeValue is an entry of `self`'s loaded module (see `ck!`); `attrs`
        // holds `attrs.len()` attributes, each pValue NULL, or dangling with length 0, or the
        // buffer in `bufs` of its ulValueLen bytes, all alive for the call.
        let rv = unsafe { ck!(self, C_GetAttributeValue)(s, o, attrs.as_mut_ptr(), attrs.len() as CK_ULONG) };
        let asked: Vec<String> = reqs
            .iter()
            .map(|r| match r {
                AttrReq::Len(t) => format!("{}:NULL", names::attribute(*t)),
                AttrReq::Buf(t, n) => format!("{}:{}", names::attribute(*t), shown_len(random, *t, *n as CK_ULONG)),
            })
            .collect();
        let mut results = Vec::new();
        let mut shown = Vec::new();
        // Per-attribute results are defined only for these outcomes.
        let defined = attribute_results_defined(rv);
        for ((a, r), mut b) in attrs.iter().zip(reqs).zip(bufs) {
            let len = a.ulValueLen;
            let filled =
                matches!(r, AttrReq::Buf(..)) && len != CK_UNAVAILABLE_INFORMATION && (len as usize) <= b.len();
            let mut text = format!("{} len={}", names::attribute(a.type_), shown_len(random, a.type_, len));
            if filled {
                b.truncate(len as usize);
                text += &if random && redacted(a.type_, &b) {
                    " val=<redacted>".to_owned()
                } else {
                    format!(" val={}", names::hex(&b))
                };
            } else {
                b.clear();
            }
            if defined {
                shown.push(text);
            }
            results.push((len, b));
        }
        let call = format!(
            "C_GetAttributeValue({}, {}, [{}])",
            self.t.session(s),
            self.t.object(o),
            asked.join(", ")
        );
        let details = if defined {
            format!("[{}]", shown.join(", "))
        } else {
            String::new()
        };
        self.line(&call, rv, &details);
        (rv, results)
    }

    /// The usual two calls: lengths, then values in right-sized buffers.
    /// Attributes whose length is unavailable come back as `None`.
    pub fn attribute_values(
        &mut self,
        s: CK_SESSION_HANDLE,
        o: CK_OBJECT_HANDLE,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> (CK_RV, Vec<Option<Vec<u8>>>) {
        let query: Vec<AttrReq> = types.iter().map(|t| AttrReq::Len(*t)).collect();
        let (rv, lens) = self.get_attributes(s, o, &query);
        if !attribute_results_defined(rv) {
            return (rv, vec![None; types.len()]);
        }
        let fetch: Vec<AttrReq> = types
            .iter()
            .zip(&lens)
            .map(|(t, (len, _))| {
                if *len == CK_UNAVAILABLE_INFORMATION {
                    AttrReq::Len(*t)
                } else {
                    AttrReq::Buf(*t, *len as usize)
                }
            })
            .collect();
        let (rv, got) = self.get_attributes(s, o, &fetch);
        let values = got
            .into_iter()
            .zip(&fetch)
            .map(|((_, v), r)| matches!(r, AttrReq::Buf(..)).then_some(v))
            .collect();
        (rv, values)
    }

    /// One attribute's value read with the two-call pattern; panics unless
    /// the module returns it.
    pub fn must_read(&mut self, s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE, ty: CK_ATTRIBUTE_TYPE) -> Vec<u8> {
        let (rv, mut values) = self.attribute_values(s, o, &[ty]);
        assert_eq!(rv, CKR_OK, "reading {} failed: {}", names::attribute(ty), names::rv(rv));
        values
            .pop()
            .flatten()
            .unwrap_or_else(|| panic!("{} unavailable", names::attribute(ty)))
    }

    /// Reads an attribute-array attribute (CKA_WRAP_TEMPLATE…) the three-step
    /// way: array size, then element types and lengths, then values.
    pub fn get_nested(&mut self, s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE, ty: CK_ATTRIBUTE_TYPE) -> CK_RV {
        let f = ck!(self, C_GetAttributeValue);
        let session = self.t.session(s);
        let object = self.t.object(o);
        let name = names::attribute(ty);
        // 1. Size of the array.
        let mut outer = CK_ATTRIBUTE {
            type_: ty,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        };
        // SAFETY: `f` is C_GetAttributeValue, an entry of `self`'s loaded module (see `ck!`);
        // `outer` is one live attribute with a NULL pValue (a length query).
        let rv = unsafe { f(s, o, &mut outer, 1) };
        self.line(
            &format!("C_GetAttributeValue({session}, {object}, [{name}:NULL])"),
            rv,
            &format!("len={}", len_text(outer.ulValueLen)),
        );
        if rv != CKR_OK || outer.ulValueLen == CK_UNAVAILABLE_INFORMATION {
            return rv;
        }
        let count = outer.ulValueLen as usize / std::mem::size_of::<CK_ATTRIBUTE>();
        // 2. Element types and lengths.
        let mut inner: Vec<CK_ATTRIBUTE> = (0..count)
            .map(|_| CK_ATTRIBUTE {
                type_: 0,
                pValue: std::ptr::null_mut(),
                ulValueLen: 0,
            })
            .collect();
        outer.pValue = inner.as_mut_ptr().cast();
        // SAFETY: `f` is C_GetAttributeValue, an entry of `self`'s loaded module (see `ck!`);
        // `outer` points to `inner`, `count` live attributes (its ulValueLen is their byte size)
        // with NULL pValues.
        let rv = unsafe { f(s, o, &mut outer, 1) };
        let elems = |inner: &[CK_ATTRIBUTE], vals: Option<&[Vec<u8>]>| {
            inner
                .iter()
                .enumerate()
                .map(|(i, a)| match vals {
                    Some(v) => format!(
                        "{}={}",
                        names::attribute(a.type_),
                        names::hex(&v[i][..(a.ulValueLen as usize).min(v[i].len())])
                    ),
                    None => format!("{} len={}", names::attribute(a.type_), len_text(a.ulValueLen)),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let shown = elems(&inner, None);
        self.line(
            &format!("C_GetAttributeValue({session}, {object}, [{name}:{count} x NULL])"),
            rv,
            &format!("[{shown}]"),
        );
        if rv != CKR_OK {
            return rv;
        }
        // 3. Values.
        let mut vals: Vec<Vec<u8>> = inner
            .iter()
            .map(|a| {
                vec![
                    0u8;
                    if a.ulValueLen == CK_UNAVAILABLE_INFORMATION {
                        0
                    } else {
                        a.ulValueLen as usize
                    }
                ]
            })
            .collect();
        for (a, v) in inner.iter_mut().zip(vals.iter_mut()) {
            a.pValue = v.as_mut_ptr().cast();
        }
        // SAFETY: `f` is C_GetAttributeValue, an entry of `self`'s loaded module (see `ck!`);
        // `outer` points to `inner`, whose pValues are the buffers in `vals` of their ulValueLen
        // bytes, all alive for the call.
        let rv = unsafe { f(s, o, &mut outer, 1) };
        let shown = elems(&inner, Some(&vals));
        self.line(
            &format!("C_GetAttributeValue({session}, {object}, [{name}:{count} x values])"),
            rv,
            &format!("[{shown}]"),
        )
    }

    pub fn set_attributes(&mut self, s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE, t: &Template) -> CK_RV {
        // SAFETY: C_SetAttributeValue is an entry of `self`'s loaded module (see `ck!`); `t` holds
        // `t.len()` attributes whose values it owns.
        let rv = unsafe { ck!(self, C_SetAttributeValue)(s, o, t.as_ptr(), t.len()) };
        let call = format!(
            "C_SetAttributeValue({}, {}, [{}])",
            self.t.session(s),
            self.t.object(o),
            t.describe()
        );
        self.line(&call, rv, "")
    }

    pub fn find_init(&mut self, s: CK_SESSION_HANDLE, t: &Template) -> CK_RV {
        // SAFETY: C_FindObjectsInit is an entry of `self`'s loaded module (see `ck!`); `t` holds
        // `t.len()` attributes whose values it owns.
        let rv = unsafe { ck!(self, C_FindObjectsInit)(s, t.as_ptr(), t.len()) };
        let call = format!("C_FindObjectsInit({}, [{}])", self.t.session(s), t.describe());
        self.line(&call, rv, "")
    }

    pub fn find(&mut self, s: CK_SESSION_HANDLE, max: usize) -> (CK_RV, Vec<CK_OBJECT_HANDLE>) {
        let mut found = vec![0 as CK_OBJECT_HANDLE; max.max(1)];
        let mut count: CK_ULONG = 0;
        // SAFETY: C_FindObjects is an entry of `self`'s loaded module (see `ck!`); `found` has room
        // for `max` handles (at least one), `count` is a live, writable CK_ULONG.
        let rv = unsafe { ck!(self, C_FindObjects)(s, found.as_mut_ptr(), max as CK_ULONG, &mut count) };
        found.truncate(if rv == CKR_OK { (count as usize).min(max) } else { 0 });
        let shown: Vec<String> = found.iter().map(|h| self.t.found_object(*h)).collect();
        let details = if rv == CKR_OK {
            format!("[{}]", shown.join(" "))
        } else {
            String::new()
        };
        let call = format!("C_FindObjects({}, max={max})", self.t.session(s));
        self.line(&call, rv, &details);
        (rv, found)
    }

    pub fn find_final(&mut self, s: CK_SESSION_HANDLE) -> CK_RV {
        // SAFETY: C_FindObjectsFinal is an entry of `self`'s loaded module (see `ck!`); it takes no
        // pointers.
        let rv = unsafe { ck!(self, C_FindObjectsFinal)(s) };
        let call = format!("C_FindObjectsFinal({})", self.t.session(s));
        self.line(&call, rv, "")
    }

    /// Init, C_FindObjects in batches of `batch` until none is left, Final.
    pub fn find_all(&mut self, s: CK_SESSION_HANDLE, t: &Template, batch: usize) -> Vec<CK_OBJECT_HANDLE> {
        let mut all = Vec::new();
        if self.find_init(s, t) != CKR_OK {
            return all;
        }
        loop {
            let (rv, found) = self.find(s, batch);
            if rv != CKR_OK || found.is_empty() {
                break;
            }
            all.extend(found);
        }
        self.find_final(s);
        all
    }
}
