//! Key and key-pair generation, and domain-parameter generation, with every
//! generation mechanism SoftHSM lists. Generated values are random: the
//! transcripts compare CK_RVs, lengths and the deterministic attributes, and
//! each key is used on its own side (encrypt/decrypt, sign/verify, derive).

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Api, Out};
use hsmbridge_conformance::keys;
use hsmbridge_conformance::mechs::Mech;
use hsmbridge_conformance::oracle::differential;
use hsmbridge_conformance::setup;
use hsmbridge_conformance::template::Template;

const DATA: &[u8] = b"sixteen byte blk";

pub const SECRET_KEY_GEN: &[CK_MECHANISM_TYPE] = &[
    CKM_AES_KEY_GEN,
    CKM_DES_KEY_GEN,
    CKM_DES2_KEY_GEN,
    CKM_DES3_KEY_GEN,
    CKM_GENERIC_SECRET_KEY_GEN,
];
pub const KEY_PAIR_GEN: &[CK_MECHANISM_TYPE] = &[
    CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKM_EC_KEY_PAIR_GEN,
    CKM_EC_EDWARDS_KEY_PAIR_GEN,
    CKM_DSA_KEY_PAIR_GEN,
    CKM_DH_PKCS_KEY_PAIR_GEN,
];
pub const PARAMETER_GEN: &[CK_MECHANISM_TYPE] = &[CKM_DSA_PARAMETER_GEN, CKM_DH_PKCS_PARAMETER_GEN];

/// Attributes every key has.
const KEY_ATTRS: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_CLASS,
    CKA_KEY_TYPE,
    CKA_LOCAL,
    CKA_KEY_GEN_MECHANISM,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_LABEL,
];

fn secret_template(value_len: Option<CK_ULONG>) -> Template {
    let t = Template::new()
        .bool(CKA_TOKEN, false)
        .text(CKA_LABEL, "generated")
        .bool(CKA_ENCRYPT, true)
        .bool(CKA_DECRYPT, true)
        .bool(CKA_SIGN, true)
        .bool(CKA_VERIFY, true)
        .bool(CKA_EXTRACTABLE, true)
        .bool(CKA_SENSITIVE, false);
    match value_len {
        Some(n) => t.ulong(CKA_VALUE_LEN, n),
        None => t,
    }
}

/// Generates a secret key, reads what must agree, and round-trips a block.
fn secret_key(
    api: &mut Api,
    s: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_TYPE,
    len: Option<CK_ULONG>,
    cipher: Option<Mech>,
) {
    let (rv, key) = api.generate_key(s, &Mech::new(mech), &secret_template(len));
    if rv != CKR_OK {
        return;
    }
    api.attribute_values(s, key, KEY_ATTRS);
    api.attribute_values(
        s,
        key,
        &[
            CKA_VALUE_LEN,
            CKA_VALUE,
            CKA_SENSITIVE,
            CKA_ALWAYS_SENSITIVE,
            CKA_NEVER_EXTRACTABLE,
        ],
    );
    if let Some(cipher) = cipher {
        api.encrypt_init(s, &cipher, key);
        let (_, ct) = api.encrypt(s, DATA, Out::Auto);
        api.decrypt_init(s, &cipher, key);
        api.decrypt(s, &ct, Out::Auto);
    }
}

