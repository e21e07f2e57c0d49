//! C_GetAttributeValue / C_SetAttributeValue: length queries, short
//! buffers, sensitive and invalid attributes, attribute arrays.

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{AttrReq, Out};
use hsmbridge_conformance::keys::{self, Key, Keyring};
use hsmbridge_conformance::mechs::Mech;
use hsmbridge_conformance::names::unhex;
use hsmbridge_conformance::oracle::differential;
use hsmbridge_conformance::setup;
use hsmbridge_conformance::template::Template;
use AttrReq::{Buf, Len};

fn sensitive_aes() -> Template {
    Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_TOKEN, false)
        .text(CKA_LABEL, "sensitive")
        .bool(CKA_SENSITIVE, true)
        .bool(CKA_EXTRACTABLE, false)
        .bool(CKA_ENCRYPT, true)
        .bytes(CKA_VALUE, &unhex(keys::AES128))
}

#[test]
fn length_queries_and_short_buffers() {
    differential(|api| {
        let s = setup::logged_in(api).session;
        let o = api.must_create(s, &keys::secret(CKK_AES, keys::AES256, "a label of some length"));
        api.get_attributes(s, o, &[Len(CKA_LABEL), Len(CKA_VALUE), Len(CKA_CLASS), Len(CKA_ID)]);
        api.get_attributes(
            s,
            o,
            &[
                Buf(CKA_LABEL, 64),
                Buf(CKA_VALUE, 32),
                Buf(CKA_CLASS, 8),
                Buf(CKA_ID, 0),
            ],
        );
        // Too small: that attribute gets CK_UNAVAILABLE_INFORMATION, the others are filled.
        api.get_attributes(s, o, &[Buf(CKA_LABEL, 4), Buf(CKA_CLASS, 8)]);
        api.get_attributes(s, o, &[Buf(CKA_CLASS, 8), Buf(CKA_VALUE, 0), Len(CKA_LABEL)]);
        api.get_attributes(s, o, &[Buf(CKA_CLASS, 4)]);
        api.get_attributes(s, o, &[]);
        api.attribute_values(
            s,
            o,
            &[
                CKA_LABEL,
                CKA_VALUE_LEN,
                CKA_CHECK_VALUE,
                CKA_LOCAL,
                CKA_ALWAYS_SENSITIVE,
                CKA_NEVER_EXTRACTABLE,
            ],
        );
    });
}

#[test]
fn sensitive_and_invalid_attributes() {
    differential(|api| {
        let s = setup::logged_in(api).session;
        let secret = api.must_create(s, &sensitive_aes());
        api.get_attributes(s, secret, &[Len(CKA_VALUE), Len(CKA_LABEL)]);
        api.get_attributes(s, secret, &[Buf(CKA_VALUE, 16), Buf(CKA_LABEL, 16)]);
        api.attribute_values(
            s,
            secret,
            &[
                CKA_SENSITIVE,
                CKA_EXTRACTABLE,
                CKA_ALWAYS_SENSITIVE,
                CKA_NEVER_EXTRACTABLE,
                CKA_VALUE_LEN,
            ],
        );
        let data = api.must_create(
            s,
            &Template::new()
                .ulong(CKA_CLASS, CKO_DATA)
                .bool(CKA_TOKEN, false)
                .text(CKA_LABEL, "d"),
        );
        api.get_attributes(s, data, &[Len(CKA_MODULUS), Len(CKA_LABEL)]);
        api.get_attributes(s, data, &[Buf(CKA_LABEL, 8), Buf(CKA_VENDOR_DEFINED | 0x42, 8)]);
        // Several problems at once: which CK_RV wins is the module's choice, to be passed through.
        api.get_attributes(s, secret, &[Buf(CKA_VALUE, 16), Buf(CKA_MODULUS, 8), Buf(CKA_LABEL, 1)]);
        api.get_attributes(s, secret, &[Buf(CKA_LABEL, 1), Buf(CKA_MODULUS, 8)]);
        api.get_attributes(s, secret, &[Buf(CKA_VALUE, 16), Buf(CKA_LABEL, 1)]);
        // A sensitive RSA key hides only its private parts.
        let rsa = api.must_create(s, &keys::rsa_private().bool(CKA_SENSITIVE, true).text(CKA_ID, "rsa-id"));
        api.get_attributes(
            s,
            rsa,
            &[
                Len(CKA_MODULUS),
                Len(CKA_PUBLIC_EXPONENT),
                Len(CKA_PRIVATE_EXPONENT),
                Len(CKA_PRIME_1),
                Len(CKA_COEFFICIENT),
            ],
        );
        api.attribute_values(
            s,
            rsa,
            &[
                CKA_MODULUS,
                CKA_PUBLIC_EXPONENT,
                CKA_PRIVATE_EXPONENT,
                CKA_ID,
                CKA_MODULUS_BITS,
            ],
        );
        // Invalid object and session handles.
        api.get_attributes(s, hsmbridge_conformance::calls::BAD_HANDLE, &[Len(CKA_LABEL)]);
        api.get_attributes(hsmbridge_conformance::calls::BAD_HANDLE, secret, &[Len(CKA_LABEL)]);
    });
}

