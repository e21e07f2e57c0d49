use super::*;

fn held(pin: &str) -> (tempfile::TempDir, HeldPin) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pin");
    std::fs::write(&path, pin).expect("write pin");
    let held = HeldPin::load(&path).expect("load");
    (dir, held)
}

/// Audit finding 5: every app login retried a PIN the token had rejected.
#[test]
fn a_rejected_pin_is_not_offered_again_until_the_file_changes() {
    let (dir, held) = held("wrong");
    let pin = held.current().expect("first attempt");
    assert!(!held.is_rejected());
    held.answered(&pin, CKR_PIN_INCORRECT);
    assert_eq!(held.current().err(), Some(CKR_PIN_INCORRECT));
    assert!(held.is_rejected());
    // Rewritten with the same content: still the rejected PIN.
    std::fs::write(dir.path().join("pin"), "wrong\n").expect("rewrite");
    assert_eq!(held.current().err(), Some(CKR_PIN_INCORRECT));
    std::fs::write(dir.path().join("pin"), "right").expect("fix");
    assert!(!held.is_rejected());
    assert_eq!(held.current().expect("new pin").as_slice(), b"right");
}

#[test]
fn other_answers_do_not_condemn_the_pin() {
    let (_dir, held) = held("pin");
    let pin = held.current().expect("pin");
    for rv in [CKR_OK, CKR_USER_ALREADY_LOGGED_IN, CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_ERROR, CKR_TOKEN_NOT_PRESENT] {
        held.answered(&pin, rv);
    }
    assert!(held.current().is_ok());
    // An answer to an older PIN does not condemn the current one.
    held.answered(b"older", CKR_PIN_INCORRECT);
    assert!(held.current().is_ok());
}
