//! Fixed key material, imported with C_CreateObject so that deterministic
//! mechanisms give byte-identical outputs on every module.

use cryptoki_sys::*;

use crate::names::unhex;
use crate::template::Template;

pub const AES128: &str = "000102030405060708090a0b0c0d0e0f";
pub const AES256: &str = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
/// Odd parity in every byte, as DES keys have.
pub const DES: &str = "0123456789abcdef";
pub const DES2: &str = "0123456789abcdef23456789abcdef01";
pub const DES3: &str = "0123456789abcdef23456789abcdef01456789abcdef0123";
/// Long enough for every HMAC SoftHSM offers (SHA512-HMAC wants 64 bytes).
pub const HMAC: &str = concat!(
    "4a656665204a656665204a656665204a656665204a656665204a656665204a65",
    "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
);

/// DER OID of NIST P-256 (prime256v1), the CKA_EC_PARAMS of the EC keys.
pub const P256_PARAMS: &str = "06082a8648ce3d030107";
/// DER OID 1.3.101.112 (id-Ed25519).
pub const ED25519_PARAMS: &str = "06032b6570";

// Generated once with Python's `cryptography`; any valid key works.
pub const RSA_MODULUS: &str = concat!(
    "c3b288a607884f6f1810de9429c8025689af68b9357daa8aacc7621bf49ee1a03df590e59a2481f8cc2e726ae8e07acb",
    "874091a6399490bf9dd37a61a8e65a31dc8842db9ff1fa79f45e72daff8d3d5c446bac8f319c26f2f75ecbfc7ec64bda",
    "5f921e3f743e96ab8cca799518ea2a1ac8b0e30bc4d65da05b30ef5426c8b40749802d1b76722da3532d15489d14236a",
    "b7540ae87e878488dbc39e649d5d4423c2226e5c43c4efd00304c6037775214b7a562b995e7e2770181f098d3f9ea77e",
    "27cf852a0421e16856619e633101df9673e9f744f8ccb11e0e277d2a8de58c03f79129efe801f7aada9c1d42b3c510f7",
    "8f23f5cfa3b326d605c998c7050598ab",
);
pub const RSA_PUBLIC_EXPONENT: &str = "010001";
pub const RSA_PRIVATE_EXPONENT: &str = concat!(
    "27b5ca21baa48fcdd0b9d7988413e8598c0dd277c6a16de23ee62483dcb302c0a3e1f919861a435f6b7b3f4f6f5ae1bf",
    "fbfd7fb095bd8e53bba066947b93e698789213d302153588daabf1ad7baebad546b2fcac7fda1a53321c03d3841c13d7",
    "478e5c61eee2266bc02173e36bcf5464e3f574d4f607b3aeeee232a6464a72b12ec9007a32830181ab70022813bd9710",
    "525dfc9670295f63eb3469c1313ad29537294ba23f8273e940aee04623d3670d25631b2869e56edde795f407584d1855",
    "fa08036be6f6e3bd840e92c930191f7d3b91e247545b5c99d3f4221d2fef91fd07bb4c7fa774d81ef460399ea7d278d1",
    "406bf32ffd21c6c3394b2de4eccb91f5",
);
pub const RSA_PRIME_1: &str = concat!(
    "f05c0e62492abf8a279e45a0fc96d2e5e137f74c5e63d0aa69eb39ed492fdc62b6ee9a3c6a524c54259625371a510919",
    "94b972d063f87a4ce918efadc178988b341b5eb91940abcf15d29d53e67a059d53e025169afa05165f0e4a610e3b973e",
    "72ed53929894aa100b23221f958f83e0eaeb03903b681cdd81930eb4e46c466d",
);
pub const RSA_PRIME_2: &str = concat!(
    "d06e7d0bc2c5db23622d5859768cae162d69d6ca3e93ebd2ebec9b250157d3b09208025f5588048059358369943c08dc",
    "723135444692ca52f1cf8637b0f601ccb933c7ceeb3af0cf3e57d5f8f8ffec6877bb171a492c5e9a08844bcbf3bf70e0",
    "51e6467aa608b808a98bc9e33a374576a35a307ea371b487419be0fe559acc77",
);
pub const RSA_EXPONENT_1: &str = concat!(
    "1872a49be6a94c7636f5684ba9a585aa10306b1cff74d3a2a1c7654af768c0d7e1977f64a9c3d933ade709be03153f01",
    "b518efceb67c6da429097a478828460bd2aefe0181ca0c2fb21e8c161e9946bcebed1e98a006d241a64583d73f655c4a",
    "e3d1b3f073489bcba9f656e0338c3773c731445985515fae4021bf1b3328b839",
);
pub const RSA_EXPONENT_2: &str = concat!(
    "441c56f088ed6ef6d9164850b3d4b4eeba5863c02342e34541a347ef87c8d37c57bc164a6100d9b7b76f2d4a4b0e7336",
    "d67a0e160999de53cc812c32f6b8ed4da117b2ab8362f75e41d9222b01f35fa5a3ba978a176f505ab57dc5e717f7ef42",
    "de8089777ada4e89461e5012d8eb46dfc5f1aaf73721e9046a042e39ee6f6f71",
);
pub const RSA_COEFFICIENT: &str = concat!(
    "1f6f74de2310b49d8814f2388b437e4d8fe1abfc302d6694c3b69ddc2319f64b36a8c8f01278db8145cd538cd7f4cc11",
    "90f0aefd913bad70d713fe4586e638b5e84fd6a9eb7b3cbbea9cb800940cfbb31be0b36459d907b9e655c2e81f216a0d",
    "5b547af6b3ce8a2f71d57abf69fb17cde41c0771cfbb1f60f25a4be8327b34a7",
);
pub const EC_P256_PRIVATE: &str = "abb8b58df2990606aa20a8cc64c5ac877d24437f0e64b39584287e0cb27eb98e";
pub const EC_P256_POINT: &str = concat!(
    "0478d3d711ff5e06866604a116d52254cd9fcfc478422d0a75c28d3904882aafd922223012118cbd9173470bfffeb0e0",
    "225936ef03aba224844efb699eaebc9a78",
);
pub const EC_P256_PEER_POINT: &str = concat!(
    "0423f79ffe2e8121d4c18224ca8a74e13905bfd1262200456235fc1972fe40ee0667153042f71be95e37417f69ce6877",
    "c921859286edf4fa5ec63784402bfa8789",
);
pub const ED25519_SEED: &str = "55423a791c4c353397f29f33697a99c50ff1a269a4b2e9e40e58c2c4c65ceda4";
pub const ED25519_PUBLIC: &str = "adae4fc9d8755d2c01772c8b87d614c115257a30e8fec2e6408245e0ee4510bc";
pub const DSA_PRIME: &str = concat!(
    "a8251dd4d7d6bbceb5ebde7cebfd27b8318316eb113737e88016c2a3ba1ce5877d9ab14faf62872b619731506c73a990",
    "e820f8f1d8137bd63e11d9a9dc98fd586614daa3631fbbaf66d6bbf2039f98e389ad2ed21350d4fb767fbd684cf6489b",
    "7dca7df5f89c14088c2b6fc21831f2fc9efc07e15778953f5b4a7b18e973ac1b",
);
pub const DSA_SUBPRIME: &str = "f3691236b601bff90a945919887f3b0785553461";
pub const DSA_BASE: &str = concat!(
    "5ede1f0d697f44b6612a892499318d77772f503e445aff5db5678f30afd6f4e019bd0c12b662574a455da836516da705",
    "710c4e4241db487c4bd2dbcf9942000d3f1e37427443ffd7c1c03a8f5ce92f9e028250ebb8549850e3cf4a96b6555d31",
    "ad605243b012edbf06215bec2a0ae783421eacb8d36b1e0e0cb6f3fcc78f7432",
);
pub const DSA_PRIVATE: &str = "77096bd6f6706cff641e9d46ec1a2b46b058519c";
pub const DSA_PUBLIC: &str = concat!(
    "2a41bad7108d335ff28e3b0c269cfdea6cc952014a6fd54e4f05b7d7880a87d82dadf9a60775baf60ba978658bb0bb47",
    "2335cb6e546881ef7032af7145799fea4adde901fe173b5db1c73a7e0ba2d919eb5e92011c1dee9446e5465c3cbfa5e5",
    "a9baea9959121d6e0313dec1f74aca7936df5170ae57e584bddbddaa92b4b7b4",
);
pub const DH_PRIME: &str = concat!(
    "ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74020bbea63b139b22514a08798e3404dd",
    "ef9519b3cd3a431b302b0a6df25f14374fe1356d6d51c245e485b576625e7ec6f44c42e9a63a3620ffffffffffffffff",
);
pub const DH_BASE: &str = "02";
pub const DH_PRIVATE: &str = "7df0520166a5bdf8b1f958beed982d2599509adab789d86a2f02f57b941c2332";
pub const DH_PUBLIC: &str = concat!(
    "6d2a4afcbfa80c146a0024430058decdd6006f7c146c6dbd6a47af3078a05942f5821facc6861e815c429847f36a4a84",
    "35213b83af7a34a71ec415d41e576d1891596e0128fdc05ea7211bdc5dd0a525db249b014d09b6371c755e6e9ab7665b",
);
pub const DH_PEER_PUBLIC: &str = concat!(
    "1d742b79409426b08a91b9ee4a1cc2e60670ed0f86c7a0d50aeedcf6c8c18e7ed9430e873398876986318632f965ceb8",
    "f8e80a1c9fb6e72ecb2d7706913060bffc3186b9cb70279600b9ef5f8f5de11ba3e2b379371f985fc4b5e01912cc9b59",
);
pub const DH_SHARED_SECRET: &str = concat!(
    "9409052fe3ee9f0d357c518bf47e4b27ce0929e8829eb11826bad1c59df5f4653cb2f571e5c512f990607579bb9d5ed5",
    "9b86d9278ca6eb566403630f35965be6ff3ca5236bf62b9b4f5bd1ddb034cf558239b68de07533f7294e264c9d108897",
);

