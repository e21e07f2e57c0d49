//! Encryption and decryption with every cipher mechanism SoftHSM lists,
//! single-part and multi-part, with fixed keys so ciphertexts compare byte
//! for byte (RSA PKCS#1 v1.5 and OAEP pad randomly: compared by length,
//! checked by decrypting on the same side).

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Api, Out, RW};
use hsmbridge_conformance::keys::{Key, Keyring};
use hsmbridge_conformance::mechs::Mech;
use hsmbridge_conformance::oracle::differential;
use hsmbridge_conformance::setup;

const IV16: [u8; 16] = *b"initial vector16";
const IV8: [u8; 8] = *b"ivector8";
const AAD: &[u8] = b"additional authenticated data";
/// 48 bytes: a multiple of both block sizes.
const BLOCKS: &[u8] = b"exactly forty-eight bytes of block-aligned text.";
/// 37 bytes: needs padding or a stream mode.
const ODD: &[u8] = b"thirty-seven bytes of unaligned input";

/// One cipher case: mechanism, encryption key, decryption key, plaintext.
pub struct Cipher {
    pub mech: fn() -> Mech,
    pub encrypt_key: Key,
    pub decrypt_key: Key,
    pub data: &'static [u8],
    /// Also run Update/Final (symmetric ciphers).
    pub multi_part: bool,
}

const fn sym(mech: fn() -> Mech, key: Key, data: &'static [u8]) -> Cipher {
    Cipher {
        mech,
        encrypt_key: key,
        decrypt_key: key,
        data,
        multi_part: true,
    }
}

const fn rsa(mech: fn() -> Mech, data: &'static [u8]) -> Cipher {
    Cipher {
        mech,
        encrypt_key: Key::RsaPublic,
        decrypt_key: Key::RsaPrivate,
        data,
        multi_part: false,
    }
}

/// A raw RSA block: smaller than the modulus (leading zero byte).
const RAW_RSA: &[u8] = &{
    let mut block = [0x5au8; 256];
    block[0] = 0;
    block
};

pub const AES: &[Cipher] = &[
    sym(|| Mech::new(CKM_AES_ECB), Key::Aes128, BLOCKS),
    sym(|| Mech::new(CKM_AES_ECB), Key::Aes256, BLOCKS),
    sym(|| Mech::bytes(CKM_AES_CBC, &IV16), Key::Aes128, BLOCKS),
    sym(|| Mech::bytes(CKM_AES_CBC_PAD, &IV16), Key::Aes256, ODD),
    sym(|| Mech::bytes(CKM_AES_CBC_PAD, &IV16), Key::Aes128, BLOCKS),
    sym(|| Mech::ctr(128, IV16), Key::Aes128, ODD),
    sym(|| Mech::ctr(32, [0xff; 16]), Key::Aes256, ODD),
    sym(|| Mech::gcm(&IV16[..12], AAD, 128), Key::Aes128, ODD),
    sym(|| Mech::gcm(&IV16, b"", 96), Key::Aes256, BLOCKS),
];

pub const DES: &[Cipher] = &[
    sym(|| Mech::new(CKM_DES_ECB), Key::Des, BLOCKS),
    sym(|| Mech::bytes(CKM_DES_CBC, &IV8), Key::Des, BLOCKS),
    sym(|| Mech::bytes(CKM_DES_CBC_PAD, &IV8), Key::Des, ODD),
    sym(|| Mech::new(CKM_DES3_ECB), Key::Des3, BLOCKS),
    sym(|| Mech::new(CKM_DES3_ECB), Key::Des2, BLOCKS),
    sym(|| Mech::bytes(CKM_DES3_CBC, &IV8), Key::Des3, BLOCKS),
    sym(|| Mech::bytes(CKM_DES3_CBC_PAD, &IV8), Key::Des3, ODD),
];

pub const RSA: &[Cipher] = &[
    rsa(|| Mech::new(CKM_RSA_PKCS), ODD),
    rsa(|| Mech::new(CKM_RSA_X_509), RAW_RSA),
    rsa(|| Mech::oaep(CKM_SHA_1, CKG_MGF1_SHA1, b""), ODD),
    rsa(|| Mech::oaep(CKM_SHA_1, CKG_MGF1_SHA1, b"label"), ODD),
    rsa(|| Mech::oaep(CKM_SHA256, CKG_MGF1_SHA256, b""), ODD),
    rsa(|| Mech::oaep(CKM_SHA512, CKG_MGF1_SHA512, b""), ODD),
];

