use super::*;

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