#[test]
fn set_attributes() {
    differential(|api| {
        let s = setup::logged_in(api).session;
        let o = api.must_create(s, &keys::secret(CKK_AES, keys::AES128, "before"));
        api.set_attributes(s, o, &Template::new().text(CKA_LABEL, "after").text(CKA_ID, "id-1"));
        api.attribute_values(s, o, &[CKA_LABEL, CKA_ID]);
        api.set_attributes(s, o, &Template::new().ulong(CKA_CLASS, CKO_DATA));
        api.set_attributes(s, o, &Template::new().ulong(CKA_KEY_TYPE, CKK_DES));
        api.set_attributes(s, o, &Template::new().bool(CKA_SENSITIVE, true));
        api.set_attributes(s, o, &Template::new().bool(CKA_SENSITIVE, false));
        api.set_attributes(s, o, &Template::new().bool(CKA_EXTRACTABLE, false));
        api.set_attributes(s, o, &Template::new().bool(CKA_EXTRACTABLE, true));
        api.set_attributes(s, o, &Template::new().bytes(CKA_ENCRYPT, &[1, 2, 3]));
        api.set_attributes(s, o, &Template::new().bytes(CKA_VENDOR_DEFINED | 0x42, b"x"));
        api.set_attributes(
            s,
            o,
            &Template::new().text(CKA_LABEL, "partial").ulong(CKA_CLASS, CKO_DATA),
        );
        api.attribute_values(
            s,
            o,
            &[
                CKA_LABEL,
                CKA_SENSITIVE,
                CKA_EXTRACTABLE,
                CKA_ALWAYS_SENSITIVE,
                CKA_NEVER_EXTRACTABLE,
            ],
        );
        let frozen = api.must_create(
            s,
            &keys::secret(CKK_AES, keys::AES128, "frozen").bool(CKA_MODIFIABLE, false),
        );
        api.set_attributes(s, frozen, &Template::new().text(CKA_LABEL, "thawed"));
        api.copy_object(s, frozen, &Template::new().text(CKA_LABEL, "copy of frozen"));
        let fixed = api.must_create(
            s,
            &keys::secret(CKK_AES, keys::AES128, "fixed").bool(CKA_DESTROYABLE, false),
        );
        api.destroy_object(s, fixed);
        let uncopyable = api.must_create(
            s,
            &keys::secret(CKK_AES, keys::AES128, "once").bool(CKA_COPYABLE, false),
        );
        api.copy_object(s, uncopyable, &Template::new().text(CKA_LABEL, "twice"));
    });
}

#[test]
fn attribute_arrays() {
    differential(|api| {
        let s = setup::logged_in(api).session;
        let wrap_template = Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_AES)
            .bool(CKA_EXTRACTABLE, true);
        let unwrap_template = Template::new()
            .bool(CKA_SENSITIVE, true)
            .text(CKA_LABEL, "unwrapped by template");
        let key = api.must_create(
            s,
            &keys::secret(CKK_AES, keys::AES128, "templated")
                .nested(CKA_WRAP_TEMPLATE, wrap_template)
                .nested(CKA_UNWRAP_TEMPLATE, unwrap_template),
        );
        api.get_nested(s, key, CKA_WRAP_TEMPLATE);
        api.get_nested(s, key, CKA_UNWRAP_TEMPLATE);
        api.get_nested(s, key, CKA_DERIVE_TEMPLATE);
        // CKA_ALLOWED_MECHANISMS is an array of CK_MECHANISM_TYPE.
        let mut allowed = Vec::new();
        for m in [CKM_AES_CBC, CKM_AES_ECB] {
            allowed.extend_from_slice(&m.to_ne_bytes());
        }
        let (rv, restricted) = api.create_object(
            s,
            &keys::secret(CKK_AES, keys::AES128, "restricted").bytes(CKA_ALLOWED_MECHANISMS, &allowed),
        );
        if rv == CKR_OK {
            api.attribute_values(s, restricted, &[CKA_ALLOWED_MECHANISMS]);
            api.encrypt_init(s, &Mech::new(CKM_AES_ECB), restricted);
            api.encrypt(s, &[7u8; 16], Out::Auto);
            api.encrypt_init(s, &Mech::ctr(128, [0u8; 16]), restricted);
        }
        // Wrapping honours the wrapped key's template check.
        let mut ring = Keyring::new(s);
        let target = ring.get(api, Key::Aes256);
        api.wrap_key(s, &Mech::new(CKM_AES_KEY_WRAP), key, target, Out::Auto);
    });
}
