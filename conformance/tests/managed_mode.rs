//! Managed mode (sidecar started with --pin-file): differs from the backend
//! on purpose, so it is checked through the shim alone. The token shows a
//! protected authentication path, the user logs in with a NULL PIN, and
//! SO login is refused.

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Out, RO, RW};
use hsmbridge_conformance::keys::{Key, Keyring};
use hsmbridge_conformance::mechs::Mech;
use hsmbridge_conformance::names;
use hsmbridge_conformance::oracle::on_shim;
use hsmbridge_conformance::setup;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::{SO_PIN, USER_PIN};

fn managed() -> Sidecar {
    Sidecar::start_managed(USER_PIN)
}

#[test]
fn token_has_protected_authentication_path() {
    on_shim(managed, |api| {
        let slot = setup::init(api);
        let (rv, info) = api.token_info(slot);
        let info = info.unwrap_or_else(|| panic!("C_GetTokenInfo failed: {}", names::rv(rv)));
        assert_ne!(
            info.flags & CKF_PROTECTED_AUTHENTICATION_PATH,
            0,
            "CKF_PROTECTED_AUTHENTICATION_PATH not set: flags {:#x}",
            info.flags
        );
        assert_ne!(
            info.flags & CKF_TOKEN_INITIALIZED,
            0,
            "token not initialized: flags {:#x}",
            info.flags
        );
    });
}

#[test]
fn user_logs_in_without_pin_and_so_is_refused() {
    on_shim(managed, |api| {
        let slot = setup::init(api);
        let s = api.must_open_session(slot, RW);
        assert_eq!(
            api.login(s, CKU_SO, Some(SO_PIN)),
            CKR_USER_TYPE_INVALID,
            "SO login with the SO PIN"
        );
        assert_eq!(
            api.login(s, CKU_SO, None),
            CKR_USER_TYPE_INVALID,
            "SO login with a NULL PIN"
        );
        assert_eq!(api.login(s, CKU_USER, None), CKR_OK, "user login with a NULL PIN");
        let (rv, info) = api.session_info(s);
        assert_eq!(rv, CKR_OK, "C_GetSessionInfo");
        assert_eq!(
            info.map(|i| i.state),
            Some(CKS_RW_USER_FUNCTIONS),
            "session state after login"
        );
        assert_eq!(api.login(s, CKU_USER, None), CKR_USER_ALREADY_LOGGED_IN, "second login");
        // The login works: private objects and keys are usable.
        let mut ring = Keyring::new(s);
        let hmac = ring.get(api, Key::Hmac);
        assert_eq!(
            api.sign_init(s, &Mech::new(CKM_SHA256_HMAC), hmac),
            CKR_OK,
            "C_SignInit"
        );
        let (rv, mac) = api.sign(s, b"managed", Out::Auto);
        assert!(rv == CKR_OK && mac.len() == 32, "C_Sign: {}", names::rv(rv));
        let ro = api.must_open_session(slot, RO);
        assert_eq!(
            api.session_info(ro).1.map(|i| i.state),
            Some(CKS_RO_USER_FUNCTIONS),
            "a new session sees the login"
        );
        assert_eq!(api.logout(s), CKR_OK, "C_Logout");
        assert_eq!(
            api.session_info(ro).1.map(|i| i.state),
            Some(CKS_RO_PUBLIC_SESSION),
            "state after logout"
        );
        assert_eq!(api.login(ro, CKU_USER, None), CKR_OK, "login again with a NULL PIN");
        // C_InitToken and C_InitPIN need the SO, which managed mode keeps out.
        api.close_all_sessions(slot);
        assert_ne!(
            api.init_token(slot, SO_PIN, "hijack"),
            CKR_OK,
            "C_InitToken must not succeed in managed mode"
        );
    });
}
