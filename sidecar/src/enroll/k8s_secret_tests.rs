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
    let body = serde_json::to_value(SecretPatch::enrolled(&c)).expect("serializes");
    assert_eq!(
        body,
        json!({
            "metadata": {"annotations": {ANNOTATION_ERROR: null, ANNOTATION_MESSAGE: null}},
            "data": {KEY_PIN: "MDEyM2FiY2Q=", KEY_SECRETS_CFG: "W3NlY3JldHNdCg=="},
        })
    );
}

#[test]
fn init_pin_success_carries_no_secrets_file() {
    let c = credential(b"pin", None);
    let body = serde_json::to_value(SecretPatch::enrolled(&c)).expect("serializes");
    assert_eq!(body["data"], json!({KEY_PIN: "cGlu"}));
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
    let shown = format!("{:?}", SecretPatch::enrolled(&c));
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