#[test]
fn secret_keys() {
    differential(|api| {
        let s = setup::logged_in(api).session;
        secret_key(api, s, CKM_AES_KEY_GEN, Some(16), Some(Mech::new(CKM_AES_ECB)));
        secret_key(api, s, CKM_AES_KEY_GEN, Some(32), Some(Mech::new(CKM_AES_ECB)));
        secret_key(api, s, CKM_AES_KEY_GEN, Some(17), None);
        secret_key(api, s, CKM_AES_KEY_GEN, None, None);
        secret_key(api, s, CKM_DES_KEY_GEN, None, Some(Mech::new(CKM_DES_ECB)));
        secret_key(api, s, CKM_DES2_KEY_GEN, None, Some(Mech::new(CKM_DES3_ECB)));
        secret_key(api, s, CKM_DES3_KEY_GEN, None, Some(Mech::new(CKM_DES3_ECB)));
        secret_key(api, s, CKM_GENERIC_SECRET_KEY_GEN, Some(64), None);
        secret_key(api, s, CKM_GENERIC_SECRET_KEY_GEN, None, None);
        // A generated HMAC key signs and verifies.
        let (_, k) = api.generate_key(s, &Mech::new(CKM_GENERIC_SECRET_KEY_GEN), &secret_template(Some(32)));
        api.sign_init(s, &Mech::new(CKM_SHA256_HMAC), k);
        let (_, mac) = api.sign(s, DATA, Out::Auto);
        api.verify_init(s, &Mech::new(CKM_SHA256_HMAC), k);
        api.verify(s, DATA, &mac);
        // Templates the mechanism contradicts.
        api.generate_key(
            s,
            &Mech::new(CKM_AES_KEY_GEN),
            &secret_template(Some(16)).ulong(CKA_KEY_TYPE, CKK_DES),
        );
        api.generate_key(
            s,
            &Mech::new(CKM_AES_KEY_GEN),
            &secret_template(Some(16)).ulong(CKA_CLASS, CKO_PUBLIC_KEY),
        );
        api.generate_key(s, &Mech::new(CKM_RSA_PKCS_KEY_PAIR_GEN), &secret_template(Some(16)));
        api.assert_exercised(SECRET_KEY_GEN, &[CKM_DES_KEY_GEN]);
    });
}

fn public_template() -> Template {
    Template::new()
        .bool(CKA_TOKEN, false)
        .text(CKA_LABEL, "pub")
        .bool(CKA_VERIFY, true)
        .bool(CKA_ENCRYPT, true)
}

fn private_template() -> Template {
    Template::new()
        .bool(CKA_TOKEN, false)
        .text(CKA_LABEL, "priv")
        .bool(CKA_PRIVATE, true)
        .bool(CKA_SIGN, true)
        .bool(CKA_DECRYPT, true)
        .bool(CKA_SENSITIVE, true)
}

/// Generates a pair, reads what must agree, signs on this side and verifies.
fn key_pair(
    api: &mut Api,
    s: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_TYPE,
    public: Template,
    private: Template,
    sign: Option<(Mech, &[u8])>,
    attrs: &[CK_ATTRIBUTE_TYPE],
) -> Option<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
    let (rv, pubk, privk) = api.generate_key_pair(s, &Mech::new(mech), &public, &private);
    if rv != CKR_OK {
        return None;
    }
    for k in [pubk, privk] {
        api.attribute_values(s, k, KEY_ATTRS);
        api.attribute_values(s, k, attrs);
    }
    if let Some((m, data)) = sign {
        api.sign_init(s, &m, privk);
        let (_, sig) = api.sign(s, data, Out::Auto);
        api.verify_init(s, &m, pubk);
        api.verify(s, data, &sig);
    }
    Some((pubk, privk))
}

