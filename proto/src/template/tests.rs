use super::*;
use std::mem::size_of;
use std::ptr;
use crate::wire::{self, attribute::Value};

fn attr(t: CK_ATTRIBUTE_TYPE, v: &mut [u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE { type_: t, pValue: v.as_mut_ptr() as *mut _, ulValueLen: v.len() as CK_ULONG }
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
    let wire = unsafe { values_from_c(outer.as_ptr(), 1) }.unwrap();
    let mut owned = OwnedTemplate::values(wire.as_ref()).unwrap();
    let got = unsafe { &*owned.as_mut_ptr() };
    assert_eq!(got.type_, CKA_WRAP_TEMPLATE);
    let nested = unsafe { &*(got.pValue as *const CK_ATTRIBUTE) };
    assert_eq!(nested.type_, CKA_EXTRACTABLE);
    assert_eq!(unsafe { *(nested.pValue as *const u8) }, 1);
}

#[test]
fn get_attribute_answer_is_written_back_only_where_it_fits() {
    let mut small = [0u8; 2];
    let mut app = [
        attr(CKA_LABEL, &mut small),
        CK_ATTRIBUTE { type_: CKA_ID, pValue: ptr::null_mut(), ulValueLen: 0 },
    ];
    let request = unsafe { request_from_c(app.as_ptr(), 2) }.unwrap().unwrap();
    assert_eq!(request.attributes[0].capacity, Some(2));
    assert_eq!(request.attributes[1].capacity, None);
    let answer = wire::Template {
        attributes: vec![
            wire::Attribute { r#type: CKA_LABEL as u64, value: None, capacity: None, length: u64::MAX },
            wire::Attribute { r#type: CKA_ID as u64, value: None, capacity: None, length: 5 },
        ],
    };
    unsafe { write_back(app.as_mut_ptr(), 2, &answer) };
    assert_eq!(app[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_eq!(app[1].ulValueLen, 5);
    assert_eq!(small, [0, 0]);
}

#[test]
fn null_template_stays_null_and_null_with_count_is_arguments_bad() {
    assert!(unsafe { values_from_c(ptr::null(), 0) }.unwrap().is_none());
    assert_eq!(unsafe { values_from_c(ptr::null(), 2) }.err(), Some(CKR_ARGUMENTS_BAD));
    let mut owned = OwnedTemplate::values(None).unwrap();
    assert!(owned.as_mut_ptr().is_null());
}

fn wire_attr(t: CK_ATTRIBUTE_TYPE, value: Option<Value>, capacity: Option<u64>, length: u64) -> wire::Attribute {
    wire::Attribute { r#type: t as u64, value, capacity, length }
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
    assert_eq!(OwnedTemplate::values(Some(&on_value)).err(), Some(CKR_ATTRIBUTE_VALUE_INVALID));
    assert_eq!(OwnedTemplate::buffers(Some(&on_value)).err(), Some(CKR_ATTRIBUTE_VALUE_INVALID));
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
    let app = [CK_ATTRIBUTE { type_: CKA_CLASS, pValue: ptr::null_mut(), ulValueLen: 8 }];
    assert_eq!(unsafe { values_from_c(app.as_ptr(), 1) }.err(), Some(CKR_ATTRIBUTE_VALUE_INVALID));
    let empty = template(vec![wire_attr(CKA_LABEL, None, None, 0)]);
    let mut owned = OwnedTemplate::values(Some(&empty)).expect("NULL with length 0");
    let a = unsafe { &*owned.as_mut_ptr() };
    assert!(a.pValue.is_null() && a.ulValueLen == 0);
}

/// Audit finding 3: every attribute of a C_GetAttributeValue got a buffer of
/// up to 16 MiB, echoed back.
#[test]
fn output_buffers_and_attribute_counts_are_bounded() {
    let big = |n: usize, cap: u64| template((0..n).map(|i| wire_attr(i as CK_ATTRIBUTE_TYPE, None, Some(cap), 0)).collect());
    assert_eq!(OwnedTemplate::buffers(Some(&big(8, 16 << 20))).err(), Some(CKR_HOST_MEMORY));
    assert_eq!(OwnedTemplate::buffers(Some(&big(2, crate::limits::MAX_DATA as u64))).err(), Some(CKR_HOST_MEMORY));
    assert!(OwnedTemplate::buffers(Some(&big(16, 1024))).is_ok());
    let many = template((0..=crate::limits::MAX_ATTRIBUTES).map(|_| wire_attr(CKA_LABEL, None, None, 0)).collect());
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
