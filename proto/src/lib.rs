//! The PKCS#11-over-socket protocol shared by `libhsmbridge_pkcs11.so` and
//! `hsm-sidecar`: generated messages, framing, the limits both sides hold a
//! call to, and the deep conversion of mechanisms and attribute templates
//! between C memory and messages.
//!
//! The C side's `unsafe fn`s (`mechanism::from_c`, `template::values_from_c`
//! and friends) state their contract under `# Safety`; each unsafe block in
//! them says, on its `// SAFETY:` line, which part of it makes the block hold.
#![allow(
    clippy::unnecessary_cast,
    reason = "CK_ULONG is c_ulong: u64 here, u32 on 32-bit and Windows targets, where the `as u64` \
              casts to and from the wire format are needed (rust-clippy#10555)"
)]

pub mod frame;
pub mod limits;
pub mod mechanism;
pub mod ring;
pub mod shape;
pub mod spin;
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
