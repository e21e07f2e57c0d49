//! Key wrapping and unwrapping with every wrapping mechanism SoftHSM lists.
//! Fixed keys make AES key wrap (RFC 3394, RFC 5649) and the CBC/ECB
//! wraps reproducible; RSA wraps pad randomly and are checked by
//! unwrapping on the same side and reading the unwrapped value.

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Api, Out, RW};
use hsmbridge_conformance::keys::{self, Key, Keyring};
use hsmbridge_conformance::mechs::Mech;
use hsmbridge_conformance::names::unhex;
use hsmbridge_conformance::oracle::differential;
use hsmbridge_conformance::setup;
use hsmbridge_conformance::template::Template;

const IV16: [u8; 16] = *b"wrapping IV 16 b";
const IV8: [u8; 8] = *b"wrapIV 8";
/// Not a multiple of 8 bytes: exercises the padding of AES_KEY_WRAP_PAD.
const ODD_SECRET: &str = "0102030405060708090a0b0c0d0e0f101112131415";

/// One wrap case: mechanism, wrapping key, unwrapping key, the key wrapped.
pub struct Wrap {
    pub mech: fn() -> Mech,
    pub wrapping: Key,
    pub unwrapping: Key,
    pub target: Target,
}

/// What gets wrapped.
#[derive(Clone, Copy)]
pub enum Target {
    Fixed(Key),
    /// A generic secret of [`ODD_SECRET`].
    OddSecret,
}

const fn wrap(mech: fn() -> Mech, key: Key, target: Target) -> Wrap {
    Wrap {
        mech,
        wrapping: key,
        unwrapping: key,
        target,
    }
}

pub const CASES: &[Wrap] = &[
    wrap(|| Mech::new(CKM_AES_KEY_WRAP), Key::Aes128, Target::Fixed(Key::Aes256)),
    wrap(|| Mech::new(CKM_AES_KEY_WRAP), Key::Aes256, Target::Fixed(Key::Des3)),
    wrap(|| Mech::new(CKM_AES_KEY_WRAP), Key::Aes128, Target::OddSecret),
    wrap(|| Mech::new(CKM_AES_KEY_WRAP_PAD), Key::Aes128, Target::OddSecret),
    wrap(
        || Mech::new(CKM_AES_KEY_WRAP_PAD),
        Key::Aes256,
        Target::Fixed(Key::Aes128),
    ),
    wrap(
        || Mech::new(CKM_AES_KEY_WRAP_PAD),
        Key::Aes128,
        Target::Fixed(Key::RsaPrivate),
    ),
    wrap(
        || Mech::new(CKM_AES_KEY_WRAP_PAD),
        Key::Aes128,
        Target::Fixed(Key::EcPrivate),
    ),
    wrap(
        || Mech::bytes(CKM_AES_CBC, &IV16),
        Key::Aes128,
        Target::Fixed(Key::Aes256),
    ),
    wrap(|| Mech::bytes(CKM_AES_CBC_PAD, &IV16), Key::Aes128, Target::OddSecret),
    wrap(|| Mech::new(CKM_AES_ECB), Key::Aes128, Target::Fixed(Key::Aes256)),
    wrap(|| Mech::new(CKM_DES_ECB), Key::Des, Target::Fixed(Key::Aes128)),
    wrap(|| Mech::bytes(CKM_DES_CBC, &IV8), Key::Des, Target::Fixed(Key::Aes128)),
    wrap(|| Mech::bytes(CKM_DES_CBC_PAD, &IV8), Key::Des, Target::OddSecret),
    wrap(
        || Mech::bytes(CKM_DES3_CBC, &IV8),
        Key::Des3,
        Target::Fixed(Key::Aes256),
    ),
    Wrap {
        mech: || Mech::new(CKM_RSA_PKCS),
        wrapping: Key::RsaPublic,
        unwrapping: Key::RsaPrivate,
        target: Target::Fixed(Key::Aes256),
    },
    Wrap {
        mech: || Mech::oaep(CKM_SHA_1, CKG_MGF1_SHA1, b""),
        wrapping: Key::RsaPublic,
        unwrapping: Key::RsaPrivate,
        target: Target::Fixed(Key::Aes128),
    },
];

/// The mechanisms SoftHSM lists for wrapping; the others above are cipher
/// mechanisms it may refuse for wrapping (compared all the same).
pub const WRAP_MECHANISMS: &[CK_MECHANISM_TYPE] = &[
    CKM_AES_KEY_WRAP,
    CKM_AES_KEY_WRAP_PAD,
    CKM_AES_CBC,
    CKM_DES_ECB,
    CKM_DES_CBC,
    CKM_DES_CBC_PAD,
    CKM_DES3_CBC,
    CKM_RSA_PKCS,
    CKM_RSA_PKCS_OAEP,
];

/// Listed with CKF_WRAP, but SoftHSM 2.6's C_WrapKey refuses them with
/// CKR_MECHANISM_INVALID (single DES: OpenSSL 3; DES3-CBC: not
/// implemented for wrapping). Still called and compared.
pub const WRAP_REFUSED: &[CK_MECHANISM_TYPE] = &[CKM_DES_ECB, CKM_DES_CBC, CKM_DES_CBC_PAD, CKM_DES3_CBC];

