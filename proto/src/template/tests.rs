use super::*;
use crate::wire::{self, attribute::Value};
use std::mem::size_of;
use std::ptr;

fn attr(t: CK_ATTRIBUTE_TYPE, v: &mut [u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: t,
        pValue: v.as_mut_ptr() as *mut _,
        ulValueLen: v.len() as CK_ULONG,
    }
}

#[test]
fn nested_wrap_template_survives_a_round_trip() {
    let mut yes = [1u8];
    let mut inner = [attr(CKA_EXTRACTABLE, &mut yes)];
    let outer = [CK_ATTRIBUTE {
        type_: CKA_WRAP_TEMPLATE,
        pValue: inner.as_mut_ptr() as *mut _,
        ulValueLen: size_of::<CK_ATTRIBUTE>() as CK_ULONG,
    }];
    // SAFETY: `outer` is one live attribute whose value is `inner`, one attribute
    // (as many bytes as `ulValueLen`), whose value is `yes`, 1 byte.
    let wire = unsafe { values_from_c(outer.as_ptr(), 1) }.unwrap();
    let mut owned = OwnedTemplate::values(wire.as_ref()).unwrap();
    // SAFETY: `owned` holds one attribute at this pointer, live while it is.
    let got = unsafe { &*owned.as_mut_ptr() };
    assert_eq!(got.type_, CKA_WRAP_TEMPLATE);
    // SAFETY: a nested template's value is the inner attribute array `owned` keeps.
    let nested = unsafe { &*(got.pValue as *const CK_ATTRIBUTE) };
    assert_eq!(nested.type_, CKA_EXTRACTABLE);
    // SAFETY: its value is the 1-byte buffer `owned` keeps.
    assert_eq!(unsafe { *(nested.pValue as *const u8) }, 1);
}

