//! Library, slot, token and mechanism information; token initialization.

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Api, InitArgs, Out, BAD_SLOT, RO, RW};
use hsmbridge_conformance::oracle::differential;
use hsmbridge_conformance::setup;
use hsmbridge_conformance::softhsm::{SO_PIN, USER_PIN};

/// Every slot id of the (already named) slot list.
fn all_slots(api: &mut Api) -> Vec<CK_SLOT_ID> {
    let (rv, slots) = api.slot_list(false, Out::Auto);
    assert_eq!(rv, CKR_OK, "C_GetSlotList");
    slots
}

#[test]
fn slot_lists_with_size_queries() {
    differential(|api| {
        api.initialize(InitArgs::Null);
        api.get_info();
        api.slot_list(false, Out::Query);
        api.slot_list(false, Out::Size(0));
        api.slot_list(false, Out::Size(1));
        api.slot_list(false, Out::Auto);
        api.slot_list(false, Out::Size(8));
        api.slot_list(true, Out::Query);
        api.slot_list(true, Out::Size(0));
        api.slot_list(true, Out::Auto);
    });
}

#[test]
fn slot_and_token_info() {
    differential(|api| {
        api.initialize(InitArgs::Null);
        for slot in all_slots(api) {
            api.slot_info(slot);
            api.token_info(slot);
        }
        api.slot_info(BAD_SLOT);
        api.token_info(BAD_SLOT);
        api.wait_for_slot_event(CKF_DONT_BLOCK);
    });
}

#[test]
fn mechanism_list_and_info() {
    differential(|api| {
        let slot = setup::init(api);
        api.mechanism_list(slot, Out::Query);
        api.mechanism_list(slot, Out::Size(1));
        let (_, mechs) = api.mechanism_list(slot, Out::Auto);
        for m in mechs {
            api.mechanism_info(slot, m);
        }
        api.mechanism_info(slot, CKM_VENDOR_DEFINED | 0x1234);
        api.mechanism_info(BAD_SLOT, CKM_AES_ECB);
        api.mechanism_list(BAD_SLOT, Out::Query);
        for other in all_slots(api).into_iter().filter(|s| *s != slot) {
            api.mechanism_list(other, Out::Query);
            api.mechanism_info(other, CKM_SHA256);
        }
    });
}

/// Token counters as sessions come and go (one application: exact counts).
#[test]
fn token_session_counts() {
    differential(|api| {
        let slot = setup::init(api);
        api.token_info(slot);
        let rw = api.must_open_session(slot, RW);
        let ro = api.must_open_session(slot, RO);
        api.token_info(slot);
        api.login(rw, CKU_USER, Some(USER_PIN));
        api.token_info(slot);
        api.close_session(ro);
        api.token_info(slot);
        api.close_all_sessions(slot);
        api.token_info(slot);
    });
}

#[test]
fn init_token() {
    differential(|api| {
        let slot = setup::init(api);
        let slots = all_slots(api);
        let free = slots.iter().copied().find(|s| *s != slot).expect("SoftHSM's free slot");
        // Refused: wrong SO PIN, open session, label on an uninitialized token.
        api.init_token(slot, "87654321", "conformance");
        let s = api.must_open_session(slot, RO);
        api.init_token(slot, SO_PIN, "conformance");
        api.close_session(s);
        // A new token in the free slot.
        api.init_token(free, "ab12cd34", "second");
        api.token_info(free);
        let s2 = api.must_open_session(free, RW);
        api.login(s2, CKU_SO, Some("ab12cd34"));
        api.init_pin(s2, "2468");
        api.logout(s2);
        api.login(s2, CKU_USER, Some("2468"));
        api.session_info(s2);
        api.close_session(s2);
        // Re-initializing the first token keeps its SO PIN and drops the user PIN.
        api.init_token(slot, SO_PIN, "reinitialized");
        api.token_info(slot);
        let s3 = api.must_open_session(slot, RW);
        api.login(s3, CKU_USER, Some(USER_PIN));
        api.login(s3, CKU_SO, Some(SO_PIN));
        api.init_pin(s3, USER_PIN);
        api.token_info(slot);
        api.finalize();
        // The slot list after the library re-reads the tokens.
        api.initialize(InitArgs::Null);
        api.slot_list(false, Out::Query);
    });
}
