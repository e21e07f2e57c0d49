use std::cell::Cell;

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
    let tries = Cell::new(0);
    let module = |answer: CK_RV| {
        let tries = &tries;
        move |_: &Zeroizing<Vec<u8>>| {
            tries.set(tries.get() + 1);
            answer
        }
    };
    assert_eq!(held.attempt(0, module(CKR_PIN_INCORRECT)), CKR_PIN_INCORRECT);
    assert!(held.is_rejected());
    for _ in 0..10 {
        assert_eq!(held.attempt(0, module(CKR_OK)), CKR_PIN_INCORRECT);
    }
    assert_eq!(tries.get(), 1, "the module saw the rejected PIN again");
    // Rewritten with the same content: still the rejected PIN.
    std::fs::write(dir.path().join("pin"), "wrong\n").expect("rewrite");
    assert_eq!(held.attempt(0, module(CKR_OK)), CKR_PIN_INCORRECT);
    assert_eq!(tries.get(), 1);
    std::fs::write(dir.path().join("pin"), "right").expect("fix");
    assert!(held.is_rejected(), "not adopted yet");
    assert_eq!(
        held.attempt(0, module(CKR_OK)),
        CKR_PIN_INCORRECT,
        "offered before it was adopted"
    );
    assert_eq!(held.adopt(), Some(0));
    assert!(!held.is_rejected());
    let offered = held.attempt(0, |pin| {
        if pin.as_slice() == b"right" {
            CKR_OK
        } else {
            CKR_PIN_INCORRECT
        }
    });
    assert_eq!(offered, CKR_OK);
}

#[test]
fn other_answers_do_not_condemn_the_pin() {
    let (_dir, held) = held("pin");
    for rv in [
        CKR_OK,
        CKR_USER_ALREADY_LOGGED_IN,
        CKR_SESSION_HANDLE_INVALID,
        CKR_DEVICE_ERROR,
        CKR_TOKEN_NOT_PRESENT,
    ] {
        assert_eq!(held.attempt(0, |_| rv), rv);
    }
    assert!(!held.is_rejected());
}

/// Review finding: an app logging in on another token condemned the PIN for all.
#[test]
fn a_rejection_on_another_slot_does_not_condemn_the_pin() {
    let (_dir, held) = held("pin");
    assert_eq!(held.attempt(1, |_| CKR_OK), CKR_OK);
    assert_eq!(held.attempt(2, |_| CKR_PIN_INCORRECT), CKR_PIN_INCORRECT);
    assert_eq!(
        held.attempt(2, |_| CKR_OK),
        CKR_PIN_INCORRECT,
        "slot 2 is not asked again"
    );
    assert_eq!(
        held.attempt(1, |_| CKR_USER_ALREADY_LOGGED_IN),
        CKR_USER_ALREADY_LOGGED_IN,
        "slot 1 still is"
    );
    assert!(!held.is_rejected(), "the PIN logged in on slot 1: health stays SERVING");
}

/// Rotation (issue #10): a new PIN in the file is seen, and offered from the moment the monitor
/// adopts it (as it re-initializes the module), never before; its generation comes with it.
#[test]
fn a_rotated_pin_is_offered_once_adopted() {
    let (dir, held) = held("old");
    std::fs::write(dir.path().join(hsmbridge_contract::GENERATION_KEY), "1\n").expect("generation");
    let offered = |held: &HeldPin| {
        let seen = std::cell::RefCell::new(Vec::new());
        held.attempt(0, |pin| {
            seen.borrow_mut().push(pin.to_vec());
            CKR_OK
        });
        seen.into_inner()
    };
    assert_eq!(offered(&held), vec![b"old".to_vec()]);
    assert!(!held.changed_on_disk());
    assert_eq!(held.adopt(), None, "nothing changed");
    std::fs::write(dir.path().join("pin"), "new").expect("rotate");
    std::fs::write(dir.path().join(hsmbridge_contract::GENERATION_KEY), "2").expect("generation");
    assert!(held.changed_on_disk());
    assert_eq!(
        offered(&held),
        vec![b"old".to_vec()],
        "offered before the monitor adopted it"
    );
    assert_eq!(held.adopt(), Some(2));
    assert!(!held.changed_on_disk());
    assert_eq!(offered(&held), vec![b"new".to_vec()]);
    assert_eq!(held.generation(), 2);
    assert_eq!(held.adopt(), None, "adopted once");
}

/// Review finding: a PIN accepted before a re-initialization kept health SERVING after a
/// configuration change made every login fail.
#[test]
fn a_reinitialization_forgets_that_the_pin_was_accepted() {
    let (_dir, held) = held("pin");
    assert_eq!(held.attempt(1, |_| CKR_OK), CKR_OK);
    held.module_reinitialized();
    assert_eq!(held.attempt(1, |_| CKR_PIN_INCORRECT), CKR_PIN_INCORRECT);
    assert!(
        held.is_rejected(),
        "health must see the rejection after the re-initialization"
    );
}
