//! `libhsmbridge_pkcs11.so`: a PKCS#11 v2.40 module that forwards every call
//! over a Unix socket to hsm-sidecar, which runs it on the real module.
//!
//! Modules mirror the PKCS#11 function groups; `client` owns the connection,
//! `handles` keeps stale handles from aliasing, `guard` stops panics at the
//! C ABI.
#![allow(non_snake_case)]
#![allow(clippy::missing_safety_doc)]

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
