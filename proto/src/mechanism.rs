//! Deep copy of `CK_MECHANISM` parameters between C memory and messages.
//!
//! A parameter is carried only when its layout is known from the mechanism
//! type; a non-NULL parameter of a mechanism whose layout is unknown is
//! `CKR_MECHANISM_PARAM_INVALID`, never a blind copy of memory that might
//! hold pointers.

use std::mem::size_of;
use std::ptr;

use cryptoki_sys::*;

use crate::wire::{self, mechanism::Parameter};

/// How a mechanism's parameter is laid out in C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
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

fn layout(mechanism: CK_MECHANISM_TYPE) -> Option<Layout> {
    use Layout::*;
    Some(match mechanism {
        CKM_AES_CBC | CKM_AES_CBC_PAD | CKM_AES_OFB | CKM_AES_CFB8 | CKM_AES_CFB64
        | CKM_AES_CFB128 | CKM_AES_CTS | CKM_DES_CBC | CKM_DES_CBC_PAD | CKM_DES3_CBC
        | CKM_DES3_CBC_PAD | CKM_AES_KEY_WRAP | CKM_AES_KEY_WRAP_PAD | CKM_DH_PKCS_DERIVE => Bytes,
        CKM_MD5_HMAC_GENERAL | CKM_SHA_1_HMAC_GENERAL | CKM_SHA224_HMAC_GENERAL
        | CKM_SHA256_HMAC_GENERAL | CKM_SHA384_HMAC_GENERAL | CKM_SHA512_HMAC_GENERAL
        | CKM_AES_MAC_GENERAL | CKM_AES_CMAC_GENERAL | CKM_DES3_MAC_GENERAL
        | CKM_DES3_CMAC_GENERAL => Ulong,
        CKM_RSA_PKCS_PSS | CKM_SHA1_RSA_PKCS_PSS | CKM_SHA224_RSA_PKCS_PSS
        | CKM_SHA256_RSA_PKCS_PSS | CKM_SHA384_RSA_PKCS_PSS | CKM_SHA512_RSA_PKCS_PSS
        | CKM_SHA3_224_RSA_PKCS_PSS | CKM_SHA3_256_RSA_PKCS_PSS | CKM_SHA3_384_RSA_PKCS_PSS
        | CKM_SHA3_512_RSA_PKCS_PSS => RsaPkcsPss,
        CKM_RSA_PKCS_OAEP => RsaPkcsOaep,
        CKM_AES_CTR => AesCtr,
        CKM_AES_GCM => Gcm,
        CKM_AES_CCM => Ccm,
        CKM_AES_ECB_ENCRYPT_DATA | CKM_DES_ECB_ENCRYPT_DATA | CKM_DES3_ECB_ENCRYPT_DATA
        | CKM_CONCATENATE_BASE_AND_DATA | CKM_CONCATENATE_DATA_AND_BASE
        | CKM_XOR_BASE_AND_DATA => KeyDerivationString,
        CKM_AES_CBC_ENCRYPT_DATA => AesCbcEncryptData,
        CKM_DES_CBC_ENCRYPT_DATA | CKM_DES3_CBC_ENCRYPT_DATA => DesCbcEncryptData,
        CKM_ECDH1_DERIVE | CKM_ECDH1_COFACTOR_DERIVE => Ecdh1Derive,
        CKM_EDDSA => Eddsa,
        // Mechanisms defined without a parameter: backends ignore a stray one,
        // and a byte copy of it cannot smuggle a pointer anywhere.
        CKM_MD5 | CKM_SHA_1 | CKM_SHA224 | CKM_SHA256 | CKM_SHA384 | CKM_SHA512 | CKM_MD5_HMAC
        | CKM_SHA_1_HMAC | CKM_SHA224_HMAC | CKM_SHA256_HMAC | CKM_SHA384_HMAC | CKM_SHA512_HMAC
        | CKM_RSA_PKCS | CKM_RSA_X_509 | CKM_MD5_RSA_PKCS | CKM_SHA1_RSA_PKCS | CKM_SHA224_RSA_PKCS
        | CKM_SHA256_RSA_PKCS | CKM_SHA384_RSA_PKCS | CKM_SHA512_RSA_PKCS | CKM_DSA | CKM_DSA_SHA1
        | CKM_DSA_SHA224 | CKM_DSA_SHA256 | CKM_DSA_SHA384 | CKM_DSA_SHA512 | CKM_ECDSA
        | CKM_ECDSA_SHA1 | CKM_ECDSA_SHA224 | CKM_ECDSA_SHA256 | CKM_ECDSA_SHA384 | CKM_ECDSA_SHA512
        | CKM_AES_ECB | CKM_DES_ECB | CKM_DES3_ECB | CKM_AES_CMAC | CKM_DES3_CMAC | CKM_AES_KEY_GEN
        | CKM_DES_KEY_GEN | CKM_DES2_KEY_GEN | CKM_DES3_KEY_GEN | CKM_GENERIC_SECRET_KEY_GEN
        | CKM_RSA_PKCS_KEY_PAIR_GEN | CKM_EC_KEY_PAIR_GEN | CKM_EC_EDWARDS_KEY_PAIR_GEN
        | CKM_DSA_KEY_PAIR_GEN | CKM_DSA_PARAMETER_GEN | CKM_DH_PKCS_KEY_PAIR_GEN
        | CKM_DH_PKCS_PARAMETER_GEN => Bytes,
        _ => return None,
    })
}

