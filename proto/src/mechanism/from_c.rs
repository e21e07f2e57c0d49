//! Shim side: an app's `CK_MECHANISM` deep-copied into a message.

use std::mem::size_of;
use std::ptr;

use cryptoki_sys::*;

use super::layout::{layout, Layout};
use crate::wire::{self, mechanism::Parameter};

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

/// Deep-copies an app's `CK_MECHANISM` into a message. A parameter of a
/// mechanism the table does not know goes as plain bytes: the sidecar
/// refuses it unless its operator declared the mechanism pointer-free.
///
/// # Safety
/// `m` is NULL or points to a `CK_MECHANISM` whose parameter memory is valid
/// as the PKCS#11 specification describes for its type.
pub unsafe fn from_c(m: *const CK_MECHANISM) -> Result<wire::Mechanism, CK_RV> {
    let m = m.as_ref().ok_or(CKR_ARGUMENTS_BAD)?;
    let parameter = if m.pParameter.is_null() {
        None
    } else {
        Some(parameter_from_c(layout(m.mechanism).unwrap_or(Layout::Bytes), m)?)
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

