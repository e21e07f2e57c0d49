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
        // SAFETY: `p` is not NULL (checked above), so by this function's contract
        // it is valid for reads of `len` bytes (u8: no alignment to meet); the
        // slice is copied out at once and does not outlive the call.
        Some(unsafe { std::slice::from_raw_parts(p, len as usize) }.to_vec())
    }
}

/// Reads a parameter struct after checking the app gave exactly its size.
///
/// # Safety
/// `m.pParameter` is valid for reads of `m.ulParameterLen` bytes (at any
/// alignment), and any bytes of `T`'s size are a valid `T`: a C parameter
/// struct of integers, byte arrays and raw pointers, as all `CK_*_PARAMS` are.
unsafe fn read_param<T: Copy>(m: &CK_MECHANISM) -> Result<T, CK_RV> {
    if m.ulParameterLen as usize != size_of::<T>() {
        return Err(CKR_MECHANISM_PARAM_INVALID);
    }
    // SAFETY: the parameter is `size_of::<T>()` bytes (checked above), all
    // readable by this function's contract, which also makes any such bytes a
    // valid `T`; `read_unaligned` needs no alignment.
    Ok(unsafe { ptr::read_unaligned(m.pParameter as *const T) })
}

/// Deep-copies an app's `CK_MECHANISM` into a message. A parameter of a
/// mechanism the table does not know goes as plain bytes: the sidecar
/// refuses it unless its operator declared the mechanism pointer-free.
///
/// # Safety
/// `m` is NULL or points to a readable, aligned `CK_MECHANISM` whose parameter
/// memory is valid as the PKCS#11 specification describes for its type:
/// `pParameter` is NULL or valid for reads of `ulParameterLen` bytes, and a
/// parameter structure's pointers are NULL or valid for reads of the lengths
/// beside them.
pub unsafe fn from_c(m: *const CK_MECHANISM) -> Result<wire::Mechanism, CK_RV> {
    // SAFETY: `m` is NULL (None: CKR_ARGUMENTS_BAD) or points to a readable,
    // aligned CK_MECHANISM, by this function's contract.
    let m = unsafe { m.as_ref() }.ok_or(CKR_ARGUMENTS_BAD)?;
    let parameter = if m.pParameter.is_null() {
        None
    } else {
        // SAFETY: `pParameter` is not NULL (checked above), so by this
        // function's contract it holds `ulParameterLen` readable bytes and, when
        // they are the size of the structure `layout` gives for the mechanism,
        // that structure with its pointers valid: `parameter_from_c`'s contract.
        Some(unsafe { parameter_from_c(layout(m.mechanism).unwrap_or(Layout::Bytes), m) }?)
    };
    Ok(wire::Mechanism {
        r#type: m.mechanism as u64,
        parameter,
    })
}

