//! Signing and verification (and MACs) with every signature mechanism
//! SoftHSM lists, single-part and multi-part. Deterministic schemes
//! (PKCS#1 v1.5, PSS with empty salt, EdDSA, HMAC, CMAC) compare byte for
//! byte; ECDSA, DSA and salted PSS by length, verified on the same side.

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Api, Out, RW};
use hsmbridge_conformance::keys::{Key, Keyring};
use hsmbridge_conformance::mechs::Mech;
use hsmbridge_conformance::oracle::differential;
use hsmbridge_conformance::setup;

const MESSAGE: &[u8] = b"the message that gets signed, hashed inside the token or not";
const HASH20: &[u8] = b"twenty bytes of hash";
const HASH32: &[u8] = b"thirty-two bytes of hash value!!";

/// One signature case.
pub struct Signer {
    pub mech: fn() -> Mech,
    pub sign_key: Key,
    pub verify_key: Key,
    pub data: &'static [u8],
}

const fn case(mech: fn() -> Mech, sign_key: Key, verify_key: Key, data: &'static [u8]) -> Signer {
    Signer {
        mech,
        sign_key,
        verify_key,
        data,
    }
}

const fn rsa(mech: fn() -> Mech, data: &'static [u8]) -> Signer {
    case(mech, Key::RsaPrivate, Key::RsaPublic, data)
}

const fn mac(mech: fn() -> Mech, key: Key) -> Signer {
    case(mech, key, key, MESSAGE)
}

const RAW_RSA: &[u8] = &{
    let mut block = [0x33u8; 256];
    block[0] = 0;
    block
};

fn pss(ty: CK_MECHANISM_TYPE, hash: CK_MECHANISM_TYPE, mgf: CK_RSA_PKCS_MGF_TYPE, salt: CK_ULONG) -> Mech {
    Mech::pss(ty, hash, mgf, salt)
}

pub const RSA: &[Signer] = &[
    rsa(|| Mech::new(CKM_RSA_PKCS), HASH32),
    rsa(|| Mech::new(CKM_RSA_X_509), RAW_RSA),
    rsa(|| pss(CKM_RSA_PKCS_PSS, CKM_SHA256, CKG_MGF1_SHA256, 32), HASH32),
    rsa(|| pss(CKM_RSA_PKCS_PSS, CKM_SHA_1, CKG_MGF1_SHA1, 0), HASH20),
    rsa(|| Mech::new(CKM_MD5_RSA_PKCS), MESSAGE),
    rsa(|| Mech::new(CKM_SHA1_RSA_PKCS), MESSAGE),
    rsa(|| Mech::new(CKM_SHA224_RSA_PKCS), MESSAGE),
    rsa(|| Mech::new(CKM_SHA256_RSA_PKCS), MESSAGE),
    rsa(|| Mech::new(CKM_SHA384_RSA_PKCS), MESSAGE),
    rsa(|| Mech::new(CKM_SHA512_RSA_PKCS), MESSAGE),
    rsa(|| pss(CKM_SHA1_RSA_PKCS_PSS, CKM_SHA_1, CKG_MGF1_SHA1, 20), MESSAGE),
    rsa(
        || pss(CKM_SHA224_RSA_PKCS_PSS, CKM_SHA224, CKG_MGF1_SHA224, 28),
        MESSAGE,
    ),
    rsa(
        || pss(CKM_SHA256_RSA_PKCS_PSS, CKM_SHA256, CKG_MGF1_SHA256, 32),
        MESSAGE,
    ),
    rsa(|| pss(CKM_SHA384_RSA_PKCS_PSS, CKM_SHA384, CKG_MGF1_SHA384, 0), MESSAGE),
    rsa(
        || pss(CKM_SHA512_RSA_PKCS_PSS, CKM_SHA512, CKG_MGF1_SHA512, 64),
        MESSAGE,
    ),
];

pub const EC_DSA_EDDSA: &[Signer] = &[
    case(|| Mech::new(CKM_ECDSA), Key::EcPrivate, Key::EcPublic, HASH32),
    case(|| Mech::new(CKM_DSA), Key::DsaPrivate, Key::DsaPublic, HASH20),
    case(|| Mech::new(CKM_DSA_SHA1), Key::DsaPrivate, Key::DsaPublic, MESSAGE),
    case(|| Mech::new(CKM_DSA_SHA224), Key::DsaPrivate, Key::DsaPublic, MESSAGE),
    case(|| Mech::new(CKM_DSA_SHA256), Key::DsaPrivate, Key::DsaPublic, MESSAGE),
    case(|| Mech::new(CKM_DSA_SHA384), Key::DsaPrivate, Key::DsaPublic, MESSAGE),
    case(|| Mech::new(CKM_DSA_SHA512), Key::DsaPrivate, Key::DsaPublic, MESSAGE),
    case(
        || Mech::new(CKM_EDDSA),
        Key::Ed25519Private,
        Key::Ed25519Public,
        MESSAGE,
    ),
];