/// Common attributes of a session key object.
fn key(class: CK_OBJECT_CLASS, key_type: CK_KEY_TYPE, label: &str) -> Template {
    Template::new()
        .ulong(CKA_CLASS, class)
        .ulong(CKA_KEY_TYPE, key_type)
        .bool(CKA_TOKEN, false)
        .text(CKA_LABEL, label)
}

/// A secret key usable for everything, readable (not sensitive, extractable).
pub fn secret(key_type: CK_KEY_TYPE, value_hex: &str, label: &str) -> Template {
    key(CKO_SECRET_KEY, key_type, label)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true)
        .bool(CKA_ENCRYPT, true)
        .bool(CKA_DECRYPT, true)
        .bool(CKA_SIGN, true)
        .bool(CKA_VERIFY, true)
        .bool(CKA_WRAP, true)
        .bool(CKA_UNWRAP, true)
        .bool(CKA_DERIVE, true)
        .bytes(CKA_VALUE, &unhex(value_hex))
}

fn private(key_type: CK_KEY_TYPE, label: &str) -> Template {
    key(CKO_PRIVATE_KEY, key_type, label)
        .bool(CKA_PRIVATE, false)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true)
        .bool(CKA_SIGN, true)
}

fn public(key_type: CK_KEY_TYPE, label: &str) -> Template {
    key(CKO_PUBLIC_KEY, key_type, label).bool(CKA_VERIFY, true)
}

