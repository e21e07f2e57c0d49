//! The hostile-peer suite: a raw client of the wire protocol (not the shim)
//! attacks a managed-mode sidecar the way any process of the pod that can
//! reach the socket could, with no PIN and no privileges. After each attack
//! the sidecar must be alive, its RSS under 64 MiB, and a real client
//! (pkcs11-tool through the shim) must still sign.
//!
//! One file per kind of attack: mechanism `parameters`, attribute
//! `templates`, malformed `frames`, hostile `connections`, `random`
//! messages, and the `held_pin` the sidecar must not burn. Each of the audit
//! findings of the trust-boundary issue has a regression test here or next
//! to the code it fixed. Run against another build with
//! `HSMBRIDGE_HOSTILE_SIDECAR=/path/to/hsm-sidecar`; replay a random run
//! with `HSMBRIDGE_HOSTILE_SEED=<seed it printed>`.

// CK_ULONG is u64 here but u32 on other targets: the casts are needed there.
#![allow(clippy::unnecessary_cast)]

#[path = "hostile/connections.rs"]
mod connections;
#[path = "hostile/frames.rs"]
mod frames;
#[path = "hostile/held_pin.rs"]
mod held_pin;
#[path = "hostile/observe.rs"]
mod observe;
#[path = "hostile/parameters.rs"]
mod parameters;
#[path = "hostile/random.rs"]
mod random;
#[path = "hostile/ring.rs"]
mod ring;
#[path = "hostile/sessions.rs"]
mod sessions;
#[path = "hostile/support.rs"]
mod support;
#[path = "hostile/templates.rs"]
mod templates;