/// Template for unwrapping the target back; readable so its value compares.
fn unwrap_template(target: Target) -> Template {
    let (class, key_type) = match target {
        Target::OddSecret => (CKO_SECRET_KEY, CKK_GENERIC_SECRET),
        Target::Fixed(Key::Aes128 | Key::Aes256) => (CKO_SECRET_KEY, CKK_AES),
        Target::Fixed(Key::Des3) => (CKO_SECRET_KEY, CKK_DES3),
        Target::Fixed(Key::RsaPrivate) => (CKO_PRIVATE_KEY, CKK_RSA),
        Target::Fixed(Key::EcPrivate) => (CKO_PRIVATE_KEY, CKK_EC),
        Target::Fixed(other) => panic!("no unwrap template for {other:?}"),
    };
    Template::new()
        .ulong(CKA_CLASS, class)
        .ulong(CKA_KEY_TYPE, key_type)
        .bool(CKA_TOKEN, false)
        .text(CKA_LABEL, "unwrapped")
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true)
}

/// The attribute that shows the unwrapped key is the wrapped one.
fn identity_attribute(target: Target) -> CK_ATTRIBUTE_TYPE {
    match target {
        Target::Fixed(Key::RsaPrivate) => CKA_PRIVATE_EXPONENT,
        _ => CKA_VALUE,
    }
}

fn target_handle(api: &mut Api, ring: &mut Keyring, s: CK_SESSION_HANDLE, t: Target) -> CK_OBJECT_HANDLE {
    match t {
        Target::Fixed(k) => ring.get(api, k),
        Target::OddSecret => api.must_create(s, &keys::secret(CKK_GENERIC_SECRET, ODD_SECRET, "odd")),
    }
}

/// Wrap (two-call), unwrap, read the unwrapped key's identifying value.
fn run(api: &mut Api, ring: &mut Keyring, slot: CK_SLOT_ID, c: &Wrap) {
    let s = api.must_open_session(slot, RW);
    let mech = (c.mech)();
    let wk = ring.get(api, c.wrapping);
    let uk = ring.get(api, c.unwrapping);
    let target = target_handle(api, ring, s, c.target);
    let (rv, wrapped) = api.wrap_key(s, &mech, wk, target, Out::Auto);
    if rv == CKR_OK {
        let (rv, unwrapped) = api.unwrap_key(s, &mech, uk, &wrapped, &unwrap_template(c.target));
        if rv == CKR_OK {
            api.attribute_values(
                s,
                unwrapped,
                &[CKA_CLASS, CKA_KEY_TYPE, identity_attribute(c.target), CKA_LOCAL],
            );
        }
        // A corrupted blob must not unwrap.
        let mut bad = wrapped.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 0x01;
        }
        api.unwrap_key(s, &mech, uk, &bad, &unwrap_template(c.target));
    }
    api.close_session(s);
}

#[test]
fn wrap_and_unwrap() {
    differential(|api| {
        let ready = setup::logged_in(api);
        let mut ring = Keyring::new(ready.session);
        for c in CASES {
            run(api, &mut ring, ready.slot, c);
        }
        api.assert_exercised(WRAP_MECHANISMS, WRAP_REFUSED);
    });
}

#[test]
fn wrap_refusals() {
    differential(|api| {
        let ready = setup::logged_in(api);
        let s = ready.session;
        let mut ring = Keyring::new(s);
        let kek = ring.get(api, Key::Aes128);
        let sensitive = api.must_create(
            s,
            &keys::secret(CKK_AES, keys::AES128, "unextractable")
                .bool(CKA_EXTRACTABLE, false)
                .bool(CKA_SENSITIVE, true),
        );
        let no_wrap = api.must_create(s, &keys::secret(CKK_AES, keys::AES256, "no wrap").bool(CKA_WRAP, false));
        let target = ring.get(api, Key::Aes256);
        let rsa_public = ring.get(api, Key::RsaPublic);
        let m = Mech::new(CKM_AES_KEY_WRAP);
        api.wrap_key(s, &m, kek, sensitive, Out::Query);
        api.wrap_key(s, &m, no_wrap, target, Out::Query);
        api.wrap_key(s, &m, rsa_public, target, Out::Query);
        api.wrap_key(s, &Mech::new(CKM_SHA256), kek, target, Out::Query);
        // Unwrap: wrong length, template missing the class, wrapping key type mismatch.
        api.unwrap_key(s, &m, kek, &[0u8; 23], &unwrap_template(Target::Fixed(Key::Aes128)));
        let (_, wrapped) = api.wrap_key(s, &m, kek, target, Out::Auto);
        api.unwrap_key(s, &m, kek, &wrapped, &Template::new().bool(CKA_TOKEN, false));
        api.unwrap_key(
            s,
            &m,
            rsa_public,
            &wrapped,
            &unwrap_template(Target::Fixed(Key::Aes256)),
        );
        // Unwrap into a token object in a public session of another kind.
        let ro = api.must_open_session(ready.slot, hsmbridge_conformance::calls::RO);
        api.unwrap_key(
            ro,
            &m,
            kek,
            &wrapped,
            &unwrap_template(Target::Fixed(Key::Aes256)).bool(CKA_TOKEN, true),
        );
        let aes_value = unhex(keys::AES256);
        api.note(format!("fixed AES-256 key is {} bytes", aes_value.len()));
    });
}