/// Copies `len` bytes at `p`; NULL is `None`.
///
/// # Safety
/// `p` is NULL or valid for reads of `len` bytes.
pub unsafe fn copy_bytes(p: *const u8, len: CK_ULONG) -> Option<Vec<u8>> {
    if p.is_null() {
        None
    } else if len == 0 {
        Some(Vec::new())
    } else {
        Some(std::slice::from_raw_parts(p, len as usize).to_vec())
    }
}

/// Reads a parameter struct after checking the app gave exactly its size.
unsafe fn read_param<T: Copy>(m: &CK_MECHANISM) -> Result<T, CK_RV> {
    if m.ulParameterLen as usize != size_of::<T>() {
        return Err(CKR_MECHANISM_PARAM_INVALID);
    }
    Ok(ptr::read_unaligned(m.pParameter as *const T))
}

/// Deep-copies an app's `CK_MECHANISM` into a message.
///
/// # Safety
/// `m` is NULL or points to a `CK_MECHANISM` whose parameter memory is valid
/// as the PKCS#11 specification describes for its type.
pub unsafe fn from_c(m: *const CK_MECHANISM) -> Result<wire::Mechanism, CK_RV> {
    let m = m.as_ref().ok_or(CKR_ARGUMENTS_BAD)?;
    let parameter = if m.pParameter.is_null() {
        None
    } else {
        let layout = layout(m.mechanism).ok_or(CKR_MECHANISM_PARAM_INVALID)?;
        Some(parameter_from_c(layout, m)?)
    };
    Ok(wire::Mechanism { r#type: m.mechanism as u64, parameter })
}

unsafe fn parameter_from_c(layout: Layout, m: &CK_MECHANISM) -> Result<Parameter, CK_RV> {
    Ok(match layout {
        Layout::Bytes => {
            Parameter::Bytes(copy_bytes(m.pParameter as *const u8, m.ulParameterLen).unwrap_or_default())
        }
        Layout::Ulong => Parameter::Ulong(read_param::<CK_ULONG>(m)? as u64),
        Layout::RsaPkcsPss => {
            let p: CK_RSA_PKCS_PSS_PARAMS = read_param(m)?;
            Parameter::RsaPkcsPss(wire::RsaPkcsPss {
                hash_alg: p.hashAlg as u64,
                mgf: p.mgf as u64,
                salt_length: p.sLen as u64,
            })
        }
        Layout::RsaPkcsOaep => {
            let p: CK_RSA_PKCS_OAEP_PARAMS = read_param(m)?;
            Parameter::RsaPkcsOaep(wire::RsaPkcsOaep {
                hash_alg: p.hashAlg as u64,
                mgf: p.mgf as u64,
                source: p.source as u64,
                source_data: copy_bytes(p.pSourceData as *const u8, p.ulSourceDataLen),
            })
        }
        Layout::AesCtr => {
            let p: CK_AES_CTR_PARAMS = read_param(m)?;
            Parameter::AesCtr(wire::AesCtr { counter_bits: p.ulCounterBits as u64, counter_block: p.cb.to_vec() })
        }
        Layout::Gcm => {
            let p: CK_GCM_PARAMS = read_param(m)?;
            Parameter::Gcm(wire::Gcm {
                iv: copy_bytes(p.pIv, p.ulIvLen),
                iv_bits: p.ulIvBits as u64,
                aad: copy_bytes(p.pAAD, p.ulAADLen),
                tag_bits: p.ulTagBits as u64,
            })
        }
        Layout::Ccm => {
            let p: CK_CCM_PARAMS = read_param(m)?;
            Parameter::Ccm(wire::Ccm {
                data_length: p.ulDataLen as u64,
                nonce: copy_bytes(p.pNonce, p.ulNonceLen),
                aad: copy_bytes(p.pAAD, p.ulAADLen),
                mac_length: p.ulMACLen as u64,
            })
        }
        Layout::KeyDerivationString => {
            let p: CK_KEY_DERIVATION_STRING_DATA = read_param(m)?;
            Parameter::KeyDerivationString(copy_bytes(p.pData, p.ulLen).unwrap_or_default())
        }
        Layout::AesCbcEncryptData => {
            let p: CK_AES_CBC_ENCRYPT_DATA_PARAMS = read_param(m)?;
            Parameter::CbcEncryptData(wire::CbcEncryptData { iv: p.iv.to_vec(), data: copy_bytes(p.pData, p.length) })
        }
        Layout::DesCbcEncryptData => {
            let p: CK_DES_CBC_ENCRYPT_DATA_PARAMS = read_param(m)?;
            Parameter::CbcEncryptData(wire::CbcEncryptData { iv: p.iv.to_vec(), data: copy_bytes(p.pData, p.length) })
        }
        Layout::Ecdh1Derive => {
            let p: CK_ECDH1_DERIVE_PARAMS = read_param(m)?;
            Parameter::Ecdh1Derive(wire::Ecdh1Derive {
                kdf: p.kdf as u64,
                shared_data: copy_bytes(p.pSharedData, p.ulSharedDataLen),
                public_data: copy_bytes(p.pPublicData, p.ulPublicDataLen),
            })
        }
        Layout::Eddsa => {
            let p: CK_EDDSA_PARAMS = read_param(m)?;
            Parameter::Eddsa(wire::Eddsa {
                prehash: p.phFlag != 0,
                context_data: copy_bytes(p.pContextData, p.ulContextDataLen),
            })
        }
    })
}

/// A `CK_MECHANISM` rebuilt from a message, owning every buffer its
/// parameter points into. Keep it alive for the duration of the call.
pub struct OwnedMechanism {
    raw: CK_MECHANISM,
    // The parameter struct and the buffers its pointers refer to. Moving the
    // Box/Vec moves only their handles, so the pointers stay valid.
    _param: Option<Box<dyn std::any::Any>>,
    _buffers: Vec<Vec<u8>>,
}

impl OwnedMechanism {
    pub fn as_ptr(&mut self) -> *mut CK_MECHANISM {
        &mut self.raw
    }
}

/// Collects owned byte buffers and hands out stable pointers into them.
#[derive(Default)]
struct Buffers(Vec<Vec<u8>>);

impl Buffers {
    fn keep(&mut self, data: Option<Vec<u8>>) -> (*mut u8, CK_ULONG) {
        match data {
            None => (ptr::null_mut(), 0),
            Some(mut v) => {
                let p = v.as_mut_ptr();
                let len = v.len() as CK_ULONG;
                self.0.push(v);
                (p, len)
            }
        }
    }
}

fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], CK_RV> {
    v.try_into().map_err(|_| CKR_MECHANISM_PARAM_INVALID)
}

fn ulong(v: u64) -> Result<CK_ULONG, CK_RV> {
    crate::to_ulong(v).ok_or(CKR_MECHANISM_PARAM_INVALID)
}

/// Rebuilds a `CK_MECHANISM` from a message (sidecar side).
pub fn to_c(m: &wire::Mechanism) -> Result<OwnedMechanism, CK_RV> {
    let mut bufs = Buffers::default();
    let mechanism = ulong(m.r#type)?;
    let (param, ptr, len): (Option<Box<dyn std::any::Any>>, *mut std::ffi::c_void, usize) = match &m.parameter {
        None => (None, ptr::null_mut(), 0),
        Some(Parameter::Bytes(b)) => {
            // Even an empty Vec has a non-NULL pointer, so "empty" stays distinct from "none".
            let (p, l) = bufs.keep(Some(b.clone()));
            (None, p as *mut _, l as usize)
        }
        Some(Parameter::Ulong(v)) => boxed(ulong(*v)?),
        Some(Parameter::RsaPkcsPss(p)) => boxed(CK_RSA_PKCS_PSS_PARAMS {
            hashAlg: ulong(p.hash_alg)?,
            mgf: ulong(p.mgf)?,
            sLen: ulong(p.salt_length)?,
        }),
        Some(Parameter::RsaPkcsOaep(p)) => {
            let (data, len) = bufs.keep(p.source_data.clone());
            boxed(CK_RSA_PKCS_OAEP_PARAMS {
                hashAlg: ulong(p.hash_alg)?,
                mgf: ulong(p.mgf)?,
                source: ulong(p.source)?,
                pSourceData: data as *mut _,
                ulSourceDataLen: len,
            })
        }
        Some(Parameter::AesCtr(p)) => boxed(CK_AES_CTR_PARAMS {
            ulCounterBits: ulong(p.counter_bits)?,
            cb: fixed(&p.counter_block)?,
        }),
        Some(Parameter::Gcm(p)) => {
            let (iv, iv_len) = bufs.keep(p.iv.clone());
            let (aad, aad_len) = bufs.keep(p.aad.clone());
            boxed(CK_GCM_PARAMS {
                pIv: iv,
                ulIvLen: iv_len,
                ulIvBits: ulong(p.iv_bits)?,
                pAAD: aad,
                ulAADLen: aad_len,
                ulTagBits: ulong(p.tag_bits)?,
            })
        }
        Some(Parameter::Ccm(p)) => {
            let (nonce, nonce_len) = bufs.keep(p.nonce.clone());
            let (aad, aad_len) = bufs.keep(p.aad.clone());
            boxed(CK_CCM_PARAMS {
                ulDataLen: ulong(p.data_length)?,
                pNonce: nonce,
                ulNonceLen: nonce_len,
                pAAD: aad,
                ulAADLen: aad_len,
                ulMACLen: ulong(p.mac_length)?,
            })
        }
        Some(Parameter::KeyDerivationString(d)) => {
            let (data, len) = bufs.keep(Some(d.clone()));
            boxed(CK_KEY_DERIVATION_STRING_DATA { pData: data, ulLen: len })
        }
        Some(Parameter::CbcEncryptData(p)) => {
            let (data, len) = bufs.keep(p.data.clone());
            match p.iv.len() {
                16 => boxed(CK_AES_CBC_ENCRYPT_DATA_PARAMS { iv: fixed(&p.iv)?, pData: data, length: len }),
                8 => boxed(CK_DES_CBC_ENCRYPT_DATA_PARAMS { iv: fixed(&p.iv)?, pData: data, length: len }),
                _ => return Err(CKR_MECHANISM_PARAM_INVALID),
            }
        }
        Some(Parameter::Ecdh1Derive(p)) => {
            let (shared, shared_len) = bufs.keep(p.shared_data.clone());
            let (public, public_len) = bufs.keep(p.public_data.clone());
            boxed(CK_ECDH1_DERIVE_PARAMS {
                kdf: ulong(p.kdf)?,
                ulSharedDataLen: shared_len,
                pSharedData: shared,
                ulPublicDataLen: public_len,
                pPublicData: public,
            })
        }
        Some(Parameter::Eddsa(p)) => {
            let (ctx, ctx_len) = bufs.keep(p.context_data.clone());
            boxed(CK_EDDSA_PARAMS { phFlag: p.prehash as CK_BBOOL, ulContextDataLen: ctx_len, pContextData: ctx })
        }
    };
    Ok(OwnedMechanism {
        raw: CK_MECHANISM { mechanism, pParameter: ptr, ulParameterLen: len as CK_ULONG },
        _param: param,
        _buffers: bufs.0,
    })
}

/// Boxes a parameter struct and returns it with a pointer to it and its size.
fn boxed<T: 'static>(value: T) -> (Option<Box<dyn std::any::Any>>, *mut std::ffi::c_void, usize) {
    let mut b = Box::new(value);
    let p = &mut *b as *mut T as *mut std::ffi::c_void;
    (Some(b as Box<dyn std::any::Any>), p, size_of::<T>())
}

#[cfg(test)]
#[path = "mechanism_tests.rs"]
mod tests;
