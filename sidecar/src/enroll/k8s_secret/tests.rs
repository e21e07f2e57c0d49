use std::collections::BTreeMap;

use serde_json::json;

use super::*;

fn credential(pin: &[u8], cfg: Option<&[u8]>) -> Credential {
    Credential {
        pin: Zeroizing::new(pin.to_vec()),
        secrets_cfg: cfg.map(|c| Zeroizing::new(c.to_vec())),
    }
}

#[test]
fn success_sets_the_credential_and_removes_the_error_annotations() {
    let c = credential(b"0123abcd", Some(b"[secrets]\n"));
    let body = serde_json::to_value(SecretPatch::enrolled(&c, 1)).expect("serializes");
    assert_eq!(
        body,
        json!({
            "metadata": {"annotations": {ANNOTATION_ERROR: null, ANNOTATION_MESSAGE: null}},
            // "1" in base64, in the same patch as the pin.
            "data": {KEY_PIN: "MDEyM2FiY2Q=", KEY_SECRETS_CFG: "W3NlY3JldHNdCg==", "generation": "MQ=="},
        })
    );
}

#[test]
fn init_pin_success_carries_no_secrets_file() {
    let c = credential(b"pin", None);
    let body = serde_json::to_value(SecretPatch::enrolled(&c, 12)).expect("serializes");
    assert_eq!(body["data"], json!({KEY_PIN: "cGlu", "generation": "MTI="}));
}

#[test]
fn the_next_generation_follows_the_one_read() {
    let secret = |generation: Option<&[u8]>| Secret {
        data: generation.map(|g| {
            BTreeMap::from([
                (KEY_PIN.to_owned(), k8s_openapi::ByteString(b"old".to_vec())),
                ("generation".to_owned(), k8s_openapi::ByteString(g.to_vec())),
            ])
        }),
        ..Secret::default()
    };
    assert_eq!(generation_of(&secret(None)), 0, "absent: the first enrollment writes 1");
    assert_eq!(generation_of(&secret(Some(b"3"))), 3);
    assert_eq!(generation_of(&secret(Some(b" 4\n"))), 4, "an administrator's echo");
    for garbled in [&b"x"[..], b"-1", b"", b"\xff"] {
        assert_eq!(generation_of(&secret(Some(garbled))), 0, "{garbled:?}");
    }
}

#[test]
fn failure_sets_the_annotations_and_no_data() {
    let body = serde_json::to_value(SecretPatch::failed(Reason::SetupPasswordRejected, "wrong")).expect("serializes");
    assert_eq!(
        body,
        json!({"metadata": {"annotations": {
            ANNOTATION_ERROR: "SetupPasswordRejected",
            ANNOTATION_MESSAGE: "wrong",
        }}})
    );
}

#[test]
fn debug_never_shows_the_credential() {
    let c = credential(b"0123abcd", Some(b"topsecret"));
    let shown = format!("{:?}", SecretPatch::enrolled(&c, 1));
    assert!(!shown.contains("0123abcd") && !shown.contains("MDEyM2FiY2Q"), "{shown}");
    assert!(!shown.contains("topsecret"), "{shown}");
}

#[test]
fn long_messages_are_clipped() {
    assert_eq!(clip("short", 10), "short");
    let c = clip(&"x".repeat(2000), MESSAGE_LIMIT);
    assert_eq!(c.chars().count(), MESSAGE_LIMIT);
    assert!(c.ends_with('…'));
}

#[test]
fn api_errors_are_sorted_and_redacted() {
    let status = |code: u16, message: &str| {
        CallError::Kube(kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: message.into(),
            reason: "Reason".into(),
            ..kube::core::Status::default()
        })))
    };
    assert!(matches!(
        call_error("get", "ns/x", status(404, "not found"), &[]),
        SecretError::Missing(_)
    ));
    let forbidden = call_error("patch", "ns/x", status(403, "no"), &[]);
    assert!(forbidden.is_config(), "{forbidden}");
    let other = call_error(
        "patch",
        "ns/x",
        status(422, "data[pin]: bad value 0123abcd"),
        &[b"0123abcd"],
    );
    let text = other.to_string();
    assert!(!text.contains("0123abcd") && text.contains("<redacted>"), "{text}");
    assert!(!other.is_config());

    assert!(status(500, "").is_transient());
    assert!(status(409, "").is_transient());
    assert!(!status(403, "").is_transient());
    assert!(!status(422, "").is_transient());
    assert!(CallError::Timeout.is_transient());
}
