use super::*;
use crate::wire::{self, mechanism::Parameter};
use cryptoki_sys::*;
use std::mem::size_of;
use std::ptr;

fn round_trip(m: &CK_MECHANISM) -> OwnedMechanism {
    // SAFETY: every caller passes a mechanism of its own stack whose parameter
    // (and the buffers that points to) is live and as PKCS#11 describes.
    let wire = unsafe { from_c(m) }.expect("encodes");
    to_c(&wire, &RawParamMechanisms::default()).expect("decodes")
}

#[test]
fn gcm_parameters_are_deep_copied() {
    let mut iv = [7u8; 12];
    let mut aad = *b"header";
    let mut p = CK_GCM_PARAMS {
        pIv: iv.as_mut_ptr(),
        ulIvLen: 12,
        ulIvBits: 96,
        pAAD: aad.as_mut_ptr(),
        ulAADLen: 6,
        ulTagBits: 128,
    };
    let m = CK_MECHANISM {
        mechanism: CKM_AES_GCM,
        pParameter: &mut p as *mut _ as *mut _,
        ulParameterLen: size_of::<CK_GCM_PARAMS>() as CK_ULONG,
    };
    let mut owned = round_trip(&m);
    iv.fill(0); // the copy must not alias the app's memory
                // SAFETY: `as_ptr` points to the CK_MECHANISM `owned` holds, live while it is.
    let raw = unsafe { &*owned.as_ptr() };
    // SAFETY: `to_c` built a CK_GCM_PARAMS for CKM_AES_GCM, boxed in `owned`.
    let q = unsafe { &*(raw.pParameter as *const CK_GCM_PARAMS) };
    assert_eq!(raw.ulParameterLen as usize, size_of::<CK_GCM_PARAMS>());
    // SAFETY: `pIv` points to the 12-byte IV buffer `owned` keeps.
    assert_eq!(unsafe { std::slice::from_raw_parts(q.pIv, 12) }, &[7u8; 12]);
    // SAFETY: `pAAD` points to the 6-byte AAD buffer `owned` keeps.
    assert_eq!(unsafe { std::slice::from_raw_parts(q.pAAD, 6) }, b"header");
    assert_eq!((q.ulIvBits, q.ulTagBits), (96, 128));
}

#[test]
fn oaep_without_source_data_keeps_null() {
    let mut p = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: ptr::null_mut(),
        ulSourceDataLen: 0,
    };
    let m = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_OAEP,
        pParameter: &mut p as *mut _ as *mut _,
        ulParameterLen: size_of::<CK_RSA_PKCS_OAEP_PARAMS>() as CK_ULONG,
    };
    let mut owned = round_trip(&m);
    // SAFETY: `owned` holds the CK_MECHANISM and the CK_RSA_PKCS_OAEP_PARAMS `to_c`
    // built for CKM_RSA_PKCS_OAEP, live while it is.
    let q = unsafe { &*((*owned.as_ptr()).pParameter as *const CK_RSA_PKCS_OAEP_PARAMS) };
    assert!(q.pSourceData.is_null());
    assert_eq!((q.hashAlg, q.mgf), (CKM_SHA256, CKG_MGF1_SHA256));
}

#[test]
fn unknown_layout_with_parameter_is_param_invalid_unless_declared_raw() {
    let mut junk = [0u8; 24];
    let m = CK_MECHANISM {
        mechanism: CKM_VENDOR_DEFINED | 7,
        pParameter: junk.as_mut_ptr() as *mut _,
        ulParameterLen: 24,
    };
    // SAFETY: `m`'s parameter is `junk`, 24 live bytes, as `ulParameterLen` says.
    let wire = unsafe { from_c(&m) }.expect("the shim carries it as bytes");
    assert_eq!(
        to_c(&wire, &RawParamMechanisms::default()).err(),
        Some(CKR_MECHANISM_PARAM_INVALID)
    );
    let declared = RawParamMechanisms::new([CKM_VENDOR_DEFINED as u64 | 7]).expect("vendor mechanism");
    let mut owned = to_c(&wire, &declared).expect("declared pointer-free");
    // SAFETY: `as_ptr` points to the CK_MECHANISM `owned` holds.
    assert_eq!(unsafe { (*owned.as_ptr()).ulParameterLen }, 24);
    // Without a parameter an unknown mechanism always passes.
    let bare = wire::Mechanism {
        r#type: CKM_VENDOR_DEFINED as u64 | 8,
        parameter: None,
    };
    assert!(to_c(&bare, &RawParamMechanisms::default()).is_ok());
}

