//! `libhsmbridge_pkcs11.so`: a PKCS#11 v2.40 module that forwards every call
//! over a Unix socket to hsm-sidecar, which runs it on the real module.
//!
//! Modules mirror the PKCS#11 function groups; `client` owns the connection,
//! `handles` keeps stale handles from aliasing, `guard` stops panics at the
//! C ABI.
//!
//! Every exported function that takes pointers is an `unsafe extern "C" fn`
//! whose `# Safety` is the PKCS#11 contract for those arguments; each unsafe
//! block says, on its `// SAFETY:` line, which part of that contract (or
//! which check before it) makes it hold.
#![allow(non_snake_case)]
#![allow(
    clippy::unnecessary_cast,
    reason = "CK_ULONG is c_ulong: u64 here, u32 on 32-bit and Windows targets, where the `as u64` \
              casts to and from the wire format are needed (rust-clippy#10555)"
)]

mod client;
mod crypto;
mod function_list;
mod general;
mod guard;
mod handles;
mod keys;
mod object;
mod out;
mod prelude;
mod random;
mod session;
mod slot_token;
