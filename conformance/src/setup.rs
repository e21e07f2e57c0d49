//! Opening moves most call sequences share.

use cryptoki_sys::*;

use crate::calls::{Api, InitArgs, Out, RW};
use crate::softhsm::USER_PIN;

/// The initialized token's slot and an open RW session on it.
pub struct Ready {
    pub slot: CK_SLOT_ID,
    pub session: CK_SESSION_HANDLE,
}

/// C_Initialize, the slot lists (which name the slots), and the slot of the
/// initialized token.
pub fn init(api: &mut Api) -> CK_SLOT_ID {
    let rv = api.initialize(InitArgs::Null);
    assert_eq!(rv, CKR_OK, "C_Initialize failed: {}", crate::names::rv(rv));
    let (rv, all) = api.slot_list(false, Out::Auto);
    assert!(
        rv == CKR_OK && !all.is_empty(),
        "C_GetSlotList(all) failed: {}",
        crate::names::rv(rv)
    );
    let (rv, present) = api.slot_list(true, Out::Auto);
    assert_eq!(rv, CKR_OK, "C_GetSlotList(present) failed: {}", crate::names::rv(rv));
    let slot = present.into_iter().find(|s| {
        // SAFETY: CK_TOKEN_INFO is plain C data (integers, byte arrays,
        // versions): all-zero is a valid value.
        let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
        let f = api.fl().C_GetTokenInfo.expect("C_GetTokenInfo in the function list");
        // SAFETY: `f` is an entry of `api`'s loaded module (alive: borrowed
        // here); `info` is a live, writable CK_TOKEN_INFO.
        let rv = unsafe { f(*s, &mut info) };
        rv == CKR_OK && info.flags & CKF_TOKEN_INITIALIZED != 0
    });
    slot.expect("a slot with an initialized token")
}

/// [`init`], an RW session, and the user logged in.
pub fn logged_in(api: &mut Api) -> Ready {
    let slot = init(api);
    let session = api.must_open_session(slot, RW);
    let rv = api.login(session, CKU_USER, Some(USER_PIN));
    assert_eq!(rv, CKR_OK, "C_Login(user) failed: {}", crate::names::rv(rv));
    Ready { slot, session }
}
