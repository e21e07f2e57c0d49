//! Key derivation with every derivation mechanism SoftHSM lists. Fixed base
//! keys and peer values make every derived value reproducible: ECDH and DH
//! secrets, and the *_ENCRYPT_DATA derivations.

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Api, RW};
use hsmbridge_conformance::keys::{self, Key, Keyring};
use hsmbridge_conformance::mechs::Mech;
use hsmbridge_conformance::names::{hex, unhex};
use hsmbridge_conformance::oracle::differential;
use hsmbridge_conformance::setup;
use hsmbridge_conformance::template::Template;

const DATA16: &[u8] = b"derivation data!";
const DATA32: &[u8] = b"thirty-two bytes derivation data";
const DATA24: &[u8] = b"24 bytes derivation data";
const DATA8: &[u8] = b"8 bytes!";
const IV16: [u8; 16] = *b"derive IV 16 byt";
const IV8: [u8; 8] = *b"deriveIV";

/// One derivation: mechanism, base key, derived key type and length.
pub struct Derive {
    pub mech: fn() -> Mech,
    pub base: Key,
    pub key_type: CK_KEY_TYPE,
    pub value_len: Option<CK_ULONG>,
}

const fn derive(mech: fn() -> Mech, base: Key, key_type: CK_KEY_TYPE, value_len: Option<CK_ULONG>) -> Derive {
    Derive {
        mech,
        base,
        key_type,
        value_len,
    }
}

fn ecdh(kdf: CK_EC_KDF_TYPE, shared: &[u8], der: bool) -> Mech {
    let point = unhex(keys::EC_P256_PEER_POINT);
    let public = if der { keys::der_octet_string(&point) } else { point };
    Mech::ecdh1(kdf, shared, &public)
}

pub const CASES: &[Derive] = &[
    derive(
        || ecdh(CKD_NULL, b"", false),
        Key::EcPrivate,
        CKK_GENERIC_SECRET,
        Some(32),
    ),
    derive(
        || ecdh(CKD_NULL, b"", true),
        Key::EcPrivate,
        CKK_GENERIC_SECRET,
        Some(32),
    ),
    derive(|| ecdh(CKD_NULL, b"", false), Key::EcPrivate, CKK_AES, Some(16)),
    derive(
        || ecdh(CKD_SHA256_KDF, b"shared info", false),
        Key::EcPrivate,
        CKK_GENERIC_SECRET,
        Some(32),
    ),
    derive(
        || Mech::bytes(CKM_DH_PKCS_DERIVE, &unhex(keys::DH_PEER_PUBLIC)),
        Key::DhPrivate,
        CKK_GENERIC_SECRET,
        None,
    ),
    derive(
        || Mech::bytes(CKM_DH_PKCS_DERIVE, &unhex(keys::DH_PEER_PUBLIC)),
        Key::DhPrivate,
        CKK_GENERIC_SECRET,
        Some(96),
    ),
    derive(
        || Mech::bytes(CKM_DH_PKCS_DERIVE, &unhex(keys::DH_PEER_PUBLIC)),
        Key::DhPrivate,
        CKK_AES,
        Some(32),
    ),
    derive(
        || Mech::string_data(CKM_AES_ECB_ENCRYPT_DATA, DATA16),
        Key::Aes128,
        CKK_AES,
        None,
    ),
    derive(
        || Mech::string_data(CKM_AES_ECB_ENCRYPT_DATA, DATA32),
        Key::Aes256,
        CKK_GENERIC_SECRET,
        Some(32),
    ),
    derive(|| Mech::aes_cbc_data(IV16, DATA32), Key::Aes128, CKK_AES, None),
    derive(
        || Mech::aes_cbc_data(IV16, DATA16),
        Key::Aes256,
        CKK_GENERIC_SECRET,
        Some(16),
    ),
    derive(
        || Mech::string_data(CKM_DES_ECB_ENCRYPT_DATA, DATA8),
        Key::Des,
        CKK_DES,
        None,
    ),
    derive(
        || Mech::des_cbc_data(CKM_DES_CBC_ENCRYPT_DATA, IV8, DATA8),
        Key::Des,
        CKK_DES,
        None,
    ),
    derive(
        || Mech::string_data(CKM_DES3_ECB_ENCRYPT_DATA, DATA24),
        Key::Des3,
        CKK_DES3,
        None,
    ),
    derive(
        || Mech::des_cbc_data(CKM_DES3_CBC_ENCRYPT_DATA, IV8, DATA24),
        Key::Des3,
        CKK_DES3,
        None,
    ),
    derive(
        || Mech::string_data(CKM_DES3_ECB_ENCRYPT_DATA, DATA16),
        Key::Des3,
        CKK_DES2,
        None,
    ),
];