pub const MACS: &[Signer] = &[
    mac(|| Mech::new(CKM_MD5_HMAC), Key::Hmac),
    mac(|| Mech::new(CKM_SHA_1_HMAC), Key::Hmac),
    mac(|| Mech::new(CKM_SHA224_HMAC), Key::Hmac),
    mac(|| Mech::new(CKM_SHA256_HMAC), Key::Hmac),
    mac(|| Mech::new(CKM_SHA384_HMAC), Key::Hmac),
    mac(|| Mech::new(CKM_SHA512_HMAC), Key::Hmac),
    mac(|| Mech::new(CKM_AES_CMAC), Key::Aes128),
    mac(|| Mech::new(CKM_AES_CMAC), Key::Aes256),
    mac(|| Mech::new(CKM_DES3_CMAC), Key::Des3),
];

/// Every mechanism the signature tests use.
pub fn mechanisms() -> Vec<CK_MECHANISM_TYPE> {
    [RSA, EC_DSA_EDDSA, MACS]
        .iter()
        .flat_map(|cases| cases.iter().map(|c| (c.mech)().ty()))
        .collect()
}

/// Sign (two-call), verify, verify a corrupted signature; then the same
/// multi-part. A session of its own per case.
fn run(api: &mut Api, ring: &mut Keyring, slot: CK_SLOT_ID, c: &Signer) {
    let s = api.must_open_session(slot, RW);
    let mech = (c.mech)();
    let sk = ring.get(api, c.sign_key);
    let vk = ring.get(api, c.verify_key);
    api.sign_init(s, &mech, sk);
    let (_, sig) = api.sign(s, c.data, Out::Auto);
    api.verify_init(s, &mech, vk);
    api.verify(s, c.data, &sig);
    let mut bad = sig.clone();
    if let Some(b) = bad.first_mut() {
        *b ^= 0x80;
    }
    api.verify_init(s, &mech, vk);
    api.verify(s, c.data, &bad);

    let half = c.data.len() / 2;
    api.sign_init(s, &mech, sk);
    api.sign_update(s, &c.data[..half]);
    api.sign_update(s, &c.data[half..]);
    let (rv, multi) = api.sign_final(s, Out::Auto);
    if rv == CKR_OK {
        api.note(format!("multi-part signature equals single-part: {}", multi == sig));
    }
    api.verify_init(s, &mech, vk);
    api.verify_update(s, &c.data[..half]);
    api.verify_update(s, &c.data[half..]);
    api.verify_final(s, if multi.is_empty() { &sig } else { &multi });
    api.close_session(s);
}

fn run_all(cases: &[Signer]) {
    differential(|api| {
        let ready = setup::logged_in(api);
        let mut ring = Keyring::new(ready.session);
        for c in cases {
            run(api, &mut ring, ready.slot, c);
        }
        let used: Vec<CK_MECHANISM_TYPE> = cases.iter().map(|c| (c.mech)().ty()).collect();
        api.assert_exercised(&used, &[]);
    });
}

#[test]
fn rsa_signatures() {
    run_all(RSA);
}

#[test]
fn ecdsa_dsa_eddsa() {
    run_all(EC_DSA_EDDSA);
}

#[test]
fn macs() {
    run_all(MACS);
}

#[test]
fn recover_and_mismatches() {
    differential(|api| {
        let ready = setup::logged_in(api);
        let s = ready.session;
        let mut ring = Keyring::new(s);
        let rsa_private = ring.get(api, Key::RsaPrivate);
        let rsa_public = ring.get(api, Key::RsaPublic);
        let ec_private = ring.get(api, Key::EcPrivate);
        let aes = ring.get(api, Key::Aes128);
        api.sign_recover_init(s, &Mech::new(CKM_RSA_X_509), rsa_private);
        api.sign_recover(s, RAW_RSA, Out::Auto);
        api.verify_recover_init(s, &Mech::new(CKM_RSA_X_509), rsa_public);
        api.verify_recover(s, RAW_RSA, Out::Auto);
        // Wrong key types and parameters, each in a fresh session.
        let cases = [
            (Mech::new(CKM_ECDSA), rsa_private),
            (Mech::new(CKM_SHA256_RSA_PKCS), ec_private),
            (Mech::new(CKM_SHA256_HMAC), rsa_private),
            (Mech::new(CKM_AES_CMAC), rsa_public),
            (pss(CKM_SHA256_RSA_PKCS_PSS, CKM_SHA_1, CKG_MGF1_SHA1, 20), rsa_private),
            (Mech::new(CKM_SHA256_RSA_PKCS), aes),
        ];
        for (mech, key) in cases {
            let s = api.must_open_session(ready.slot, RW);
            api.sign_init(s, &mech, key);
            api.sign(s, HASH32, Out::Query);
            api.close_session(s);
        }
        // Sign with a public key, verify with a private key.
        api.sign_init(s, &Mech::new(CKM_SHA256_RSA_PKCS), rsa_public);
        api.verify_init(s, &Mech::new(CKM_SHA256_RSA_PKCS), rsa_private);
    });
}
