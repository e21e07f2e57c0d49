use prost::Message;

use super::*;
use crate::limits::{MAX_ATTRIBUTES, MAX_NESTING};
use crate::wire::{self, attribute::Value, request::Call, Request};

fn attr() -> wire::Attribute {
    wire::Attribute {
        r#type: 3,
        value: None,
        capacity: None,
        length: 0,
    }
}

fn create(attributes: Vec<wire::Attribute>) -> Vec<u8> {
    let t = wire::Template { attributes };
    Request {
        call: Some(Call::CreateObject(wire::SessionTemplate {
            session: 1,
            template: Some(t),
        })),
        caller_cpu: 0,
        caller_polls: false,
    }
    .encode_to_vec()
}

/// Audit finding 3: an 8 MiB frame of empty attributes cost ~600 MiB to decode.
#[test]
fn too_many_attributes_are_refused_before_decoding() {
    assert_eq!(check_request(&create(vec![attr(); MAX_ATTRIBUTES])), Ok(()));
    assert_eq!(
        check_request(&create(vec![attr(); MAX_ATTRIBUTES + 1])),
        Err(Refusal::Limit(CKR_HOST_MEMORY))
    );
    // Spread over two templates of one call, too.
    let half = wire::Template {
        attributes: vec![attr(); MAX_ATTRIBUTES / 2 + 1],
    };
    let pair = Request {
        call: Some(Call::GenerateKeyPair(wire::GenerateKeyPair {
            public_template: Some(half.clone()),
            private_template: Some(half),
            ..Default::default()
        })),
        caller_cpu: 0,
        caller_polls: false,
    };
    assert_eq!(
        check_request(&pair.encode_to_vec()),
        Err(Refusal::Limit(CKR_HOST_MEMORY))
    );
}

#[test]
fn deep_nesting_is_refused_before_decoding() {
    let mut t = wire::Template {
        attributes: vec![attr()],
    };
    for _ in 0..MAX_NESTING {
        t = wire::Template {
            attributes: vec![wire::Attribute {
                r#type: 0x4000_0211,
                value: Some(Value::Nested(t)),
                capacity: None,
                length: 0,
            }],
        };
    }
    assert_eq!(check_request(&create(t.attributes.clone())), Ok(()));
    let deeper = wire::Attribute {
        r#type: 0x4000_0211,
        value: Some(Value::Nested(t)),
        capacity: None,
        length: 0,
    };
    assert_eq!(
        check_request(&create(vec![deeper])),
        Err(Refusal::Limit(CKR_ATTRIBUTE_VALUE_INVALID))
    );
}

#[test]
fn malformed_bytes_are_malformed() {
    assert_eq!(check_request(&[0xff; 12]), Err(Refusal::Malformed));
    // A length past the end of the buffer.
    assert_eq!(check_request(&[(19 << 3) | 2, 0x7f]), Err(Refusal::Malformed));
    assert_eq!(check_request(&[]), Ok(()));
}
