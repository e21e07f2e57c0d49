//! The PKCS#11-over-socket protocol shared by `libhsmbridge_pkcs11.so` and
//! `hsm-sidecar`: generated messages, framing, the limits both sides hold a
//! call to, and the deep conversion of mechanisms and attribute templates
//! between C memory and messages.

pub mod frame;
pub mod limits;
pub mod mechanism;
pub mod shape;
pub mod template;

/// Messages generated from `pkcs11.proto`.
pub mod wire {
    include!(concat!(env!("OUT_DIR"), "/hsmbridge.pkcs11.v1.rs"));
}

/// Bumped when a message changes incompatibly; exchanged in `Hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// CK_ULONG travels as u64; on 32-bit hosts a value that does not fit is an
/// argument the backend could never have produced or accepted.
pub fn to_ulong(v: u64) -> Option<cryptoki_sys::CK_ULONG> {
    cryptoki_sys::CK_ULONG::try_from(v).ok()
}