pub const MECHANISMS: &[CK_MECHANISM_TYPE] = &[
    CKM_ECDH1_DERIVE,
    CKM_DH_PKCS_DERIVE,
    CKM_AES_ECB_ENCRYPT_DATA,
    CKM_AES_CBC_ENCRYPT_DATA,
    CKM_DES_ECB_ENCRYPT_DATA,
    CKM_DES_CBC_ENCRYPT_DATA,
    CKM_DES3_ECB_ENCRYPT_DATA,
    CKM_DES3_CBC_ENCRYPT_DATA,
];

fn derived_template(key_type: CK_KEY_TYPE, value_len: Option<CK_ULONG>) -> Template {
    let t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, key_type)
        .bool(CKA_TOKEN, false)
        .text(CKA_LABEL, "derived")
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true)
        .bool(CKA_ENCRYPT, true);
    match value_len {
        Some(n) => t.ulong(CKA_VALUE_LEN, n),
        None => t,
    }
}

fn run(api: &mut Api, ring: &mut Keyring, slot: CK_SLOT_ID, c: &Derive) {
    let s = api.must_open_session(slot, RW);
    let base = ring.get(api, c.base);
    let (rv, key) = api.derive_key(s, &(c.mech)(), base, &derived_template(c.key_type, c.value_len));
    if rv == CKR_OK {
        let (_, values) = api.attribute_values(s, key, &[CKA_CLASS, CKA_KEY_TYPE, CKA_VALUE_LEN, CKA_VALUE, CKA_LOCAL]);
        if c.base == Key::DhPrivate && c.value_len == Some(96) {
            let matches = values.get(3).and_then(|v| v.as_deref()).map(hex) == Some(keys::DH_SHARED_SECRET.to_owned());
            api.note(format!("DH secret equals the precomputed g^(xy) mod p: {matches}"));
        }
    }
    api.close_session(s);
}

#[test]
fn derive_keys() {
    differential(|api| {
        let ready = setup::logged_in(api);
        let mut ring = Keyring::new(ready.session);
        for c in CASES {
            run(api, &mut ring, ready.slot, c);
        }
        api.assert_exercised(MECHANISMS, &[CKM_DES_ECB_ENCRYPT_DATA, CKM_DES_CBC_ENCRYPT_DATA]);
    });
}

#[test]
fn derive_refusals() {
    differential(|api| {
        let ready = setup::logged_in(api);
        let s = ready.session;
        let mut ring = Keyring::new(s);
        let ec = ring.get(api, Key::EcPrivate);
        let aes = ring.get(api, Key::Aes128);
        let no_derive = api.must_create(
            s,
            &keys::secret(CKK_AES, keys::AES128, "no derive").bool(CKA_DERIVE, false),
        );
        let t = derived_template(CKK_GENERIC_SECRET, Some(32));
        api.derive_key(s, &Mech::ecdh1(CKD_NULL, b"", b"not a point"), ec, &t);
        api.derive_key(
            s,
            &Mech::ecdh1(CKD_NULL, b"", &unhex(keys::EC_P256_PEER_POINT)),
            aes,
            &t,
        );
        api.derive_key(
            s,
            &Mech::string_data(CKM_AES_ECB_ENCRYPT_DATA, b"not a block"),
            aes,
            &derived_template(CKK_AES, None),
        );
        api.derive_key(
            s,
            &Mech::string_data(CKM_AES_ECB_ENCRYPT_DATA, DATA16),
            no_derive,
            &derived_template(CKK_AES, None),
        );
        api.derive_key(
            s,
            &Mech::string_data(CKM_AES_ECB_ENCRYPT_DATA, DATA16),
            aes,
            &Template::new().bool(CKA_TOKEN, false),
        );
    });
}