#[test]
fn only_vendor_mechanisms_without_a_layout_can_be_declared_raw() {
    assert_eq!(
        RawParamMechanisms::new([CKM_AES_GCM as u64]).err(),
        Some(RawParamError::NotVendorDefined(CKM_AES_GCM as u64))
    );
    assert!(RawParamMechanisms::new([CKM_VENDOR_DEFINED as u64 + 1]).is_ok());
}

/// Audit finding 1: a raw byte string for a mechanism whose parameter is a
/// structure with pointers would be read by the module as that structure.
#[test]
fn a_variant_the_table_does_not_prescribe_is_refused() {
    let raw = RawParamMechanisms::default();
    let bytes = |m: CK_MECHANISM_TYPE| wire::Mechanism {
        r#type: m as u64,
        parameter: Some(Parameter::Bytes(vec![0x41; 16])),
    };
    for m in [
        CKM_AES_ECB_ENCRYPT_DATA,
        CKM_AES_GCM,
        CKM_AES_CCM,
        CKM_RSA_PKCS_OAEP,
        CKM_ECDH1_DERIVE,
        CKM_EDDSA,
        CKM_SHA256_HMAC_GENERAL,
    ] {
        assert_eq!(
            to_c(&bytes(m), &raw).err(),
            Some(CKR_MECHANISM_PARAM_INVALID),
            "raw bytes for {m:#x}"
        );
    }
    let gcm_for_cbc = wire::Mechanism {
        r#type: CKM_AES_CBC as u64,
        parameter: Some(Parameter::Gcm(wire::Gcm {
            iv: Some(vec![0; 12]),
            iv_bits: 96,
            aad: None,
            tag_bits: 128,
        })),
    };
    assert_eq!(to_c(&gcm_for_cbc, &raw).err(), Some(CKR_MECHANISM_PARAM_INVALID));
    let des_iv_for_aes = wire::Mechanism {
        r#type: CKM_AES_CBC_ENCRYPT_DATA as u64,
        parameter: Some(Parameter::CbcEncryptData(wire::CbcEncryptData {
            iv: vec![0; 8],
            data: None,
        })),
    };
    assert_eq!(to_c(&des_iv_for_aes, &raw).err(), Some(CKR_MECHANISM_PARAM_INVALID));
}

#[test]
fn wrong_struct_size_is_param_invalid() {
    let mut p = CK_RSA_PKCS_PSS_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        sLen: 32,
    };
    let m = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_PSS,
        pParameter: &mut p as *mut _ as *mut _,
        ulParameterLen: 8,
    };
    // SAFETY: `m`'s parameter is `p`, live; `from_c` reads it only at the size given
    // (8, too short for it: refused before any read).
    assert_eq!(unsafe { from_c(&m) }.err(), Some(CKR_MECHANISM_PARAM_INVALID));
}

#[test]
fn null_parameter_stays_null_and_null_mechanism_is_arguments_bad() {
    let m = CK_MECHANISM {
        mechanism: CKM_SHA256,
        pParameter: ptr::null_mut(),
        ulParameterLen: 0,
    };
    let mut owned = round_trip(&m);
    // SAFETY: `as_ptr` points to the CK_MECHANISM `owned` holds.
    assert!(unsafe { (*owned.as_ptr()).pParameter }.is_null());
    // SAFETY: NULL is a mechanism `from_c` accepts (and refuses).
    assert_eq!(unsafe { from_c(ptr::null()) }.err(), Some(CKR_ARGUMENTS_BAD));
}