pub fn rsa_private() -> Template {
    private(CKK_RSA, "rsa")
        .bool(CKA_DECRYPT, true)
        .bool(CKA_UNWRAP, true)
        .bytes(CKA_MODULUS, &unhex(RSA_MODULUS))
        .bytes(CKA_PUBLIC_EXPONENT, &unhex(RSA_PUBLIC_EXPONENT))
        .bytes(CKA_PRIVATE_EXPONENT, &unhex(RSA_PRIVATE_EXPONENT))
        .bytes(CKA_PRIME_1, &unhex(RSA_PRIME_1))
        .bytes(CKA_PRIME_2, &unhex(RSA_PRIME_2))
        .bytes(CKA_EXPONENT_1, &unhex(RSA_EXPONENT_1))
        .bytes(CKA_EXPONENT_2, &unhex(RSA_EXPONENT_2))
        .bytes(CKA_COEFFICIENT, &unhex(RSA_COEFFICIENT))
}

pub fn rsa_public() -> Template {
    public(CKK_RSA, "rsa")
        .bool(CKA_ENCRYPT, true)
        .bool(CKA_WRAP, true)
        .bytes(CKA_MODULUS, &unhex(RSA_MODULUS))
        .bytes(CKA_PUBLIC_EXPONENT, &unhex(RSA_PUBLIC_EXPONENT))
}

/// DER OCTET STRING around `point` (the encoding of CKA_EC_POINT).
pub fn der_octet_string(point: &[u8]) -> Vec<u8> {
    assert!(point.len() < 128, "short-form DER length only");
    let mut der = vec![0x04, point.len() as u8];
    der.extend_from_slice(point);
    der
}

pub fn ec_private() -> Template {
    private(CKK_EC, "ec")
        .bool(CKA_DERIVE, true)
        .bytes(CKA_EC_PARAMS, &unhex(P256_PARAMS))
        .bytes(CKA_VALUE, &unhex(EC_P256_PRIVATE))
}

