//! Resident memory: `VmRSS` of a process, and `bench __rss` (a child process
//! per backend, so no other module is mapped) which reports what loading and
//! using one module adds to an application.
//!
//! Output line: `RSS <before> <loaded> <initialized> <in_use>` in KiB, where
//! `in_use` is after opening a session, logging in and one C_GenerateRandom.

use cryptoki_sys::*;
use hsmbridge_conformance::module::Module;

use crate::p11::{self, call, check};

/// VmRSS of `pid` ("self" for this process) in KiB.
pub fn vm_rss_kib(pid: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("{path}: no VmRSS line"))
}

pub fn run(module: &str, label: &str, pin: &str) -> Result<(), String> {
    let before = vm_rss_kib("self")?;
    let m = Module::load(module)?;
    let f = m.fl();
    let loaded = vm_rss_kib("self")?;
    p11::initialize(f)?;
    let initialized = vm_rss_kib("self")?;

    let slot = p11::find_slot(f, label)?;
    let s = p11::open_session(f, slot, false)?;
    p11::login(f, s, CKU_USER, pin)?;
    let mut buf = [0u8; 32];
    // SAFETY: `f` is the list of `m`, loaded above and alive; `buf` has room
    // for the 32 bytes asked for.
    check("C_GenerateRandom", unsafe {
        call!(f, C_GenerateRandom, s, buf.as_mut_ptr(), 32)
    })?;
    let in_use = vm_rss_kib("self")?;

    println!("RSS {before} {loaded} {initialized} {in_use}");
    p11::close_session(f, s);
    p11::finalize(f)
}
