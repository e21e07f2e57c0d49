//! Mechanism parameters: for every mechanism of the backend's list, every
//! wire variant the layout table does not prescribe is refused with
//! CKR_MECHANISM_PARAM_INVALID before the module sees it; random bytes as a
//! parameter never crash the sidecar.

use cryptoki_sys::*;
use hsmbridge_proto::wire::{self, mechanism::Parameter, request::Call, response::Result as Body};

use super::support::{Raw, Rng, Target};

/// One of each wire variant, with plausible contents.
fn every_variant(rng: &mut Rng) -> Vec<Parameter> {
    vec![
        Parameter::Bytes(rng.bytes(24)),
        Parameter::Ulong(16),
        Parameter::RsaPkcsPss(wire::RsaPkcsPss {
            hash_alg: CKM_SHA256 as u64,
            mgf: CKG_MGF1_SHA256 as u64,
            salt_length: 32,
        }),
        Parameter::RsaPkcsOaep(wire::RsaPkcsOaep {
            hash_alg: CKM_SHA256 as u64,
            mgf: CKG_MGF1_SHA256 as u64,
            source: CKZ_DATA_SPECIFIED as u64,
            source_data: None,
        }),
        Parameter::AesCtr(wire::AesCtr {
            counter_bits: 64,
            counter_block: vec![0; 16],
        }),
        Parameter::Gcm(wire::Gcm {
            iv: Some(vec![0; 12]),
            iv_bits: 96,
            aad: None,
            tag_bits: 128,
        }),
        Parameter::Ccm(wire::Ccm {
            data_length: 16,
            nonce: Some(vec![0; 12]),
            aad: None,
            mac_length: 16,
        }),
        Parameter::KeyDerivationString(rng.bytes(16)),
        Parameter::CbcEncryptData(wire::CbcEncryptData {
            iv: vec![0; 16],
            data: Some(vec![0; 16]),
        }),
        Parameter::CbcEncryptData(wire::CbcEncryptData {
            iv: vec![0; 8],
            data: Some(vec![0; 16]),
        }),
        Parameter::Ecdh1Derive(wire::Ecdh1Derive {
            kdf: CKD_NULL as u64,
            shared_data: None,
            public_data: Some(vec![4; 65]),
        }),
        Parameter::Eddsa(wire::Eddsa {
            prehash: false,
            context_data: None,
        }),
    ]
}

fn mechanisms(raw: &mut Raw) -> Vec<u64> {
    let slot = slot(raw);
    let r = raw.call(Call::GetMechanismList(wire::GetMechanismList {
        slot,
        capacity: Some(512),
        length_null: false,
    }));
    match r.ok().and_then(|r| r.result) {
        Some(Body::Ulongs(u)) => u.values,
        other => panic!("C_GetMechanismList: {other:?}"),
    }
}

fn slot(raw: &mut Raw) -> u64 {
    let r = raw.call(Call::GetSlotList(wire::GetSlotList {
        token_present: true,
        capacity: Some(8),
        length_null: false,
    }));
    match r.ok().and_then(|r| r.result) {
        Some(Body::Ulongs(u)) => u.values[0],
        other => panic!("C_GetSlotList: {other:?}"),
    }
}

fn init(session: u64, key: u64, mechanism: u64, p: Parameter) -> wire::OperationInit {
    wire::OperationInit {
        session,
        mechanism: Some(wire::Mechanism {
            r#type: mechanism,
            parameter: Some(p),
        }),
        key,
    }
}

/// Audit finding 1: raw bytes for CKM_AES_ECB_ENCRYPT_DATA were read by the
/// module as CK_KEY_DERIVATION_STRING_DATA{pData, ulLen} with a pointer the
/// peer chose (a memory read of the process that holds the PIN); a raw
/// AES-GCM parameter made it dereference a chosen pIv.
#[test]
fn raw_bytes_for_a_structured_parameter_are_refused() {
    let mut t = Target::start();
    let mut raw = t.client();
    let s = raw.session();
    let key = raw.aes_key(s);
    // A CK_KEY_DERIVATION_STRING_DATA pointing at address 0x1000, 4096 bytes.
    let mut forged = 0x1000u64.to_ne_bytes().to_vec();
    forged.extend_from_slice(&4096u64.to_ne_bytes());
    let derive = raw.rv(Call::DeriveKey(wire::DeriveKey {
        session: s,
        mechanism: Some(wire::Mechanism {
            r#type: CKM_AES_ECB_ENCRYPT_DATA as u64,
            parameter: Some(Parameter::Bytes(forged.clone())),
        }),
        base_key: key,
        template: None,
    }));
    assert_eq!(
        derive, CKR_MECHANISM_PARAM_INVALID,
        "C_DeriveKey(CKM_AES_ECB_ENCRYPT_DATA, raw bytes)"
    );
    let mut gcm = forged;
    gcm.resize(48, 0);
    let rv = raw.rv(Call::EncryptInit(init(
        s,
        key,
        CKM_AES_GCM as u64,
        Parameter::Bytes(gcm),
    )));
    assert_eq!(rv, CKR_MECHANISM_PARAM_INVALID, "C_EncryptInit(CKM_AES_GCM, raw bytes)");
    t.assert_still_serves("raw bytes as structured parameters");
}

