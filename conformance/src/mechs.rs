//! Mechanisms with their parameters, owned so the pointers inside a
//! `CK_MECHANISM` stay valid while a call uses it.

use std::ffi::c_void;

use cryptoki_sys::*;

use crate::names;

/// What a mechanism is used for; decides whether its output is reproducible.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Use {
    Encrypt,
    Sign,
    Wrap,
}

/// A mechanism and its parameter block.
pub struct Mech {
    ty: CK_MECHANISM_TYPE,
    param: Param,
    // Buffers the parameter structure points into.
    _data: Vec<Vec<u8>>,
    desc: String,
}

enum Param {
    None,
    Bytes(Vec<u8>),
    Gcm(Box<CK_GCM_PARAMS>),
    Ctr(Box<CK_AES_CTR_PARAMS>),
    Oaep(Box<CK_RSA_PKCS_OAEP_PARAMS>),
    Pss(Box<CK_RSA_PKCS_PSS_PARAMS>),
    Ecdh1(Box<CK_ECDH1_DERIVE_PARAMS>),
    String(Box<CK_KEY_DERIVATION_STRING_DATA>),
    AesCbcData(Box<CK_AES_CBC_ENCRYPT_DATA_PARAMS>),
    DesCbcData(Box<CK_DES_CBC_ENCRYPT_DATA_PARAMS>),
}

impl Mech {
    /// A mechanism without parameter.
    pub fn new(ty: CK_MECHANISM_TYPE) -> Self {
        Mech {
            ty,
            param: Param::None,
            _data: Vec::new(),
            desc: names::mechanism(ty),
        }
    }

    /// A mechanism whose parameter is a byte string (an IV, a key size…).
    pub fn bytes(ty: CK_MECHANISM_TYPE, param: &[u8]) -> Self {
        let desc = format!("{}(param={})", names::mechanism(ty), names::hex(param));
        Mech {
            ty,
            param: Param::Bytes(param.to_vec()),
            _data: Vec::new(),
            desc,
        }
    }

    /// A mechanism whose parameter is one CK_ULONG (e.g. a parameter-gen bit size).
    pub fn ulong(ty: CK_MECHANISM_TYPE, value: CK_ULONG) -> Self {
        let mut m = Self::bytes(ty, &value.to_ne_bytes());
        m.desc = format!("{}(ulong={value})", names::mechanism(ty));
        m
    }

    pub fn gcm(iv: &[u8], aad: &[u8], tag_bits: CK_ULONG) -> Self {
        let mut data = vec![iv.to_vec(), aad.to_vec()];
        let p = CK_GCM_PARAMS {
            pIv: data[0].as_mut_ptr(),
            ulIvLen: iv.len() as CK_ULONG,
            ulIvBits: (iv.len() * 8) as CK_ULONG,
            pAAD: if aad.is_empty() {
                std::ptr::null_mut()
            } else {
                data[1].as_mut_ptr()
            },
            ulAADLen: aad.len() as CK_ULONG,
            ulTagBits: tag_bits,
        };
        let desc = format!(
            "CKM_AES_GCM(iv={}, aad={}, tag_bits={tag_bits})",
            names::hex(iv),
            names::hex(aad)
        );
        Mech {
            ty: CKM_AES_GCM,
            param: Param::Gcm(Box::new(p)),
            _data: data,
            desc,
        }
    }

    pub fn ctr(counter_bits: CK_ULONG, block: [u8; 16]) -> Self {
        let p = CK_AES_CTR_PARAMS {
            ulCounterBits: counter_bits,
            cb: block,
        };
        let desc = format!("CKM_AES_CTR(bits={counter_bits}, cb={})", names::hex(&block));
        Mech {
            ty: CKM_AES_CTR,
            param: Param::Ctr(Box::new(p)),
            _data: Vec::new(),
            desc,
        }
    }

