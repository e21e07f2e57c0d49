//! The differential oracle of DESIGN.md ("What the shim must get right"):
//! every test runs one call sequence against SoftHSM loaded directly and
//! against libhsmbridge_pkcs11.so in front of hsm-sidecar (forwarded mode,
//! over an identically initialized SoftHSM token), and requires equal
//! transcripts: same CK_RV, same outputs, handles and slots named by order.
//! Randomized outputs are compared by length and checked on their own side.
//!
//! Needs `cargo build --workspace` of the same profile first (the shim and
//! the sidecar are found next to this test binary). Knobs:
//! - `HSMBRIDGE_CONFORMANCE_AGAINST=direct`: compare SoftHSM with a second
//!   SoftHSM (a self-check: the transcripts leave out all that may differ);
//! - `HSMBRIDGE_CONFORMANCE_SHOW=1` with `--nocapture`: print the direct
//!   side's transcript;
//! - `HSMBRIDGE_CONFORMANCE_TIMEOUT_SECS`: time limit per child (300).

#[path = "differential/args.rs"]
mod args;
#[path = "differential/attributes.rs"]
mod attributes;
#[path = "differential/buffers.rs"]
mod buffers;
#[path = "differential/ciphers.rs"]
mod ciphers;
#[path = "differential/coverage.rs"]
mod coverage;
#[path = "differential/derivation.rs"]
mod derivation;
#[path = "differential/digests.rs"]
mod digests;
#[path = "differential/init.rs"]
mod init;
#[path = "differential/keygen.rs"]
mod keygen;
#[path = "differential/objects.rs"]
mod objects;
#[path = "differential/sessions.rs"]
mod sessions;
#[path = "differential/signatures.rs"]
mod signatures;
#[path = "differential/slots.rs"]
mod slots;
#[path = "differential/wrapping.rs"]
mod wrapping;
