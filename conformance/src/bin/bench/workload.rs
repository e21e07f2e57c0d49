//! The five measured operations. Each is one "op" as the benchmark counts it,
//! even when it takes two PKCS#11 calls (init + single-part call).

use cryptoki_sys::*;

use crate::p11::{call, check, Fl};

/// Labels of the token objects `setup` creates and the workers look up.
pub const EC_KEY: &str = "bench-ec-p256";
pub const RSA_KEY: &str = "bench-rsa-2048";
pub const AES_KEY: &str = "bench-aes-256";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    Random,
    Digest,
    GetAttribute,
    EcdsaSign,
    RsaSign,
}

impl Workload {
    pub const ALL: [Workload; 5] = [
        Workload::Random,
        Workload::Digest,
        Workload::GetAttribute,
        Workload::EcdsaSign,
        Workload::RsaSign,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Random => "random",
            Workload::Digest => "digest",
            Workload::GetAttribute => "get-attribute",
            Workload::EcdsaSign => "ecdsa-p256",
            Workload::RsaSign => "rsa-2048",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Workload::Random => "C_GenerateRandom, 32 bytes",
            Workload::Digest => "C_DigestInit + C_Digest, SHA-256 of 64 bytes",
            Workload::GetAttribute => "C_GetAttributeValue, CKA_VALUE_LEN of an AES key",
            Workload::EcdsaSign => "C_SignInit + C_Sign, CKM_ECDSA P-256 over a 32-byte hash",
            Workload::RsaSign => "C_SignInit + C_Sign, CKM_SHA256_RSA_PKCS RSA-2048, 32 bytes",
        }
    }

    pub fn parse(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }

    /// The cheap calls, where the transport's overhead dominates.
    pub fn is_cheap(self) -> bool {
        matches!(self, Workload::Random | Workload::Digest | Workload::GetAttribute)
    }
}

/// Handles of the token objects, valid in every session of the process.
#[derive(Clone, Copy)]
pub struct Keys {
    pub ec: CK_OBJECT_HANDLE,
    pub rsa: CK_OBJECT_HANDLE,
    pub aes: CK_OBJECT_HANDLE,
}

/// Per-thread scratch space, so an op allocates nothing.
pub struct Scratch {
    data: [u8; 64],
    out: [u8; 512],
}

impl Default for Scratch {
    fn default() -> Self {
        let mut data = [0u8; 64];
        for (i, b) in data.iter_mut().enumerate() {
            *b = i as u8;
        }
        Scratch { data, out: [0; 512] }
    }
}

impl Workload {
    /// Runs one op in session `s`.
    pub fn run(self, f: Fl, s: CK_SESSION_HANDLE, keys: &Keys, x: &mut Scratch) -> Result<(), String> {
        let out = x.out.as_mut_ptr();
        match self {
            // SAFETY: `f` is a loaded module's list (see `p11::Fl`); `out` is `x.out`, 512 bytes, room
            // for the 32 asked for.
            Workload::Random => check("C_GenerateRandom", unsafe { call!(f, C_GenerateRandom, s, out, 32) }),
            Workload::Digest => {
                let mut m = mechanism(CKM_SHA256);
                // SAFETY: `f` is a loaded module's list (see `p11::Fl`); `m` is a live mechanism
                // without parameter.
                check("C_DigestInit", unsafe { call!(f, C_DigestInit, s, &mut m) })?;
                let mut len: CK_ULONG = 32;
                // SAFETY: `f` is a loaded module's list (see `p11::Fl`); `x.data` holds the 64 bytes
                // passed, `out` (512 bytes) has room for the `len` = 32 passed.
                check("C_Digest", unsafe {
                    call!(f, C_Digest, s, x.data.as_mut_ptr(), 64, out, &mut len)
                })
            }
            Workload::GetAttribute => {
                let mut value: CK_ULONG = 0;
                let mut attr = CK_ATTRIBUTE {
                    type_: CKA_VALUE_LEN,
                    pValue: (&mut value as *mut CK_ULONG).cast(),
                    ulValueLen: std::mem::size_of::<CK_ULONG>() as CK_ULONG,
                };
                // SAFETY: `f` is a loaded module's list (see `p11::Fl`); `attr` is one live attribute
                // whose pValue is the live CK_ULONG `value`, of the length given.
                check("C_GetAttributeValue", unsafe {
                    call!(f, C_GetAttributeValue, s, keys.aes, &mut attr, 1)
                })?;
                if value != 32 {
                    return Err(format!("CKA_VALUE_LEN is {value}, expected 32"));
                }
                Ok(())
            }
            Workload::EcdsaSign => sign(f, s, CKM_ECDSA, keys.ec, x, 64),
            Workload::RsaSign => sign(f, s, CKM_SHA256_RSA_PKCS, keys.rsa, x, 256),
        }
    }
}

fn mechanism(kind: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: kind,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    }
}

fn sign(
    f: Fl,
    s: CK_SESSION_HANDLE,
    kind: CK_MECHANISM_TYPE,
    key: CK_OBJECT_HANDLE,
    x: &mut Scratch,
    sig_len: CK_ULONG,
) -> Result<(), String> {
    let mut m = mechanism(kind);
    // SAFETY: `f` is a loaded module's list (see `p11::Fl`); `m` is a live mechanism without
    // parameter.
    check("C_SignInit", unsafe { call!(f, C_SignInit, s, &mut m, key) })?;
    let mut len: CK_ULONG = x.out.len() as CK_ULONG;
    // SAFETY: `f` is a loaded module's list (see `p11::Fl`); `x.data` (64 bytes) holds the 32 passed,
    // `x.out` holds the `len` bytes passed.
    check("C_Sign", unsafe {
        call!(f, C_Sign, s, x.data.as_mut_ptr(), 32, x.out.as_mut_ptr(), &mut len)
    })?;
    if len != sig_len {
        return Err(format!("C_Sign gave {len} bytes, expected {sig_len}"));
    }
    Ok(())
}