    pub fn oaep(hash: CK_MECHANISM_TYPE, mgf: CK_RSA_PKCS_MGF_TYPE, label: &[u8]) -> Self {
        let mut data = vec![label.to_vec()];
        let p = CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: hash,
            mgf,
            source: CKZ_DATA_SPECIFIED,
            pSourceData: if label.is_empty() {
                std::ptr::null_mut()
            } else {
                data[0].as_mut_ptr().cast()
            },
            ulSourceDataLen: label.len() as CK_ULONG,
        };
        let desc = format!(
            "CKM_RSA_PKCS_OAEP({}, mgf={mgf}, label={})",
            names::mechanism(hash),
            names::hex(label)
        );
        Mech {
            ty: CKM_RSA_PKCS_OAEP,
            param: Param::Oaep(Box::new(p)),
            _data: data,
            desc,
        }
    }

    pub fn pss(ty: CK_MECHANISM_TYPE, hash: CK_MECHANISM_TYPE, mgf: CK_RSA_PKCS_MGF_TYPE, salt: CK_ULONG) -> Self {
        let p = CK_RSA_PKCS_PSS_PARAMS {
            hashAlg: hash,
            mgf,
            sLen: salt,
        };
        let desc = format!(
            "{}({}, mgf={mgf}, salt={salt})",
            names::mechanism(ty),
            names::mechanism(hash)
        );
        Mech {
            ty,
            param: Param::Pss(Box::new(p)),
            _data: Vec::new(),
            desc,
        }
    }

    pub fn ecdh1(kdf: CK_EC_KDF_TYPE, shared: &[u8], public: &[u8]) -> Self {
        let mut data = vec![shared.to_vec(), public.to_vec()];
        let p = CK_ECDH1_DERIVE_PARAMS {
            kdf,
            ulSharedDataLen: shared.len() as CK_ULONG,
            pSharedData: if shared.is_empty() {
                std::ptr::null_mut()
            } else {
                data[0].as_mut_ptr()
            },
            ulPublicDataLen: public.len() as CK_ULONG,
            pPublicData: data[1].as_mut_ptr(),
        };
        let desc = format!(
            "CKM_ECDH1_DERIVE(kdf={kdf}, shared={}, public={}B)",
            names::hex(shared),
            public.len()
        );
        Mech {
            ty: CKM_ECDH1_DERIVE,
            param: Param::Ecdh1(Box::new(p)),
            _data: data,
            desc,
        }
    }

    /// `CK_KEY_DERIVATION_STRING_DATA` (the *_ECB_ENCRYPT_DATA derivations).
    pub fn string_data(ty: CK_MECHANISM_TYPE, data: &[u8]) -> Self {
        let mut bufs = vec![data.to_vec()];
        let p = CK_KEY_DERIVATION_STRING_DATA {
            pData: bufs[0].as_mut_ptr(),
            ulLen: data.len() as CK_ULONG,
        };
        let desc = format!("{}(data={})", names::mechanism(ty), names::hex(data));
        Mech {
            ty,
            param: Param::String(Box::new(p)),
            _data: bufs,
            desc,
        }
    }

    pub fn aes_cbc_data(iv: [u8; 16], data: &[u8]) -> Self {
        let mut bufs = vec![data.to_vec()];
        let p = CK_AES_CBC_ENCRYPT_DATA_PARAMS {
            iv,
            pData: bufs[0].as_mut_ptr(),
            length: data.len() as CK_ULONG,
        };
        let desc = format!(
            "CKM_AES_CBC_ENCRYPT_DATA(iv={}, data={})",
            names::hex(&iv),
            names::hex(data)
        );
        Mech {
            ty: CKM_AES_CBC_ENCRYPT_DATA,
            param: Param::AesCbcData(Box::new(p)),
            _data: bufs,
            desc,
        }
    }

    pub fn des_cbc_data(ty: CK_MECHANISM_TYPE, iv: [u8; 8], data: &[u8]) -> Self {
        let mut bufs = vec![data.to_vec()];
        let p = CK_DES_CBC_ENCRYPT_DATA_PARAMS {
            iv,
            pData: bufs[0].as_mut_ptr(),
            length: data.len() as CK_ULONG,
        };
        let desc = format!(
            "{}(iv={}, data={})",
            names::mechanism(ty),
            names::hex(&iv),
            names::hex(data)
        );
        Mech {
            ty,
            param: Param::DesCbcData(Box::new(p)),
            _data: bufs,
            desc,
        }
    }

    pub fn ty(&self) -> CK_MECHANISM_TYPE {
        self.ty
    }

    pub fn desc(&self) -> &str {
        &self.desc
    }

    /// The C structure; valid while `self` lives.
    pub fn ck(&self) -> CK_MECHANISM {
        fn raw<T>(b: &T) -> (*mut c_void, CK_ULONG) {
            (b as *const T as *mut c_void, std::mem::size_of::<T>() as CK_ULONG)
        }
        let (ptr, len) = match &self.param {
            Param::None => (std::ptr::null_mut(), 0),
            Param::Bytes(b) => (b.as_ptr() as *mut c_void, b.len() as CK_ULONG),
            Param::Gcm(p) => raw(&**p),
            Param::Ctr(p) => raw(&**p),
            Param::Oaep(p) => raw(&**p),
            Param::Pss(p) => raw(&**p),
            Param::Ecdh1(p) => raw(&**p),
            Param::String(p) => raw(&**p),
            Param::AesCbcData(p) => raw(&**p),
            Param::DesCbcData(p) => raw(&**p),
        };
        CK_MECHANISM {
            mechanism: self.ty,
            pParameter: ptr,
            ulParameterLen: len,
        }
    }

    /// Whether two correct modules may give different outputs for the same
    /// input (random padding, random nonces): transcripts then record only
    /// the output length and the test checks the output on the same side.
    pub fn randomized(&self, usage: Use) -> bool {
        match self.ty {
            CKM_RSA_PKCS => usage != Use::Sign,
            CKM_RSA_PKCS_OAEP | CKM_ECDSA | CKM_ECDSA_SHA1 | CKM_ECDSA_SHA224 | CKM_ECDSA_SHA256 | CKM_ECDSA_SHA384
            | CKM_ECDSA_SHA512 | CKM_DSA | CKM_DSA_SHA1 | CKM_DSA_SHA224 | CKM_DSA_SHA256 | CKM_DSA_SHA384
            | CKM_DSA_SHA512 => true,
            CKM_RSA_PKCS_PSS
            | CKM_SHA1_RSA_PKCS_PSS
            | CKM_SHA224_RSA_PKCS_PSS
            | CKM_SHA256_RSA_PKCS_PSS
            | CKM_SHA384_RSA_PKCS_PSS
            | CKM_SHA512_RSA_PKCS_PSS => match &self.param {
                Param::Pss(p) => p.sLen != 0,
                _ => true,
            },
            _ => false,
        }
    }
}