#[test]
fn get_attribute_answer_is_written_back_only_where_it_fits() {
    let mut small = [0u8; 2];
    let mut app = [
        attr(CKA_LABEL, &mut small),
        CK_ATTRIBUTE {
            type_: CKA_ID,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        },
    ];
    // SAFETY: `app` is two live attributes; `request_from_c` reads no values.
    let request = unsafe { request_from_c(app.as_ptr(), 2) }.unwrap().unwrap();
    assert_eq!(request.attributes[0].capacity, Some(2));
    assert_eq!(request.attributes[1].capacity, None);
    let answer = wire::Template {
        attributes: vec![
            wire::Attribute {
                r#type: CKA_LABEL as u64,
                value: None,
                capacity: None,
                length: u64::MAX,
            },
            wire::Attribute {
                r#type: CKA_ID as u64,
                value: None,
                capacity: None,
                length: 5,
            },
        ],
    };
    // SAFETY: `app` is the template `request_from_c` read: two live attributes, the
    // first with the 2-byte `small`, the second with a NULL value.
    unsafe { write_back(app.as_mut_ptr(), 2, &answer) };
    assert_eq!(app[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_eq!(app[1].ulValueLen, 5);
    assert_eq!(small, [0, 0]);
}

#[test]
fn null_template_stays_null_and_null_with_count_is_arguments_bad() {
    // SAFETY: NULL is a template `values_from_c` accepts (and refuses with a count).
    assert!(unsafe { values_from_c(ptr::null(), 0) }.unwrap().is_none());
    // SAFETY: as above.
    assert_eq!(unsafe { values_from_c(ptr::null(), 2) }.err(), Some(CKR_ARGUMENTS_BAD));
    let mut owned = OwnedTemplate::values(None).unwrap();
    assert!(owned.as_mut_ptr().is_null());
}

fn wire_attr(t: CK_ATTRIBUTE_TYPE, value: Option<Value>, capacity: Option<u64>, length: u64) -> wire::Attribute {
    wire::Attribute {
        r#type: t as u64,
        value,
        capacity,
        length,
    }
}

fn template(attributes: Vec<wire::Attribute>) -> wire::Template {
    wire::Template { attributes }
}

/// Audit finding 1: a nested template on a plain attribute would store a raw
/// CK_ATTRIBUTE (a sidecar heap address) in an object the app can read.
#[test]
fn nested_template_only_on_template_attributes() {
    let inner = template(vec![wire_attr(CKA_TOKEN, Some(Value::Bytes(vec![0])), None, 1)]);
    let on_value = template(vec![wire_attr(CKA_VALUE, Some(Value::Nested(inner.clone())), None, 0)]);
    assert_eq!(
        OwnedTemplate::values(Some(&on_value)).err(),
        Some(CKR_ATTRIBUTE_VALUE_INVALID)
    );
    assert_eq!(
        OwnedTemplate::buffers(Some(&on_value)).err(),
        Some(CKR_ATTRIBUTE_VALUE_INVALID)
    );
    let on_wrap = template(vec![wire_attr(CKA_WRAP_TEMPLATE, Some(Value::Nested(inner)), None, 0)]);
    assert!(OwnedTemplate::values(Some(&on_wrap)).is_ok());
}

#[test]
fn nesting_is_capped() {
    let mut t = template(vec![wire_attr(CKA_TOKEN, Some(Value::Bytes(vec![0])), None, 1)]);
    for _ in 0..=crate::limits::MAX_NESTING {
        t = template(vec![wire_attr(CKA_WRAP_TEMPLATE, Some(Value::Nested(t)), None, 0)]);
    }
    assert_eq!(OwnedTemplate::values(Some(&t)).err(), Some(CKR_ATTRIBUTE_VALUE_INVALID));
}

/// Audit finding 2: {CKA_CLASS, NULL, 8} made SoftHSM read 8 bytes at NULL.
#[test]
fn null_value_with_a_length_is_refused_on_both_sides() {
    let t = template(vec![wire_attr(CKA_CLASS, None, None, 8)]);
    assert_eq!(OwnedTemplate::values(Some(&t)).err(), Some(CKR_ATTRIBUTE_VALUE_INVALID));
    let app = [CK_ATTRIBUTE {
        type_: CKA_CLASS,
        pValue: ptr::null_mut(),
        ulValueLen: 8,
    }];
    // SAFETY: `app` is one live attribute; its NULL value is refused, never read.
    let got = unsafe { values_from_c(app.as_ptr(), 1) };
    assert_eq!(got.err(), Some(CKR_ATTRIBUTE_VALUE_INVALID));
    let empty = template(vec![wire_attr(CKA_LABEL, None, None, 0)]);
    let mut owned = OwnedTemplate::values(Some(&empty)).expect("NULL with length 0");
    // SAFETY: `owned` holds one attribute at this pointer, live while it is.
    let a = unsafe { &*owned.as_mut_ptr() };
    assert!(a.pValue.is_null() && a.ulValueLen == 0);
}

/// Audit finding 3: every attribute of a C_GetAttributeValue got a buffer of
/// up to 16 MiB, echoed back.
#[test]
fn output_buffers_and_attribute_counts_are_bounded() {
    let big = |n: usize, cap: u64| {
        template(
            (0..n)
                .map(|i| wire_attr(i as CK_ATTRIBUTE_TYPE, None, Some(cap), 0))
                .collect(),
        )
    };
    assert_eq!(
        OwnedTemplate::buffers(Some(&big(8, 16 << 20))).err(),
        Some(CKR_HOST_MEMORY)
    );
    assert_eq!(
        OwnedTemplate::buffers(Some(&big(2, crate::limits::MAX_DATA as u64))).err(),
        Some(CKR_HOST_MEMORY)
    );
    assert!(OwnedTemplate::buffers(Some(&big(16, 1024))).is_ok());
    let many = template(
        (0..=crate::limits::MAX_ATTRIBUTES)
            .map(|_| wire_attr(CKA_LABEL, None, None, 0))
            .collect(),
    );
    assert_eq!(OwnedTemplate::values(Some(&many)).err(), Some(CKR_HOST_MEMORY));
    // Raw bytes are not a buffer description.
    let bytes = template(vec![wire_attr(CKA_LABEL, Some(Value::Bytes(vec![1; 4])), Some(4), 0)]);
    assert_eq!(OwnedTemplate::buffers(Some(&bytes)).err(), Some(CKR_ARGUMENTS_BAD));
}

#[test]
fn buffers_fitted_to_reported_lengths() {
    let t = template(vec![
        wire_attr(CKA_LABEL, None, Some(crate::limits::MAX_DATA as u64), 0),
        wire_attr(CKA_ID, None, Some(crate::limits::MAX_DATA as u64), 0),
    ]);
    let mut query = OwnedTemplate::lengths(Some(&t)).expect("lengths");
    // What a module answers to the length query.
    // SAFETY: `query` owns two CK_ATTRIBUTEs at this pointer.
    let raw = unsafe { std::slice::from_raw_parts_mut(query.as_mut_ptr(), 2) };
    assert!(raw.iter().all(|a| a.pValue.is_null()));
    raw[0].ulValueLen = 5;
    raw[1].ulValueLen = CK_UNAVAILABLE_INFORMATION;
    let mut fitted = OwnedTemplate::buffers_for_lengths(&t, &query).expect("fits");
    // SAFETY: `fitted` owns two CK_ATTRIBUTEs at this pointer.
    let got = unsafe { std::slice::from_raw_parts(fitted.as_mut_ptr(), 2) };
    assert_eq!((got[0].ulValueLen, got[1].ulValueLen), (5, 0));
    let _ = size_of::<CK_ATTRIBUTE>();
}

/// The answer is not trusted with the app's memory: a value longer than the
/// buffer the app gave, a nested template longer than the app's array, or one
/// for an attribute the app gave a plain buffer is not written.
#[test]
fn write_back_stays_within_the_apps_buffers() {
    let size = size_of::<CK_ATTRIBUTE>();
    let mut small = [0u8; 2];
    let mut plain = [0u8; 64];
    let mut yes = [0u8; 1];
    let mut inner = [attr(CKA_EXTRACTABLE, &mut yes)];
    let mut app = [
        attr(CKA_LABEL, &mut small),
        CK_ATTRIBUTE {
            type_: CKA_WRAP_TEMPLATE,
            pValue: inner.as_mut_ptr() as *mut _,
            ulValueLen: size as CK_ULONG,
        },
        attr(CKA_VALUE, &mut plain),
    ];
    let one = |t: CK_ATTRIBUTE_TYPE| wire_attr(t, Some(Value::Bytes(vec![1])), None, 1);
    let answer = template(vec![
        wire_attr(CKA_LABEL, Some(Value::Bytes(vec![9; 8])), None, 8),
        wire_attr(
            CKA_WRAP_TEMPLATE,
            Some(Value::Nested(template(vec![one(CKA_EXTRACTABLE), one(CKA_SENSITIVE)]))),
            None,
            2 * size as u64,
        ),
        wire_attr(
            CKA_VALUE,
            Some(Value::Nested(template(vec![one(CKA_TOKEN)]))),
            None,
            size as u64,
        ),
    ]);
    // SAFETY: `app` is three live attributes: `small` (2 bytes), `inner` (one
    // attribute whose value is `yes`, 1 byte) and `plain` (64 bytes).
    unsafe { write_back(app.as_mut_ptr(), 3, &answer) };
    assert_eq!(small, [0, 0], "an 8-byte value is not written into 2 bytes");
    assert_eq!(app[0].ulValueLen, 8, "the length still goes back");
    assert_eq!(
        (inner[0].type_, yes),
        (CKA_EXTRACTABLE, [1]),
        "the one attribute the app's array holds is written"
    );
    assert_eq!(plain, [0; 64], "no nested template into a plain buffer");
}

/// Review finding: CKA_WRAP_TEMPLATE carried as bytes holding a forged
/// CK_ATTRIBUTE{pValue = 0x414141414140} made SoftHSM copy from that address.
#[test]
fn template_attributes_never_travel_as_bytes() {
    let mut forged = (CKA_LABEL as u64).to_ne_bytes().to_vec();
    forged.extend_from_slice(&0x4141_4141_4140u64.to_ne_bytes());
    forged.extend_from_slice(&64u64.to_ne_bytes());
    for t in [
        CKA_WRAP_TEMPLATE,
        CKA_UNWRAP_TEMPLATE,
        CKA_DERIVE_TEMPLATE,
        CKF_ARRAY_ATTRIBUTE | CKA_VENDOR_DEFINED,
    ] {
        let bytes = template(vec![wire_attr(
            t,
            Some(Value::Bytes(forged.clone())),
            None,
            forged.len() as u64,
        )]);
        assert_eq!(
            OwnedTemplate::values(Some(&bytes)).err(),
            Some(CKR_ATTRIBUTE_VALUE_INVALID),
            "{t:#x} as bytes"
        );
        let buffer = template(vec![wire_attr(t, None, Some(4 * size_of::<CK_ATTRIBUTE>() as u64), 0)]);
        assert_eq!(
            OwnedTemplate::buffers(Some(&buffer)).err(),
            Some(CKR_ARGUMENTS_BAD),
            "{t:#x} as a plain buffer"
        );
    }
    // A plain list of mechanisms stays bytes.
    let mechs = template(vec![wire_attr(
        CKA_ALLOWED_MECHANISMS,
        Some(Value::Bytes(vec![0; 16])),
        None,
        16,
    )]);
    assert!(OwnedTemplate::values(Some(&mechs)).is_ok());
}
