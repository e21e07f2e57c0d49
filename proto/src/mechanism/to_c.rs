//! Sidecar side: a `CK_MECHANISM` rebuilt from a message, only in the
//! layout the table prescribes for the mechanism.

use std::mem::size_of;
use std::ptr;

use cryptoki_sys::*;

use super::layout::{layout, Layout};
use super::RawParamMechanisms;
use crate::wire::{self, mechanism::Parameter};

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

/// Rebuilds a `CK_MECHANISM` from a message (sidecar side). The parameter
/// must be the variant [`layout`] prescribes for the mechanism (plain bytes
/// for a mechanism in `raw`); anything else is `CKR_MECHANISM_PARAM_INVALID`.
pub fn to_c(m: &wire::Mechanism, raw: &RawParamMechanisms) -> Result<OwnedMechanism, CK_RV> {
    let mut bufs = Buffers::default();
    let mechanism = ulong(m.r#type)?;
    if let Some(p) = &m.parameter {
        let prescribed = match layout(mechanism) {
            Some(l) => l.prescribes(p),
            None => raw.allows(mechanism) && Layout::Bytes.prescribes(p),
        };
        if !prescribed || !lengths_agree(p) {
            return Err(CKR_MECHANISM_PARAM_INVALID);
        }
    }
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
            boxed(CK_KEY_DERIVATION_STRING_DATA {
                pData: data,
                ulLen: len,
            })
        }
        Some(Parameter::CbcEncryptData(p)) => {
            let (data, len) = bufs.keep(p.data.clone());
            match p.iv.len() {
                16 => boxed(CK_AES_CBC_ENCRYPT_DATA_PARAMS {
                    iv: fixed(&p.iv)?,
                    pData: data,
                    length: len,
                }),
                8 => boxed(CK_DES_CBC_ENCRYPT_DATA_PARAMS {
                    iv: fixed(&p.iv)?,
                    pData: data,
                    length: len,
                }),
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
            boxed(CK_EDDSA_PARAMS {
                phFlag: p.prehash as CK_BBOOL,
                ulContextDataLen: ctx_len,
                pContextData: ctx,
            })
        }
    };
    Ok(OwnedMechanism {
        raw: CK_MECHANISM {
            mechanism,
            pParameter: ptr,
            ulParameterLen: len as CK_ULONG,
        },
        _param: param,
        _buffers: bufs.0,
    })
}

/// Numbers in a parameter that a module may take for the size of one of its
/// buffers must not claim more than the buffer holds.
fn lengths_agree(p: &Parameter) -> bool {
    match p {
        Parameter::Gcm(g) => g.iv_bits <= g.iv.as_ref().map_or(0, |iv| iv.len() as u64 * 8),
        Parameter::AesCtr(c) => c.counter_bits <= 128,
        _ => true,
    }
}

/// Boxes a parameter struct and returns it with a pointer to it and its size.
fn boxed<T: 'static>(value: T) -> (Option<Box<dyn std::any::Any>>, *mut std::ffi::c_void, usize) {
    let mut b = Box::new(value);
    let p = &mut *b as *mut T as *mut std::ffi::c_void;
    (Some(b as Box<dyn std::any::Any>), p, size_of::<T>())
}
