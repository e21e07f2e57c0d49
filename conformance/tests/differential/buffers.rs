//! Output buffers (DESIGN.md point 4): NULL buffer = length query; a short
//! non-NULL buffer = CKR_BUFFER_TOO_SMALL with the length set and the
//! operation still active; any other result of a single-part or final call
//! ends the operation.

use cryptoki_sys::*;
use hsmbridge_conformance::calls::Out;
use hsmbridge_conformance::keys::{Key, Keyring};
use hsmbridge_conformance::mechs::Mech;
use hsmbridge_conformance::oracle::differential;
use hsmbridge_conformance::setup;

const DATA: &[u8] = b"forty-one bytes of plaintext for padding.";
const IV: [u8; 16] = *b"0123456789abcdef";

#[test]
fn single_part_outputs() {
    differential(|api| {
        let s = setup::logged_in(api).session;
        let mut ring = Keyring::new(s);
        let aes = ring.get(api, Key::Aes128);
        let hmac = ring.get(api, Key::Hmac);
        let cbc_pad = Mech::bytes(CKM_AES_CBC_PAD, &IV);

        api.encrypt(s, DATA, Out::Query);
        api.encrypt_init(s, &cbc_pad, aes);
        api.encrypt(s, DATA, Out::Query);
        api.encrypt(s, DATA, Out::Size(8));
        api.encrypt(s, DATA, Out::Size(0));
        let (_, ct) = api.encrypt(s, DATA, Out::Size(48));
        api.encrypt(s, DATA, Out::Query);
        // A bigger buffer than needed gets the true length back.
        api.encrypt_init(s, &cbc_pad, aes);
        api.encrypt(s, DATA, Out::Size(100));

        api.decrypt_init(s, &cbc_pad, aes);
        api.decrypt(s, &ct, Out::Query);
        api.decrypt(s, &ct, Out::Size(16));
        api.decrypt(s, &ct, Out::Size(48));
        api.decrypt(s, &ct, Out::Size(48));

        api.sign_init(s, &Mech::new(CKM_SHA256_HMAC), hmac);
        api.sign(s, DATA, Out::Query);
        api.sign(s, DATA, Out::Size(31));
        api.sign(s, DATA, Out::Size(32));
        api.sign(s, DATA, Out::Size(32));

        api.digest_init(s, &Mech::new(CKM_SHA512));
        api.digest(s, DATA, Out::Query);
        api.digest(s, DATA, Out::Size(63));
        api.digest(s, DATA, Out::Size(64));
        api.digest(s, DATA, Out::Size(64));
    });
}

#[test]
fn multi_part_outputs() {
    differential(|api| {
        let s = setup::logged_in(api).session;
        let mut ring = Keyring::new(s);
        let aes = ring.get(api, Key::Aes128);
        let hmac = ring.get(api, Key::Hmac);
        let cbc_pad = Mech::bytes(CKM_AES_CBC_PAD, &IV);

        api.encrypt_init(s, &cbc_pad, aes);
        api.encrypt_update(s, &DATA[..20], Out::Query);
        api.encrypt_update(s, &DATA[..20], Out::Size(4));
        api.encrypt_update(s, &DATA[..20], Out::Size(16));
        api.encrypt_update(s, &DATA[20..], Out::Auto);
        api.encrypt_final(s, Out::Query);
        api.encrypt_final(s, Out::Size(1));
        api.encrypt_final(s, Out::Size(16));
        api.encrypt_final(s, Out::Size(16));

        api.sign_init(s, &Mech::new(CKM_SHA384_HMAC), hmac);
        api.sign_update(s, DATA);
        api.sign_final(s, Out::Query);
        api.sign_final(s, Out::Size(47));
        api.sign_final(s, Out::Size(48));
        api.sign_final(s, Out::Size(48));

        api.digest_init(s, &Mech::new(CKM_SHA_1));
        api.digest_update(s, DATA);
        api.digest_final(s, Out::Query);
        api.digest_final(s, Out::Size(19));
        api.digest_final(s, Out::Size(20));
        api.digest_final(s, Out::Size(20));
    });
}

#[test]
fn errors_end_operations() {
    differential(|api| {
        let s = setup::logged_in(api).session;
        let mut ring = Keyring::new(s);
        let aes = ring.get(api, Key::Aes128);
        let hmac = ring.get(api, Key::Hmac);
        let rsa_private = ring.get(api, Key::RsaPrivate);

        // Wrong input length for a block mode ends the operation.
        api.encrypt_init(s, &Mech::bytes(CKM_AES_CBC, &IV), aes);
        api.encrypt(s, &DATA[..15], Out::Size(64));
        api.encrypt(s, &DATA[..16], Out::Size(64));
        api.decrypt_init(s, &Mech::bytes(CKM_AES_CBC_PAD, &IV), aes);
        api.decrypt(s, &DATA[..17], Out::Size(64));
        api.decrypt(s, &DATA[..16], Out::Size(64));
        // Bad padding.
        api.decrypt_init(s, &Mech::bytes(CKM_AES_CBC_PAD, &IV), aes);
        api.decrypt(s, &DATA[..32], Out::Size(64));
        api.decrypt(s, &DATA[..32], Out::Size(64));
        // A wrong signature ends verification; a wrong length too.
        api.verify_init(s, &Mech::new(CKM_SHA256_HMAC), hmac);
        api.verify(s, DATA, &[0u8; 32]);
        api.verify(s, DATA, &[0u8; 32]);
        api.verify_init(s, &Mech::new(CKM_SHA256_HMAC), hmac);
        api.verify(s, DATA, &[0u8; 7]);
        api.verify_update(s, DATA);
        api.verify_init(s, &Mech::new(CKM_SHA256_HMAC), hmac);
        api.verify_update(s, DATA);
        api.verify_final(s, &[0u8; 32]);
        api.verify_final(s, &[0u8; 32]);
        // RSA: too long input, then the short-buffer path.
        api.decrypt_init(s, &Mech::new(CKM_RSA_PKCS), rsa_private);
        api.decrypt(s, &[1u8; 300], Out::Size(256));
        api.decrypt(s, &[1u8; 256], Out::Size(256));
        api.sign_init(s, &Mech::new(CKM_RSA_PKCS), rsa_private);
        api.sign(s, &DATA[..32], Out::Size(255));
        api.sign(s, &DATA[..32], Out::Size(256));
        api.sign(s, &[0u8; 250], Out::Size(256));
        api.sign(s, &DATA[..32], Out::Size(256));
        // Starting a second operation of a kind while one is active.
        api.encrypt_init(s, &Mech::new(CKM_AES_ECB), aes);
        api.encrypt_init(s, &Mech::new(CKM_AES_ECB), aes);
        api.encrypt_update(s, &DATA[..16], Out::Auto);
        api.encrypt(s, &DATA[..16], Out::Size(16));
        api.encrypt_final(s, Out::Auto);
    });
}

#[test]
fn wrap_outputs() {
    differential(|api| {
        let s = setup::logged_in(api).session;
        let mut ring = Keyring::new(s);
        let kek = ring.get(api, Key::Aes128);
        let target = ring.get(api, Key::Aes256);
        let m = Mech::new(CKM_AES_KEY_WRAP);
        api.wrap_key(s, &m, kek, target, Out::Query);
        api.wrap_key(s, &m, kek, target, Out::Size(39));
        api.wrap_key(s, &m, kek, target, Out::Size(0));
        api.wrap_key(s, &m, kek, target, Out::Size(40));
        api.wrap_key(s, &m, kek, target, Out::Size(64));
    });
}
