//! Test and benchmark harness: loads PKCS#11 modules by path and sets up the
//! real components (SoftHSM tokens, hsm-sidecar, p11-kit server) the tests
//! and the benchmark compare.
//!
//! The conformance tests (`tests/`) are built from:
//! - fixtures: [`softhsm`] (a token in a temp dir), [`sidecar`] (an
//!   `hsm-sidecar serve` in front of one), [`paths`] (where the built
//!   artifacts are);
//! - [`calls`]: every PKCS#11 function, recorded into a [`transcript`]
//!   with handles and slot ids named by order, using [`mechs`] and
//!   [`template`] for arguments and [`keys`] for fixed key material;
//! - runners: [`oracle`] (the differential test: direct SoftHSM vs
//!   shim + sidecar, each in a child [`process`]) and [`apps`] (several
//!   applications against one sidecar);
//! - [`setup`]: opening moves call sequences share; [`sweep`]: one call of
//!   every function, for rules that hold for all of them.

pub mod apps;
pub mod calls;
pub mod keys;
pub mod mechs;
pub mod module;
pub mod names;
pub mod oracle;
pub mod paths;
pub mod process;
pub mod setup;
pub mod sidecar;
pub mod softhsm;
pub mod sweep;
pub mod template;
pub mod transcript;
