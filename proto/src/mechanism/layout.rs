//! The one table of mechanism parameter layouts, used by the shim to read an
//! app's parameter and by the sidecar to refuse any parameter the table does
//! not prescribe for the mechanism.

use cryptoki_sys::*;

use crate::wire::mechanism::Parameter;

/// How a mechanism's parameter is laid out in C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Bytes,
    Ulong,
    RsaPkcsPss,
    RsaPkcsOaep,
    AesCtr,
    Gcm,
    Ccm,
    KeyDerivationString,
    AesCbcEncryptData,
    DesCbcEncryptData,
    Ecdh1Derive,
    Eddsa,
}

pub fn layout(mechanism: CK_MECHANISM_TYPE) -> Option<Layout> {
    use Layout::*;
    Some(match mechanism {
        CKM_AES_CBC | CKM_AES_CBC_PAD | CKM_AES_OFB | CKM_AES_CFB8 | CKM_AES_CFB64 | CKM_AES_CFB128 | CKM_AES_CTS
        | CKM_DES_CBC | CKM_DES_CBC_PAD | CKM_DES3_CBC | CKM_DES3_CBC_PAD | CKM_AES_KEY_WRAP | CKM_AES_KEY_WRAP_PAD
        | CKM_DH_PKCS_DERIVE => Bytes,
        CKM_MD5_HMAC_GENERAL
        | CKM_SHA_1_HMAC_GENERAL
        | CKM_SHA224_HMAC_GENERAL
        | CKM_SHA256_HMAC_GENERAL
        | CKM_SHA384_HMAC_GENERAL
        | CKM_SHA512_HMAC_GENERAL
        | CKM_AES_MAC_GENERAL
        | CKM_AES_CMAC_GENERAL
        | CKM_DES3_MAC_GENERAL
        | CKM_DES3_CMAC_GENERAL => Ulong,
        CKM_RSA_PKCS_PSS
        | CKM_SHA1_RSA_PKCS_PSS
        | CKM_SHA224_RSA_PKCS_PSS
        | CKM_SHA256_RSA_PKCS_PSS
        | CKM_SHA384_RSA_PKCS_PSS
        | CKM_SHA512_RSA_PKCS_PSS
        | CKM_SHA3_224_RSA_PKCS_PSS
        | CKM_SHA3_256_RSA_PKCS_PSS
        | CKM_SHA3_384_RSA_PKCS_PSS
        | CKM_SHA3_512_RSA_PKCS_PSS => RsaPkcsPss,
        CKM_RSA_PKCS_OAEP => RsaPkcsOaep,
        CKM_AES_CTR => AesCtr,
        CKM_AES_GCM => Gcm,
        CKM_AES_CCM => Ccm,
        CKM_AES_ECB_ENCRYPT_DATA
        | CKM_DES_ECB_ENCRYPT_DATA
        | CKM_DES3_ECB_ENCRYPT_DATA
        | CKM_CONCATENATE_BASE_AND_DATA
        | CKM_CONCATENATE_DATA_AND_BASE
        | CKM_XOR_BASE_AND_DATA => KeyDerivationString,
        CKM_AES_CBC_ENCRYPT_DATA => AesCbcEncryptData,
        CKM_DES_CBC_ENCRYPT_DATA | CKM_DES3_CBC_ENCRYPT_DATA => DesCbcEncryptData,
        CKM_ECDH1_DERIVE | CKM_ECDH1_COFACTOR_DERIVE => Ecdh1Derive,
        CKM_EDDSA => Eddsa,
        // Mechanisms defined without a parameter: backends ignore a stray one,
        // and a byte copy of it cannot smuggle a pointer anywhere.
        CKM_MD5
        | CKM_SHA_1
        | CKM_SHA224
        | CKM_SHA256
        | CKM_SHA384
        | CKM_SHA512
        | CKM_MD5_HMAC
        | CKM_SHA_1_HMAC
        | CKM_SHA224_HMAC
        | CKM_SHA256_HMAC
        | CKM_SHA384_HMAC
        | CKM_SHA512_HMAC
        | CKM_RSA_PKCS
        | CKM_RSA_X_509
        | CKM_MD5_RSA_PKCS
        | CKM_SHA1_RSA_PKCS
        | CKM_SHA224_RSA_PKCS
        | CKM_SHA256_RSA_PKCS
        | CKM_SHA384_RSA_PKCS
        | CKM_SHA512_RSA_PKCS
        | CKM_DSA
        | CKM_DSA_SHA1
        | CKM_DSA_SHA224
        | CKM_DSA_SHA256
        | CKM_DSA_SHA384
        | CKM_DSA_SHA512
        | CKM_ECDSA
        | CKM_ECDSA_SHA1
        | CKM_ECDSA_SHA224
        | CKM_ECDSA_SHA256
        | CKM_ECDSA_SHA384
        | CKM_ECDSA_SHA512
        | CKM_AES_ECB
        | CKM_DES_ECB
        | CKM_DES3_ECB
        | CKM_AES_CMAC
        | CKM_DES3_CMAC
        | CKM_AES_KEY_GEN
        | CKM_DES_KEY_GEN
        | CKM_DES2_KEY_GEN
        | CKM_DES3_KEY_GEN
        | CKM_GENERIC_SECRET_KEY_GEN
        | CKM_RSA_PKCS_KEY_PAIR_GEN
        | CKM_EC_KEY_PAIR_GEN
        | CKM_EC_EDWARDS_KEY_PAIR_GEN
        | CKM_DSA_KEY_PAIR_GEN
        | CKM_DSA_PARAMETER_GEN
        | CKM_DH_PKCS_KEY_PAIR_GEN
        | CKM_DH_PKCS_PARAMETER_GEN => Bytes,
        _ => return None,
    })
}

impl Layout {
    /// Whether `p` is the wire variant this layout is carried as. Anything
    /// else is refused before a C structure is built from it.
    pub fn prescribes(self, p: &Parameter) -> bool {
        match (self, p) {
            (Layout::Bytes, Parameter::Bytes(_))
            | (Layout::Ulong, Parameter::Ulong(_))
            | (Layout::RsaPkcsPss, Parameter::RsaPkcsPss(_))
            | (Layout::RsaPkcsOaep, Parameter::RsaPkcsOaep(_))
            | (Layout::AesCtr, Parameter::AesCtr(_))
            | (Layout::Gcm, Parameter::Gcm(_))
            | (Layout::Ccm, Parameter::Ccm(_))
            | (Layout::KeyDerivationString, Parameter::KeyDerivationString(_))
            | (Layout::Ecdh1Derive, Parameter::Ecdh1Derive(_))
            | (Layout::Eddsa, Parameter::Eddsa(_)) => true,
            (Layout::AesCbcEncryptData, Parameter::CbcEncryptData(c)) => c.iv.len() == 16,
            (Layout::DesCbcEncryptData, Parameter::CbcEncryptData(c)) => c.iv.len() == 8,
            _ => false,
        }
    }
}
