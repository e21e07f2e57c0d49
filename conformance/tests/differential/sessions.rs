//! Sessions, login state, PINs, random numbers, legacy and unsupported calls.

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Out, BAD_HANDLE, RO, RW};
use hsmbridge_conformance::oracle::differential;
use hsmbridge_conformance::setup;
use hsmbridge_conformance::softhsm::{SO_PIN, USER_PIN};

#[test]
fn open_close_and_session_info() {
    differential(|api| {
        let slot = setup::init(api);
        api.open_session(slot, 0);
        api.open_session(slot, CKF_RW_SESSION);
        api.open_session(hsmbridge_conformance::calls::BAD_SLOT, RW);
        let ro = api.must_open_session(slot, RO);
        let rw = api.must_open_session(slot, RW);
        api.session_info(ro);
        api.session_info(rw);
        api.close_session(ro);
        api.session_info(ro);
        api.close_session(ro);
        api.session_info(rw);
        api.close_all_sessions(slot);
        api.session_info(rw);
        api.close_all_sessions(slot);
        api.session_info(BAD_HANDLE);
        api.close_session(BAD_HANDLE);
        api.close_session(0);
    });
}

#[test]
fn user_login_states() {
    differential(|api| {
        let slot = setup::init(api);
        let ro = api.must_open_session(slot, RO);
        let rw = api.must_open_session(slot, RW);
        api.logout(rw);
        api.login(rw, CKU_USER, Some("0000"));
        api.login(rw, CKU_USER, Some(""));
        api.session_info(rw);
        api.token_info(slot);
        api.login(ro, CKU_USER, Some(USER_PIN));
        // Login is per application: every session sees it.
        api.session_info(ro);
        api.session_info(rw);
        api.login(rw, CKU_USER, Some(USER_PIN));
        api.login(rw, CKU_SO, Some(SO_PIN));
        api.login(rw, 7, Some(USER_PIN));
        let late = api.must_open_session(slot, RO);
        api.session_info(late);
        api.logout(ro);
        api.session_info(rw);
        api.session_info(late);
        api.logout(rw);
        // Closing the last session logs out.
        api.login(rw, CKU_USER, Some(USER_PIN));
        api.close_all_sessions(slot);
        let fresh = api.must_open_session(slot, RW);
        api.session_info(fresh);
        api.token_info(slot);
    });
}

#[test]
fn so_login_and_pins() {
    differential(|api| {
        let slot = setup::init(api);
        let ro = api.must_open_session(slot, RO);
        let rw = api.must_open_session(slot, RW);
        api.login(rw, CKU_SO, Some(SO_PIN));
        api.close_session(ro);
        api.login(rw, CKU_SO, Some("00000000"));
        api.login(rw, CKU_SO, Some(SO_PIN));
        api.session_info(rw);
        api.open_session(slot, RO);
        api.login(rw, CKU_USER, Some(USER_PIN));
        api.init_pin(rw, "12");
        api.init_pin(rw, "9999");
        api.set_pin(rw, SO_PIN, "87654321");
        api.set_pin(rw, "87654321", SO_PIN);
        api.logout(rw);
        api.init_pin(rw, "9999");
        api.login(rw, CKU_USER, Some(USER_PIN));
        api.login(rw, CKU_USER, Some("9999"));
        api.set_pin(rw, "wrong", "1111");
        api.set_pin(rw, "9999", "1");
        api.set_pin(rw, "9999", USER_PIN);
        api.logout(rw);
        api.login(rw, CKU_USER, Some(USER_PIN));
        api.token_info(slot);
        // C_SetPIN in a public RO session changes the user PIN as the spec allows.
        api.logout(rw);
        let ro2 = api.must_open_session(slot, RO);
        api.set_pin(ro2, USER_PIN, "4444");
        api.set_pin(rw, USER_PIN, "4444");
        api.login(rw, CKU_USER, Some("4444"));
    });
}

#[test]
fn random_and_legacy_functions() {
    differential(|api| {
        let slot = setup::init(api);
        let s = api.must_open_session(slot, RO);
        api.seed_random(s, b"some seed material");
        api.seed_random(s, b"");
        api.generate_random(s, 0);
        api.generate_random(s, 1);
        let (_, a) = api.generate_random(s, 64);
        let (_, b) = api.generate_random(s, 64);
        api.note(format!("two random draws differ: {}", a != b));
        api.generate_random(s, 4096);
        api.generate_random(BAD_HANDLE, 16);
        api.get_function_status(s);
        api.cancel_function(s);
        api.get_function_status(BAD_HANDLE);
        api.cancel_function(BAD_HANDLE);
        api.wait_for_slot_event(CKF_DONT_BLOCK);
    });
}

#[test]
fn operation_state() {
    differential(|api| {
        let slot = setup::init(api);
        let s = api.must_open_session(slot, RO);
        api.get_operation_state(s, Out::Query);
        api.digest_init(s, &hsmbridge_conformance::mechs::Mech::new(CKM_SHA256));
        api.digest_update(s, b"abc");
        let (rv, state) = api.get_operation_state(s, Out::Auto);
        if rv == CKR_OK {
            let other = api.must_open_session(slot, RO);
            api.set_operation_state(other, &state, 0, 0);
            api.digest_final(other, Out::Auto);
        }
        api.set_operation_state(s, b"not a saved state", 0, 0);
        api.digest_final(s, Out::Auto);
    });
}