/// Copies the parameter in `layout`, pointed-to buffers included.
///
/// # Safety
/// `m.pParameter` is not NULL and is valid for reads of `m.ulParameterLen`
/// bytes; `layout` is the table's for `m.mechanism` (the specification's) or
/// `Bytes`, and when the bytes are as many as its structure has, they hold
/// one whose pointers are NULL or valid for reads of the lengths beside them.
unsafe fn parameter_from_c(layout: Layout, m: &CK_MECHANISM) -> Result<Parameter, CK_RV> {
    // Each arm's `read_param` checks the size first, so a structure is only read
    // (and its pointers followed) when the app gave exactly one.
    Ok(match layout {
        // SAFETY: `pParameter` is valid for reads of `ulParameterLen` bytes, by
        // this function's contract.
        Layout::Bytes => unsafe {
            Parameter::Bytes(copy_bytes(m.pParameter as *const u8, m.ulParameterLen).unwrap_or_default())
        },
        // SAFETY: the parameter bytes are readable (this function's contract) and
        // any bytes are a CK_ULONG.
        Layout::Ulong => Parameter::Ulong(unsafe { read_param::<CK_ULONG>(m) }? as u64),
        Layout::RsaPkcsPss => {
            // SAFETY: the parameter bytes are readable (this function's contract);
            // CK_RSA_PKCS_PSS_PARAMS is three CK_ULONGs, valid for any bytes.
            let p: CK_RSA_PKCS_PSS_PARAMS = unsafe { read_param(m) }?;
            Parameter::RsaPkcsPss(wire::RsaPkcsPss {
                hash_alg: p.hashAlg as u64,
                mgf: p.mgf as u64,
                salt_length: p.sLen as u64,
            })
        }
        // SAFETY: for each arm below: the parameter bytes are readable and, at
        // the size of the arm's CK_* structure (which `read_param` checks), are
        // one, by this function's contract; those structures are integers, byte
        // arrays and raw pointers, valid for any bytes. The contract also makes
        // each pointer in them NULL or valid for reads of the length beside it,
        // which is what `copy_bytes` requires of the pairs it is given.
        Layout::RsaPkcsOaep => unsafe {
            let p: CK_RSA_PKCS_OAEP_PARAMS = read_param(m)?;
            Parameter::RsaPkcsOaep(wire::RsaPkcsOaep {
                hash_alg: p.hashAlg as u64,
                mgf: p.mgf as u64,
                source: p.source as u64,
                source_data: copy_bytes(p.pSourceData as *const u8, p.ulSourceDataLen),
            })
        },
        Layout::AesCtr => {
            // SAFETY: as for the arm above; CK_AES_CTR_PARAMS has no pointers.
            let p: CK_AES_CTR_PARAMS = unsafe { read_param(m) }?;
            Parameter::AesCtr(wire::AesCtr {
                counter_bits: p.ulCounterBits as u64,
                counter_block: p.cb.to_vec(),
            })
        }
        // SAFETY: as for the RsaPkcsOaep arm: `pIv`/`ulIvLen` and `pAAD`/`ulAADLen`.
        Layout::Gcm => unsafe {
            let p: CK_GCM_PARAMS = read_param(m)?;
            Parameter::Gcm(wire::Gcm {
                iv: copy_bytes(p.pIv, p.ulIvLen),
                iv_bits: p.ulIvBits as u64,
                aad: copy_bytes(p.pAAD, p.ulAADLen),
                tag_bits: p.ulTagBits as u64,
            })
        },
        // SAFETY: as for the RsaPkcsOaep arm: `pNonce`/`ulNonceLen` and `pAAD`/`ulAADLen`.
        Layout::Ccm => unsafe {
            let p: CK_CCM_PARAMS = read_param(m)?;
            Parameter::Ccm(wire::Ccm {
                data_length: p.ulDataLen as u64,
                nonce: copy_bytes(p.pNonce, p.ulNonceLen),
                aad: copy_bytes(p.pAAD, p.ulAADLen),
                mac_length: p.ulMACLen as u64,
            })
        },
        // SAFETY: as for the RsaPkcsOaep arm: `pData`/`ulLen`.
        Layout::KeyDerivationString => unsafe {
            let p: CK_KEY_DERIVATION_STRING_DATA = read_param(m)?;
            Parameter::KeyDerivationString(copy_bytes(p.pData, p.ulLen).unwrap_or_default())
        },
        // SAFETY: as for the RsaPkcsOaep arm: `pData`/`length`.
        Layout::AesCbcEncryptData => unsafe {
            let p: CK_AES_CBC_ENCRYPT_DATA_PARAMS = read_param(m)?;
            Parameter::CbcEncryptData(wire::CbcEncryptData {
                iv: p.iv.to_vec(),
                data: copy_bytes(p.pData, p.length),
            })
        },
        // SAFETY: as for the RsaPkcsOaep arm: `pData`/`length`.
        Layout::DesCbcEncryptData => unsafe {
            let p: CK_DES_CBC_ENCRYPT_DATA_PARAMS = read_param(m)?;
            Parameter::CbcEncryptData(wire::CbcEncryptData {
                iv: p.iv.to_vec(),
                data: copy_bytes(p.pData, p.length),
            })
        },
        // SAFETY: as for the RsaPkcsOaep arm: `pSharedData`/`ulSharedDataLen` and
        // `pPublicData`/`ulPublicDataLen`.
        Layout::Ecdh1Derive => unsafe {
            let p: CK_ECDH1_DERIVE_PARAMS = read_param(m)?;
            Parameter::Ecdh1Derive(wire::Ecdh1Derive {
                kdf: p.kdf as u64,
                shared_data: copy_bytes(p.pSharedData, p.ulSharedDataLen),
                public_data: copy_bytes(p.pPublicData, p.ulPublicDataLen),
            })
        },
        // SAFETY: as for the RsaPkcsOaep arm: `pContextData`/`ulContextDataLen`.
        Layout::Eddsa => unsafe {
            let p: CK_EDDSA_PARAMS = read_param(m)?;
            Parameter::Eddsa(wire::Eddsa {
                prehash: p.phFlag != 0,
                context_data: copy_bytes(p.pContextData, p.ulContextDataLen),
            })
        },
    })
}