pub fn ec_public() -> Template {
    public(CKK_EC, "ec")
        .bytes(CKA_EC_PARAMS, &unhex(P256_PARAMS))
        .bytes(CKA_EC_POINT, &der_octet_string(&unhex(EC_P256_POINT)))
}

pub fn ed25519_private() -> Template {
    private(CKK_EC_EDWARDS, "ed25519")
        .bytes(CKA_EC_PARAMS, &unhex(ED25519_PARAMS))
        .bytes(CKA_VALUE, &unhex(ED25519_SEED))
}

pub fn ed25519_public() -> Template {
    public(CKK_EC_EDWARDS, "ed25519")
        .bytes(CKA_EC_PARAMS, &unhex(ED25519_PARAMS))
        .bytes(CKA_EC_POINT, &der_octet_string(&unhex(ED25519_PUBLIC)))
}

fn dsa_domain(t: Template) -> Template {
    t.bytes(CKA_PRIME, &unhex(DSA_PRIME))
        .bytes(CKA_SUBPRIME, &unhex(DSA_SUBPRIME))
        .bytes(CKA_BASE, &unhex(DSA_BASE))
}

pub fn dsa_private() -> Template {
    dsa_domain(private(CKK_DSA, "dsa")).bytes(CKA_VALUE, &unhex(DSA_PRIVATE))
}

pub fn dsa_public() -> Template {
    dsa_domain(public(CKK_DSA, "dsa")).bytes(CKA_VALUE, &unhex(DSA_PUBLIC))
}

/// CKO_DOMAIN_PARAMETERS for DSA (input to C_GenerateKeyPair templates).
pub fn dsa_domain_template() -> Template {
    dsa_domain(Template::new())
}

fn dh_domain(t: Template) -> Template {
    t.bytes(CKA_PRIME, &unhex(DH_PRIME)).bytes(CKA_BASE, &unhex(DH_BASE))
}

pub fn dh_private() -> Template {
    dh_domain(
        key(CKO_PRIVATE_KEY, CKK_DH, "dh")
            .bool(CKA_PRIVATE, false)
            .bool(CKA_DERIVE, true),
    )
    .bytes(CKA_VALUE, &unhex(DH_PRIVATE))
}

pub fn dh_domain_template() -> Template {
    dh_domain(Template::new())
}

/// The fixed keys, by name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Key {
    Aes128,
    Aes256,
    Des,
    Des2,
    Des3,
    Hmac,
    RsaPrivate,
    RsaPublic,
    EcPrivate,
    EcPublic,
    Ed25519Private,
    Ed25519Public,
    DsaPrivate,
    DsaPublic,
    DhPrivate,
}

impl Key {
    pub fn template(self) -> Template {
        match self {
            Key::Aes128 => secret(CKK_AES, AES128, "aes128"),
            Key::Aes256 => secret(CKK_AES, AES256, "aes256"),
            Key::Des => secret(CKK_DES, DES, "des"),
            Key::Des2 => secret(CKK_DES2, DES2, "des2"),
            Key::Des3 => secret(CKK_DES3, DES3, "des3"),
            Key::Hmac => secret(CKK_GENERIC_SECRET, HMAC, "hmac"),
            Key::RsaPrivate => rsa_private(),
            Key::RsaPublic => rsa_public(),
            Key::EcPrivate => ec_private(),
            Key::EcPublic => ec_public(),
            Key::Ed25519Private => ed25519_private(),
            Key::Ed25519Public => ed25519_public(),
            Key::DsaPrivate => dsa_private(),
            Key::DsaPublic => dsa_public(),
            Key::DhPrivate => dh_private(),
        }
    }
}

/// Imports fixed keys into a session on first use.
pub struct Keyring {
    session: CK_SESSION_HANDLE,
    handles: std::collections::HashMap<Key, CK_OBJECT_HANDLE>,
}

impl Keyring {
    pub fn new(session: CK_SESSION_HANDLE) -> Self {
        Keyring {
            session,
            handles: Default::default(),
        }
    }

    /// The handle of `key`, created with C_CreateObject the first time.
    pub fn get(&mut self, api: &mut crate::calls::Api, key: Key) -> CK_OBJECT_HANDLE {
        if let Some(h) = self.handles.get(&key) {
            return *h;
        }
        let h = api.must_create(self.session, &key.template());
        self.handles.insert(key, h);
        h
    }
}

/// Bytes of one of the hex constants above.
pub fn unhex_const(hex: &str) -> Vec<u8> {
    unhex(hex)
}
