//! `bench __worker` (a child process per backend): loads one module, logs in,
//! runs every cell and prints one line per cell on stdout for the parent:
//!
//! ```text
//! INFO <library description and version>
//! CELL <workload> <threads> <ops> <elapsed_ns> <p50_ns> <p99_ns>
//! CPU <workload> <threads> <server_ns> <server_audit_ns> <others_ns> <client_ns>
//! FAIL <workload> <threads> <message>
//! ```
//!
//! A CPU line follows its CELL line: what the server (0 without one), its
//! `audit` thread alone, every process outside the benchmark and the
//! benchmark threads themselves spent on CPU while the cell was measured
//! (`cpu.rs`).
//!
//! Nothing is pinned unless the plan says so (`--pin-single-thread yes`):
//! applications are not.

use std::io::Write;
use std::time::Duration;

use cryptoki_sys::*;
use hsmbridge_conformance::module::Module;

use crate::affinity;
use crate::measure;
use crate::p11;
use crate::workload::{Keys, Workload, AES_KEY, EC_KEY, RSA_KEY};

pub struct Plan {
    pub workloads: Vec<Workload>,
    pub threads: Vec<usize>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Pin 1-thread cells (this process and the server) to one CPU; see
    /// `affinity`. Off: the worker never touches a CPU mask.
    pub pin_single: bool,
    /// The RPC server this backend talks to, if any.
    pub server_pid: Option<u32>,
}

/// Gives this process (the calling thread, inherited by the cell's threads)
/// and the server the CPU mask for a cell of `threads` threads.
fn place(plan: &Plan, all_cpus: &libc::cpu_set_t, threads: usize) -> Result<(), String> {
    let mask = if threads == 1 {
        affinity::first_of(all_cpus)
    } else {
        *all_cpus
    };
    affinity::set_self(&mask)?;
    if let Some(pid) = plan.server_pid {
        affinity::set_process_tree(pid, &mask)?;
    }
    Ok(())
}

pub fn run(module: &str, label: &str, pin: &str, plan: &Plan) -> Result<(), String> {
    let m = Module::load(module)?;
    let f = m.fl();
    p11::initialize(f)?;
    let out = std::io::stdout();
    writeln!(out.lock(), "INFO {}", p11::library_info(f)?).map_err(|e| e.to_string())?;

    let slot = p11::find_slot(f, label)?;
    // This session stays open for the whole run: it holds the login, which
    // PKCS#11 shares with every session of the application.
    let s = p11::open_session(f, slot, false)?;
    p11::login(f, s, CKU_USER, pin)?;
    let keys = Keys {
        ec: p11::find_object(f, s, CKO_PRIVATE_KEY, EC_KEY)?,
        rsa: p11::find_object(f, s, CKO_PRIVATE_KEY, RSA_KEY)?,
        aes: p11::find_object(f, s, CKO_SECRET_KEY, AES_KEY)?,
    };

    let all_cpus = if plan.pin_single {
        Some(affinity::current()?)
    } else {
        None
    };
    for &w in &plan.workloads {
        for &t in &plan.threads {
            if let Some(all) = &all_cpus {
                if let Err(e) = place(plan, all, t) {
                    eprintln!("bench: CPU affinity not applied: {e}");
                }
            }
            let line = match measure::run_cell(f, slot, keys, w, t, plan) {
                Ok(c) => format!(
                    "CELL {w} {t} {} {} {} {}\nCPU {w} {t} {} {} {} {} {}",
                    c.ops,
                    c.elapsed.as_nanos(),
                    c.p50.as_nanos(),
                    c.p99.as_nanos(),
                    c.cpu.server.as_nanos(),
                    c.cpu.audit.as_nanos(),
                    c.cpu.others.as_nanos(),
                    c.cpu.client.as_nanos(),
                    c.cpu.switches,
                    w = w.name(),
                ),
                Err(e) => format!("FAIL {} {t} {}", w.name(), e.replace('\n', " ")),
            };
            let mut o = out.lock();
            writeln!(o, "{line}")
                .and_then(|()| o.flush())
                .map_err(|e| e.to_string())?;
        }
    }

    if let Some(all) = &all_cpus {
        if let Err(e) = place(plan, all, usize::MAX) {
            eprintln!("bench: CPU affinity not restored: {e}");
        }
    }
    p11::close_session(f, s);
    p11::finalize(f)
}