#[test]
fn every_mechanism_refuses_every_variant_it_does_not_prescribe() {
    let mut t = Target::start();
    let mut raw = t.client();
    let s = raw.session();
    let key = raw.aes_key(s);
    let mut rng = Rng::new(7);
    let mut refused = 0;
    let list = mechanisms(&mut raw);
    assert!(list.len() > 20, "SoftHSM lists its mechanisms: {list:?}");
    for m in list {
        for p in every_variant(&mut rng) {
            let what = format!("mechanism {m:#x} with {p:?}");
            let prescribed = hsmbridge_proto::mechanism::prescribes(m, &p);
            let rv = raw.rv(Call::EncryptInit(init(s, key, m, p.clone())));
            assert_ne!(rv, CKR_DEVICE_REMOVED, "{what}: the connection broke");
            if !prescribed {
                assert_eq!(rv, CKR_MECHANISM_PARAM_INVALID, "C_EncryptInit, {what}");
                let rv = raw.rv(Call::DeriveKey(wire::DeriveKey {
                    session: s,
                    mechanism: Some(wire::Mechanism {
                        r#type: m,
                        parameter: Some(p),
                    }),
                    base_key: key,
                    template: None,
                }));
                assert_eq!(rv, CKR_MECHANISM_PARAM_INVALID, "C_DeriveKey, {what}");
                refused += 2;
            } else if rv == CKR_OK {
                // Leave no operation active for the next attempt.
                let _ = raw.rv(Call::EncryptFinal(wire::SessionOutput {
                    session: s,
                    capacity: None,
                    length_null: false,
                }));
            }
        }
    }
    println!("hostile parameters: {refused} calls with a variant not prescribed, all refused");
    // Random bytes for every mechanism: refused or judged by the module, never a crash.
    for m in mechanisms(&mut raw) {
        for len in [0usize, 1, 8, 24, 40, 64, 200] {
            let rv = raw.rv(Call::SignInit(init(s, key, m, Parameter::Bytes(rng.bytes(len)))));
            assert_ne!(
                rv, CKR_DEVICE_REMOVED,
                "mechanism {m:#x} with {len} random bytes broke the connection"
            );
            let _ = raw.rv(Call::SignFinal(wire::SessionOutput {
                session: s,
                capacity: None,
                length_null: false,
            }));
        }
    }
    assert!(t.alive(), "{}", t.log());
    t.assert_still_serves("every parameter variant of every mechanism");
}

#[test]
fn a_vendor_mechanism_with_a_parameter_needs_a_declaration() {
    let vendor = CKM_VENDOR_DEFINED as u64 | 0x42;
    let t = Target::start();
    let mut raw = t.client();
    let s = raw.session();
    let key = raw.aes_key(s);
    let rv = raw.rv(Call::EncryptInit(init(s, key, vendor, Parameter::Bytes(vec![1; 16]))));
    assert_eq!(
        rv, CKR_MECHANISM_PARAM_INVALID,
        "undeclared vendor mechanism with a parameter"
    );
    drop(raw);
    drop(t);
    let hex = format!("{vendor:#x}");
    let mut t = Target::start_with(super::support::Options {
        args: &["--raw-param-mechanism", &hex],
        ..Default::default()
    });
    let mut raw = t.client();
    let s = raw.session();
    let key = raw.aes_key(s);
    // Declared: it reaches the module, which does not know it.
    let rv = raw.rv(Call::EncryptInit(init(s, key, vendor, Parameter::Bytes(vec![1; 16]))));
    assert_eq!(
        rv, CKR_MECHANISM_INVALID,
        "declared vendor mechanism reaches the module"
    );
    t.assert_still_serves("a declared vendor mechanism");
}