#[test]
fn rsa_and_ec_key_pairs() {
    differential(|api| {
        let s = setup::logged_in(api).session;
        key_pair(
            api,
            s,
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            public_template()
                .ulong(CKA_MODULUS_BITS, 1024)
                .bytes(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
            private_template(),
            Some((Mech::new(CKM_SHA256_RSA_PKCS), DATA)),
            &[
                CKA_MODULUS_BITS,
                CKA_MODULUS,
                CKA_PUBLIC_EXPONENT,
                CKA_PRIVATE_EXPONENT,
                CKA_SENSITIVE,
            ],
        );
        let p256 = keys::unhex_const(keys::P256_PARAMS);
        key_pair(
            api,
            s,
            CKM_EC_KEY_PAIR_GEN,
            public_template().bytes(CKA_EC_PARAMS, &p256),
            private_template().bool(CKA_DERIVE, true),
            Some((Mech::new(CKM_ECDSA), &[7u8; 32])),
            &[CKA_EC_PARAMS, CKA_EC_POINT, CKA_VALUE],
        );
        let ed = keys::unhex_const(keys::ED25519_PARAMS);
        key_pair(
            api,
            s,
            CKM_EC_EDWARDS_KEY_PAIR_GEN,
            public_template().bytes(CKA_EC_PARAMS, &ed),
            private_template(),
            Some((Mech::new(CKM_EDDSA), DATA)),
            &[CKA_EC_PARAMS, CKA_EC_POINT, CKA_VALUE],
        );
        // Incomplete and inconsistent templates.
        api.generate_key_pair(
            s,
            &Mech::new(CKM_RSA_PKCS_KEY_PAIR_GEN),
            &public_template(),
            &private_template(),
        );
        api.generate_key_pair(
            s,
            &Mech::new(CKM_EC_KEY_PAIR_GEN),
            &public_template(),
            &private_template(),
        );
        api.generate_key_pair(
            s,
            &Mech::new(CKM_EC_KEY_PAIR_GEN),
            &public_template().bytes(CKA_EC_PARAMS, b"\x06\x03\x2a\x03\x04"),
            &private_template(),
        );
        api.generate_key_pair(
            s,
            &Mech::new(CKM_RSA_PKCS_KEY_PAIR_GEN),
            &public_template().ulong(CKA_MODULUS_BITS, 100),
            &private_template(),
        );
        api.assert_exercised(
            &[
                CKM_RSA_PKCS_KEY_PAIR_GEN,
                CKM_EC_KEY_PAIR_GEN,
                CKM_EC_EDWARDS_KEY_PAIR_GEN,
            ],
            &[],
        );
    });
}

#[test]
fn dsa_and_dh_key_pairs_and_parameters() {
    differential(|api| {
        let s = setup::logged_in(api).session;
        let domain_attrs = [
            CKA_CLASS,
            CKA_KEY_TYPE,
            CKA_PRIME,
            CKA_SUBPRIME,
            CKA_BASE,
            CKA_PRIME_BITS,
            CKA_LOCAL,
        ];
        // DSA: fixed domain parameters, then generated ones.
        key_pair(
            api,
            s,
            CKM_DSA_KEY_PAIR_GEN,
            public_template().with(keys::dsa_domain_template()),
            private_template(),
            Some((Mech::new(CKM_DSA_SHA256), DATA)),
            &[CKA_PRIME, CKA_SUBPRIME, CKA_BASE, CKA_VALUE],
        );
        let params = Template::new().bool(CKA_TOKEN, false).ulong(CKA_PRIME_BITS, 1024);
        let (rv, dsa_domain) = api.generate_key(s, &Mech::new(CKM_DSA_PARAMETER_GEN), &params);
        if rv == CKR_OK {
            let (_, values) = api.attribute_values(s, dsa_domain, &domain_attrs);
            if let [_, _, Some(p), Some(q), Some(g), ..] = values.as_slice() {
                let domain = Template::new()
                    .random_bytes(CKA_PRIME, p)
                    .random_bytes(CKA_SUBPRIME, q)
                    .random_bytes(CKA_BASE, g);
                key_pair(
                    api,
                    s,
                    CKM_DSA_KEY_PAIR_GEN,
                    public_template().with(domain),
                    private_template(),
                    Some((Mech::new(CKM_DSA), &[9u8; 20])),
                    &[CKA_VALUE],
                );
            }
        }
        // DH: fixed group, then generated parameters; the pair derives a secret.
        let pair = key_pair(
            api,
            s,
            CKM_DH_PKCS_KEY_PAIR_GEN,
            public_template().with(keys::dh_domain_template()),
            private_template().bool(CKA_DERIVE, true),
            None,
            &[CKA_PRIME, CKA_BASE, CKA_VALUE, CKA_VALUE_BITS],
        );
        if let Some((_, dh_private)) = pair {
            let peer = keys::unhex_const(keys::DH_PEER_PUBLIC);
            let secret = Template::new()
                .ulong(CKA_CLASS, CKO_SECRET_KEY)
                .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
                .bool(CKA_TOKEN, false)
                .bool(CKA_SENSITIVE, false)
                .bool(CKA_EXTRACTABLE, true);
            let (_, derived) = api.derive_key(s, &Mech::bytes(CKM_DH_PKCS_DERIVE, &peer), dh_private, &secret);
            api.attribute_values(s, derived, &[CKA_VALUE_LEN, CKA_VALUE]);
        }
        let params = Template::new().bool(CKA_TOKEN, false).ulong(CKA_PRIME_BITS, 512);
        let (rv, dh_domain) = api.generate_key(s, &Mech::new(CKM_DH_PKCS_PARAMETER_GEN), &params);
        if rv == CKR_OK {
            api.attribute_values(
                s,
                dh_domain,
                &[CKA_CLASS, CKA_KEY_TYPE, CKA_PRIME, CKA_BASE, CKA_PRIME_BITS, CKA_LOCAL],
            );
        }
        api.assert_exercised(&[CKM_DSA_KEY_PAIR_GEN, CKM_DH_PKCS_KEY_PAIR_GEN], &[]);
        api.assert_exercised(PARAMETER_GEN, &[]);
    });
}
