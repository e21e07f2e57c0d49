use super::*;

fn round_trip(m: &CK_MECHANISM) -> OwnedMechanism {
    let wire = unsafe { from_c(m) }.expect("encodes");
    to_c(&wire).expect("decodes")
}

#[test]
fn gcm_parameters_are_deep_copied() {
    let mut iv = [7u8; 12];
    let mut aad = *b"header";
    let mut p = CK_GCM_PARAMS { pIv: iv.as_mut_ptr(), ulIvLen: 12, ulIvBits: 96, pAAD: aad.as_mut_ptr(), ulAADLen: 6, ulTagBits: 128 };
    let m = CK_MECHANISM { mechanism: CKM_AES_GCM, pParameter: &mut p as *mut _ as *mut _, ulParameterLen: size_of::<CK_GCM_PARAMS>() as CK_ULONG };
    let mut owned = round_trip(&m);
    iv.fill(0); // the copy must not alias the app's memory
    let raw = unsafe { &*owned.as_ptr() };
    let q = unsafe { &*(raw.pParameter as *const CK_GCM_PARAMS) };
    assert_eq!(raw.ulParameterLen as usize, size_of::<CK_GCM_PARAMS>());
    assert_eq!(unsafe { std::slice::from_raw_parts(q.pIv, 12) }, &[7u8; 12]);
    assert_eq!(unsafe { std::slice::from_raw_parts(q.pAAD, 6) }, b"header");
    assert_eq!((q.ulIvBits, q.ulTagBits), (96, 128));
}

#[test]
fn oaep_without_source_data_keeps_null() {
    let mut p = CK_RSA_PKCS_OAEP_PARAMS { hashAlg: CKM_SHA256, mgf: CKG_MGF1_SHA256, source: CKZ_DATA_SPECIFIED, pSourceData: ptr::null_mut(), ulSourceDataLen: 0 };
    let m = CK_MECHANISM { mechanism: CKM_RSA_PKCS_OAEP, pParameter: &mut p as *mut _ as *mut _, ulParameterLen: size_of::<CK_RSA_PKCS_OAEP_PARAMS>() as CK_ULONG };
    let mut owned = round_trip(&m);
    let q = unsafe { &*((*owned.as_ptr()).pParameter as *const CK_RSA_PKCS_OAEP_PARAMS) };
    assert!(q.pSourceData.is_null());
    assert_eq!((q.hashAlg, q.mgf), (CKM_SHA256, CKG_MGF1_SHA256));
}

#[test]
fn unknown_layout_with_parameter_is_param_invalid() {
    let mut junk = [0u8; 24];
    let m = CK_MECHANISM { mechanism: CKM_VENDOR_DEFINED | 7, pParameter: junk.as_mut_ptr() as *mut _, ulParameterLen: 24 };
    assert_eq!(unsafe { from_c(&m) }.err(), Some(CKR_MECHANISM_PARAM_INVALID));
}

#[test]
fn wrong_struct_size_is_param_invalid() {
    let mut p = CK_RSA_PKCS_PSS_PARAMS { hashAlg: CKM_SHA256, mgf: CKG_MGF1_SHA256, sLen: 32 };
    let m = CK_MECHANISM { mechanism: CKM_RSA_PKCS_PSS, pParameter: &mut p as *mut _ as *mut _, ulParameterLen: 8 };
    assert_eq!(unsafe { from_c(&m) }.err(), Some(CKR_MECHANISM_PARAM_INVALID));
}

#[test]
fn null_parameter_stays_null_and_null_mechanism_is_arguments_bad() {
    let m = CK_MECHANISM { mechanism: CKM_SHA256, pParameter: ptr::null_mut(), ulParameterLen: 0 };
    let mut owned = round_trip(&m);
    assert!(unsafe { (*owned.as_ptr()).pParameter }.is_null());
    assert_eq!(unsafe { from_c(ptr::null()) }.err(), Some(CKR_ARGUMENTS_BAD));
}
