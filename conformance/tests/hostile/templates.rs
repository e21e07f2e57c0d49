//! Attribute templates: nested templates on plain attributes, NULL values
//! with lengths, huge counts and capacities. Each is refused with a CK_RV
//! (or bounded) before the module sees it, and no answer outgrows a frame.

use std::time::Instant;

use cryptoki_sys::*;
use hsmbridge_conformance::module::Module;
use hsmbridge_proto::limits::{MAX_ATTRIBUTES, MAX_FRAME};
use hsmbridge_proto::wire::{self, attribute::Value, request::Call};
use prost::Message;

use super::support::{template, Target};

fn attr(t: CK_ATTRIBUTE_TYPE, value: Option<Value>, capacity: Option<u64>, length: u64) -> wire::Attribute {
    wire::Attribute {
        r#type: t as u64,
        value,
        capacity,
        length,
    }
}

fn secret_key_with(extra: wire::Attribute) -> wire::Template {
    let mut t = template(&[
        (CKA_CLASS, &(CKO_SECRET_KEY as u64).to_ne_bytes()),
        (CKA_KEY_TYPE, &(CKK_GENERIC_SECRET as u64).to_ne_bytes()),
    ]);
    t.attributes.push(extra);
    t
}

/// Audit finding 1: a nested template on CKA_VALUE stored a raw
/// CK_ATTRIBUTE (a sidecar heap address) in an object the app reads back.
#[test]
fn a_nested_template_on_a_plain_attribute_is_refused() {
    let mut t = Target::start();
    let mut raw = t.client();
    let s = raw.session();
    let inner = template(&[(CKA_TOKEN, &[0])]);
    let create = |extra| {
        Call::CreateObject(wire::SessionTemplate {
            session: s,
            template: Some(secret_key_with(extra)),
        })
    };
    let rv = raw.rv(create(attr(CKA_VALUE, Some(Value::Nested(inner.clone())), None, 0)));
    assert_eq!(
        rv, CKR_ATTRIBUTE_VALUE_INVALID,
        "C_CreateObject with a nested template as CKA_VALUE"
    );
    let rv = raw.rv(create(attr(CKA_LABEL, Some(Value::Nested(inner)), None, 0)));
    assert_eq!(
        rv, CKR_ATTRIBUTE_VALUE_INVALID,
        "C_CreateObject with a nested template as CKA_LABEL"
    );
    t.assert_still_serves("nested templates on plain attributes");
}

/// Audit finding 2: {CKA_CLASS, NULL, 8} reached the module as is and
/// SoftHSM read 8 bytes at NULL: the sidecar died for every app of the pod.
#[test]
fn a_null_value_with_a_length_is_refused() {
    let mut t = Target::start();
    let mut raw = t.client();
    let s = raw.session();
    for (what, call) in [
        (
            "C_CreateObject",
            Call::CreateObject(wire::SessionTemplate {
                session: s,
                template: Some(wire::Template {
                    attributes: vec![attr(CKA_CLASS, None, None, 8)],
                }),
            }),
        ),
        (
            "C_FindObjectsInit",
            Call::FindObjectsInit(wire::SessionTemplate {
                session: s,
                template: Some(wire::Template {
                    attributes: vec![attr(CKA_LABEL, None, None, 64)],
                }),
            }),
        ),
        (
            "C_GenerateKey",
            Call::GenerateKey(wire::GenerateKey {
                session: s,
                mechanism: Some(wire::Mechanism {
                    r#type: CKM_AES_KEY_GEN as u64,
                    parameter: None,
                }),
                template: Some(wire::Template {
                    attributes: vec![attr(CKA_VALUE_LEN, None, None, 8)],
                }),
            }),
        ),
    ] {
        assert_eq!(
            raw.rv(call),
            CKR_ATTRIBUTE_VALUE_INVALID,
            "{what} with a NULL value of length 8"
        );
        assert!(
            t.alive(),
            "{what} with a NULL value of length 8 killed the sidecar:\n{}",
            t.log()
        );
    }
    t.assert_still_serves("NULL values with lengths");
}

/// The same attribute through the shim, as an application would pass it.
#[test]
fn a_null_value_with_a_length_through_the_shim() {
    let mut t = Target::start();
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "templates::shim_child_creates_a_null_attribute",
            "--ignored",
            "--nocapture",
        ])
        .env("HSMBRIDGE_SOCKET", &t.socket)
        .output()
        .expect("child");
    assert!(out.status.success(), "child:\n{}", super::support::text(&out));
    t.assert_still_serves("C_CreateObject({CKA_CLASS, NULL, 8}) through the shim");
}

/// Run by [`a_null_value_with_a_length_through_the_shim`] in a child process
/// (the shim is process-global).
#[test]
#[ignore]
fn shim_child_creates_a_null_attribute() {
    let shim = Module::load(hsmbridge_conformance::paths::shim_lib()).expect("load the shim");
    let f = shim.fl();
    let init = f.C_Initialize.expect("C_Initialize");
    let open = f.C_OpenSession.expect("C_OpenSession");
    let create = f.C_CreateObject.expect("C_CreateObject");
    let list = f.C_GetSlotList.expect("C_GetSlotList");
    let mut slots = [0 as CK_SLOT_ID; 4];
    let mut n = slots.len() as CK_ULONG;
    let mut session: CK_SESSION_HANDLE = 0;
    let mut attrs = [CK_ATTRIBUTE {
        type_: CKA_CLASS,
        pValue: std::ptr::null_mut(),
        ulValueLen: 8,
    }];
    let mut object: CK_OBJECT_HANDLE = 0;
    // SAFETY: function pointers from the shim's function list (alive as long as `shim`); every
    // pointer is to a local of the length given, except the deliberate NULL value under test,
    // which the shim must refuse rather than read.
    let rv = unsafe {
        assert_eq!(init(std::ptr::null_mut()), CKR_OK);
        assert_eq!(list(CK_TRUE, slots.as_mut_ptr(), &mut n), CKR_OK);
        assert_eq!(
            open(
                slots[0],
                CKF_SERIAL_SESSION | CKF_RW_SESSION,
                std::ptr::null_mut(),
                None,
                &mut session
            ),
            CKR_OK
        );
        create(session, attrs.as_mut_ptr(), 1, &mut object)
    };
    assert_eq!(rv, CKR_ATTRIBUTE_VALUE_INVALID);
}

