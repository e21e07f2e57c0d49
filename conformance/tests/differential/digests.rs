//! Message digests: single-part, multi-part, C_DigestKey, and the
//! dual-function calls (which SoftHSM does not support: same CK_RV).

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Out, RW};
use hsmbridge_conformance::keys::{Key, Keyring};
use hsmbridge_conformance::mechs::Mech;
use hsmbridge_conformance::oracle::differential;
use hsmbridge_conformance::setup;

const MESSAGE: &[u8] = b"The quick brown fox jumps over the lazy dog";

pub const DIGESTS: &[CK_MECHANISM_TYPE] = &[CKM_MD5, CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384, CKM_SHA512];

#[test]
fn digests() {
    differential(|api| {
        let ready = setup::logged_in(api);
        let mut ring = Keyring::new(ready.session);
        let secret = ring.get(api, Key::Hmac);
        let aes = ring.get(api, Key::Aes128);
        let rsa = ring.get(api, Key::RsaPrivate);
        for &m in DIGESTS {
            let s = api.must_open_session(ready.slot, RW);
            let mech = Mech::new(m);
            api.digest_init(s, &mech);
            api.digest(s, MESSAGE, Out::Auto);
            api.digest_init(s, &mech);
            api.digest(s, b"", Out::Auto);
            api.digest_init(s, &mech);
            api.digest_update(s, &MESSAGE[..10]);
            api.digest_update(s, b"");
            api.digest_update(s, &MESSAGE[10..]);
            api.digest_final(s, Out::Auto);
            // C_DigestKey mixes a secret key's value into the digest.
            api.digest_init(s, &mech);
            api.digest_update(s, MESSAGE);
            api.digest_key(s, secret);
            api.digest_final(s, Out::Auto);
            api.digest_init(s, &mech);
            api.digest_key(s, aes);
            api.digest_key(s, rsa);
            api.digest_final(s, Out::Auto);
            api.close_session(s);
        }
        api.assert_exercised(DIGESTS, &[]);
        // Mixing single-part after multi-part, and a non-digest mechanism.
        let s = ready.session;
        api.digest_init(s, &Mech::new(CKM_SHA256));
        api.digest_update(s, MESSAGE);
        api.digest(s, MESSAGE, Out::Auto);
        api.digest_final(s, Out::Auto);
        api.digest_init(s, &Mech::new(CKM_AES_ECB));
    });
}

#[test]
fn dual_function_operations() {
    differential(|api| {
        let ready = setup::logged_in(api);
        let s = ready.session;
        let mut ring = Keyring::new(s);
        let aes = ring.get(api, Key::Aes128);
        let hmac = ring.get(api, Key::Hmac);
        let ecb = Mech::new(CKM_AES_ECB);
        api.digest_init(s, &Mech::new(CKM_SHA256));
        api.encrypt_init(s, &ecb, aes);
        api.digest_encrypt_update(s, &MESSAGE[..32], Out::Auto);
        api.sign_init(s, &Mech::new(CKM_SHA256_HMAC), hmac);
        api.sign_encrypt_update(s, &MESSAGE[..32], Out::Auto);
        let s2 = api.must_open_session(ready.slot, RW);
        api.decrypt_init(s2, &ecb, aes);
        api.digest_init(s2, &Mech::new(CKM_SHA256));
        api.decrypt_digest_update(s2, &MESSAGE[..32], Out::Auto);
        api.verify_init(s2, &Mech::new(CKM_SHA256_HMAC), hmac);
        api.decrypt_verify_update(s2, &MESSAGE[..32], Out::Auto);
    });
}