/// Every mechanism the cipher tests use.
pub fn mechanisms() -> Vec<CK_MECHANISM_TYPE> {
    [AES, DES, RSA]
        .iter()
        .flat_map(|cases| cases.iter().map(|c| (c.mech)().ty()))
        .collect()
}

/// Single-part: two-call encryption, decryption of the result; then the
/// same with Update/Final in uneven chunks. A session of its own, so a
/// failure leaves no active operation behind for the next case.
fn run(api: &mut Api, ring: &mut Keyring, slot: CK_SLOT_ID, c: &Cipher) {
    let s = api.must_open_session(slot, RW);
    run_in(api, ring, s, c);
    api.close_session(s);
}

fn run_in(api: &mut Api, ring: &mut Keyring, s: CK_SESSION_HANDLE, c: &Cipher) {
    let mech = (c.mech)();
    let ek = ring.get(api, c.encrypt_key);
    let dk = ring.get(api, c.decrypt_key);
    api.encrypt_init(s, &mech, ek);
    let (_, ct) = api.encrypt(s, c.data, Out::Auto);
    api.decrypt_init(s, &mech, dk);
    api.decrypt(s, &ct, Out::Auto);
    if !c.multi_part {
        api.encrypt_init(s, &mech, ek);
        api.encrypt_update(s, c.data, Out::Auto);
        return;
    }
    let split = c.data.len() / 3;
    api.encrypt_init(s, &mech, ek);
    let mut multi = Vec::new();
    for chunk in [&c.data[..split], &c.data[split..]] {
        multi.extend(api.encrypt_update(s, chunk, Out::Auto).1);
    }
    multi.extend(api.encrypt_final(s, Out::Auto).1);
    api.note(format!("multi-part ciphertext equals single-part: {}", multi == ct));
    api.decrypt_init(s, &mech, dk);
    let cut = (split + 1).min(multi.len());
    for chunk in [&multi[..cut], &multi[cut..]] {
        api.decrypt_update(s, chunk, Out::Auto);
    }
    api.decrypt_final(s, Out::Auto);
}

/// SoftHSM lists single DES but its OpenSSL 3 backend (no legacy
/// provider) refuses it with CKR_MECHANISM_INVALID at C_EncryptInit; the
/// calls are still compared.
pub const REFUSED_BY_OPENSSL3: &[CK_MECHANISM_TYPE] = &[CKM_DES_ECB, CKM_DES_CBC, CKM_DES_CBC_PAD, CKM_DES_KEY_GEN];

fn run_all(cases: &[Cipher]) {
    differential(|api| {
        let ready = setup::logged_in(api);
        let mut ring = Keyring::new(ready.session);
        for c in cases {
            run(api, &mut ring, ready.slot, c);
        }
        let used: Vec<CK_MECHANISM_TYPE> = cases.iter().map(|c| (c.mech)().ty()).collect();
        api.assert_exercised(&used, REFUSED_BY_OPENSSL3);
    });
}

#[test]
fn aes() {
    run_all(AES);
}

#[test]
fn des() {
    run_all(DES);
}

#[test]
fn rsa_encryption() {
    run_all(RSA);
}

#[test]
fn gcm_tag_check() {
    differential(|api| {
        let ready = setup::logged_in(api);
        let s = ready.session;
        let mut ring = Keyring::new(s);
        let key = ring.get(api, Key::Aes128);
        let gcm = Mech::gcm(&IV16[..12], AAD, 128);
        api.encrypt_init(s, &gcm, key);
        let (_, mut ct) = api.encrypt(s, ODD, Out::Auto);
        if let Some(last) = ct.last_mut() {
            *last ^= 1;
        }
        api.decrypt_init(s, &gcm, key);
        api.decrypt(s, &ct, Out::Auto);
        // Parameters SoftHSM must refuse, each in a fresh session.
        let rsa_public = ring.get(api, Key::RsaPublic);
        let bad = [
            (Mech::gcm(&IV16[..12], AAD, 129), key),
            (Mech::gcm(b"", AAD, 128), key),
            (Mech::bytes(CKM_AES_CBC, &IV8), key),
            (Mech::ctr(0, IV16), key),
            (Mech::ctr(129, IV16), key),
            (Mech::oaep(CKM_SHA256, CKG_MGF1_SHA1, b""), rsa_public),
            (Mech::new(CKM_AES_ECB), rsa_public),
        ];
        for (mech, k) in bad {
            let s = api.must_open_session(ready.slot, RW);
            api.encrypt_init(s, &mech, k);
            api.encrypt(s, ODD, Out::Query);
            api.close_session(s);
        }
    });
}
