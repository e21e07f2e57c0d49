//! Object management: create, copy, destroy, size, search.

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Api, RO};
use hsmbridge_conformance::keys::{self, Key, Keyring};
use hsmbridge_conformance::oracle::differential;
use hsmbridge_conformance::setup;
use hsmbridge_conformance::template::Template;

fn data_object(label: &str, token: bool, private: bool) -> Template {
    Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_TOKEN, token)
        .bool(CKA_PRIVATE, private)
        .text(CKA_LABEL, label)
        .text(CKA_APPLICATION, "conformance")
        .bytes(CKA_VALUE, b"some data object value")
}

fn read_label_and_value(api: &mut Api, s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) {
    api.attribute_values(
        s,
        o,
        &[
            CKA_CLASS,
            CKA_TOKEN,
            CKA_PRIVATE,
            CKA_LABEL,
            CKA_APPLICATION,
            CKA_VALUE,
            CKA_MODIFIABLE,
        ],
    );
}

#[test]
fn create_copy_destroy() {
    differential(|api| {
        let ready = setup::logged_in(api);
        let s = ready.session;
        let session_obj = api.must_create(s, &data_object("session", false, false));
        let token_obj = api.must_create(s, &data_object("token", true, true));
        read_label_and_value(api, s, session_obj);
        read_label_and_value(api, s, token_obj);
        api.object_size(s, session_obj);
        api.object_size(s, token_obj);
        let (_, copy) = api.copy_object(
            s,
            token_obj,
            &Template::new().text(CKA_LABEL, "copy").bool(CKA_TOKEN, false),
        );
        read_label_and_value(api, s, copy);
        api.copy_object(s, token_obj, &Template::new().ulong(CKA_CLASS, CKO_SECRET_KEY));
        api.destroy_object(s, copy);
        api.destroy_object(s, copy);
        api.object_size(s, copy);
        read_label_and_value(api, s, copy);
        // Template errors.
        api.create_object(s, &Template::new().text(CKA_LABEL, "no class"));
        api.create_object(
            s,
            &Template::new()
                .ulong(CKA_CLASS, CKO_SECRET_KEY)
                .ulong(CKA_KEY_TYPE, CKK_AES),
        );
        api.create_object(s, &data_object("twice", false, false).bool(CKA_TOKEN, true));
        api.create_object(s, &data_object("bad bool", false, false).bytes(CKA_PRIVATE, &[1, 2, 3]));
        api.create_object(
            s,
            &data_object("unknown attr", false, false).bytes(CKA_VENDOR_DEFINED | 0x77, b"x"),
        );
        api.create_object(s, &keys::secret(CKK_AES, "0011", "short aes"));
        // Key objects from fixed material.
        let mut ring = Keyring::new(s);
        for key in [
            Key::Aes128,
            Key::Des3,
            Key::RsaPrivate,
            Key::EcPublic,
            Key::Ed25519Private,
            Key::DsaPublic,
            Key::DhPrivate,
        ] {
            let h = ring.get(api, key);
            api.attribute_values(
                s,
                h,
                &[CKA_CLASS, CKA_KEY_TYPE, CKA_LOCAL, CKA_KEY_GEN_MECHANISM, CKA_LABEL],
            );
        }
        // Token objects survive a logout only where visible.
        api.logout(s);
        read_label_and_value(api, s, token_obj);
        api.destroy_object(s, token_obj);
        api.login(s, CKU_USER, Some(hsmbridge_conformance::softhsm::USER_PIN));
        api.destroy_object(s, token_obj);
        api.destroy_object(s, session_obj);
    });
}

#[test]
fn session_and_access_rules() {
    differential(|api| {
        let slot = setup::init(api);
        let ro = api.must_open_session(slot, RO);
        // Token object in an RO session, private object while logged out.
        api.create_object(ro, &data_object("token in ro", true, false));
        api.create_object(ro, &data_object("private", false, true));
        let public = api.must_create(ro, &data_object("public", false, false));
        let other = api.must_open_session(slot, RO);
        // Session objects are visible to the application's other sessions…
        read_label_and_value(api, other, public);
        // …and gone with their session.
        api.close_session(ro);
        read_label_and_value(api, other, public);
        api.login(other, CKU_USER, Some(hsmbridge_conformance::softhsm::USER_PIN));
        let private = api.must_create(other, &data_object("private", false, true));
        api.logout(other);
        read_label_and_value(api, other, private);
        api.set_attributes(other, private, &Template::new().text(CKA_LABEL, "renamed"));
    });
}

#[test]
fn find_objects() {
    differential(|api| {
        let ready = setup::logged_in(api);
        let s = ready.session;
        for (label, token) in [("a", false), ("b", false), ("c", true), ("a", true)] {
            api.must_create(s, &data_object(label, token, false));
        }
        api.must_create(s, &keys::secret(CKK_AES, keys::AES128, "a"));
        api.find_all(s, &Template::new().text(CKA_LABEL, "a"), 10);
        api.find_all(s, &Template::new().ulong(CKA_CLASS, CKO_DATA), 1);
        api.find_all(s, &Template::new().ulong(CKA_CLASS, CKO_DATA).bool(CKA_TOKEN, true), 10);
        api.find_all(s, &Template::new().text(CKA_LABEL, "none"), 10);
        api.find_all(s, &Template::new(), 3);
        api.find_all(s, &Template::new().bytes(CKA_VENDOR_DEFINED | 0x77, b"x"), 3);
        // Search state rules.
        api.find(s, 1);
        api.find_final(s);
        api.find_init(s, &Template::new());
        api.find_init(s, &Template::new());
        api.find(s, 0);
        api.find(s, 2);
        api.digest_init(s, &hsmbridge_conformance::mechs::Mech::new(CKM_SHA256));
        api.find_final(s);
        api.find_final(s);
        api.digest_init(s, &hsmbridge_conformance::mechs::Mech::new(CKM_SHA256));
        api.find_init(s, &Template::new());
    });
}