/// Audit finding 3: one C_GetAttributeValue on a bad handle answered 128 MiB
/// (every attribute got a buffer of up to 16 MiB, echoed back).
#[test]
fn huge_capacities_get_small_answers() {
    let mut t = Target::start();
    let mut raw = t.client();
    let s = raw.session();
    let key = raw.aes_key(s);
    let huge = |n: usize| wire::Template {
        attributes: (0..n)
            .map(|i| attr(CKA_LABEL + i as CK_ULONG, None, Some(16 << 20), 0))
            .collect(),
    };
    for (object, what) in [(0xdead_u64, "a bad handle"), (key, "a real key")] {
        let start = Instant::now();
        let r = raw
            .call(Call::GetAttributeValue(wire::ObjectTemplate {
                session: s,
                object,
                template: Some(huge(8)),
            }))
            .expect("answer");
        let size = r.encoded_len();
        println!(
            "hostile templates: C_GetAttributeValue on {what}, 8 x 16 MiB buffers: rv {:#x}, {size} bytes in {:?}",
            r.rv,
            start.elapsed()
        );
        assert!(size < 4096, "answer of {size} bytes for {what}");
    }
    let r = raw
        .call(Call::GetAttributeValue(wire::ObjectTemplate {
            session: s,
            object: 0xdead,
            template: Some(huge(2)),
        }))
        .expect("answer");
    assert_eq!(r.rv, CKR_OBJECT_HANDLE_INVALID as u64);
    assert!(r.result.is_none(), "nothing written, nothing answered: {:?}", r.result);
    // Lists, random bytes and outputs the app claims to be huge.
    let r = raw
        .call(Call::GenerateRandom(wire::GenerateRandom {
            session: s,
            length: 1 << 40,
        }))
        .expect("answer");
    assert_eq!(r.rv, CKR_HOST_MEMORY as u64, "C_GenerateRandom of 1 TiB");
    let r = raw
        .call(Call::GetSlotList(wire::GetSlotList {
            token_present: false,
            capacity: Some(1 << 40),
            length_null: false,
        }))
        .expect("answer");
    assert!(r.encoded_len() < 4096, "C_GetSlotList with a capacity of 2^40");
    let r = raw
        .call(Call::FindObjects(wire::FindObjects {
            session: s,
            max_count: u64::MAX,
        }))
        .expect("answer");
    assert!(r.encoded_len() < MAX_FRAME);
    t.assert_still_serves("huge capacities and counts");
}

/// Audit finding 3: an 8 MiB frame of empty attributes cost ~600 MiB to decode.
#[test]
fn a_frame_of_empty_attributes_is_refused_before_decoding() {
    let mut t = Target::start();
    let mut raw = t.client();
    let s = raw.session();
    // As many empty attributes as fit in one frame (two bytes each).
    let n = (MAX_FRAME - 64) / 2;
    let empty = wire::Template {
        attributes: vec![wire::Attribute::default(); n],
    };
    let body = wire::Request {
        call: Some(Call::CreateObject(wire::SessionTemplate {
            session: s,
            template: Some(empty),
        })),
        caller_cpu: 0,
        caller_polls: false,
    }
    .encode_to_vec();
    assert!(body.len() <= MAX_FRAME, "{} bytes", body.len());
    for _ in 0..8 {
        raw.send_frame(&body).expect("send");
        let r = raw.read_response().expect("an answer");
        assert_eq!(r.rv, CKR_HOST_MEMORY as u64, "{n} attributes (limit {MAX_ATTRIBUTES})");
    }
    println!(
        "hostile templates: {n} empty attributes refused, sidecar RSS {} KiB",
        t.rss_kib()
    );
    t.assert_still_serves("frames of empty attributes");
}

/// Review finding: CKA_WRAP_TEMPLATE carried as bytes holding a forged
/// CK_ATTRIBUTE made SoftHSM copy from the address the peer wrote (it
/// segfaulted; with a readable address the bytes end up in an object the
/// peer can read back).
#[test]
fn a_template_attribute_as_bytes_is_refused() {
    let mut t = Target::start();
    let mut raw = t.client();
    let s = raw.session();
    let mut forged = (CKA_LABEL as u64).to_ne_bytes().to_vec();
    forged.extend_from_slice(&0x4141_4141_4140u64.to_ne_bytes());
    forged.extend_from_slice(&64u64.to_ne_bytes());
    for ty in [CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE, CKA_DERIVE_TEMPLATE] {
        let extra = attr(ty, Some(Value::Bytes(forged.clone())), None, forged.len() as u64);
        let rv = raw.rv(Call::CreateObject(wire::SessionTemplate {
            session: s,
            template: Some(secret_key_with(extra)),
        }));
        assert_eq!(rv, CKR_ATTRIBUTE_VALUE_INVALID, "C_CreateObject with {ty:#x} as bytes");
        assert!(t.alive(), "{ty:#x} as bytes killed the sidecar:\n{}", t.log());
    }
    t.assert_still_serves("template attributes as bytes");
}
