//! `bench`: the same PKCS#11 workload against (a) SoftHSM loaded directly,
//! (b) p11-kit's RPC (`p11-kit server` + `p11-kit-client.so`), (c)
//! `libhsmbridge_pkcs11.so` + `hsm-sidecar` without metrics or audit trail,
//! both in their default adaptive spin mode, (d) the same never polling
//! (`shim-block`: sidecar `--spin-us 0`, app `HSMBRIDGE_SPIN_US=0`) and (e)
//! the shim with metrics and audit trail on (`shim+obs`), on one SoftHSM
//! token. Every cell is measured `--runs` times (default 3), every backend
//! in turn within a run; the report gives medians and spreads, the CPU per
//! call of the client and the server, and holds each target (issues 2, 10
//! and 11) to every run. Nothing is pinned unless `--pin-single-thread yes`.
//!
//! A module path loads once per process and SoftHSM reads SOFTHSM2_CONF at
//! C_Initialize, so every backend runs in its own child: this binary
//! re-executes itself with an internal subcommand.
//!
//! - `bench [options]`: set up, start the servers, run the children, print
//!   the report (see `args::USAGE`). Run by `make bench` (scripts/bench.sh).
//! - `bench __setup --module M`: initialize the token and generate the keys.
//! - `bench __worker --module M …`: measure cells on one backend.
//! - `bench __rss --module M`: RSS of a fresh process around loading M.
//!
//! Children find the token by label and read the user PIN from the
//! environment (never argv). Not a test: no threshold fails the run; the
//! report marks each target as met or missed.
//!
//! The helper modules live in `bench/` (a binary's root file takes its
//! modules from its own directory, hence the `#[path]`s).

#[path = "bench/affinity.rs"]
mod affinity;
#[path = "bench/args.rs"]
mod args;
#[path = "bench/backend.rs"]
mod backend;
#[path = "bench/cpu.rs"]
mod cpu;
#[path = "bench/measure.rs"]
mod measure;
#[path = "bench/observe.rs"]
mod observe;
#[path = "bench/p11.rs"]
mod p11;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/rss.rs"]
mod rss;
#[path = "bench/run.rs"]
mod run;
#[path = "bench/servers.rs"]
mod servers;
#[path = "bench/setup.rs"]
mod setup;
#[path = "bench/worker.rs"]
mod worker;
#[path = "bench/workload.rs"]
mod workload;

use std::process::ExitCode;

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let help = args.iter().any(|a| a == "-h" || a == "--help");
    let result = match args.first().map(String::as_str) {
        _ if help => {
            print!("{}", args::USAGE);
            Ok(())
        }
        Some("__setup") => args::ChildOptions::parse(&args[1..])
            .and_then(|o| setup::run(&o.module, run::TOKEN_LABEL, &env(run::SO_PIN_ENV)?, &env(run::PIN_ENV)?)),
        Some("__worker") => args::ChildOptions::parse(&args[1..]).and_then(|o| {
            let plan = worker::Plan {
                workloads: o.workloads,
                threads: o.threads,
                warmup: o.warmup,
                duration: o.duration,
                pin_single: o.pin_single,
                server_pid: o.server_pid,
            };
            worker::run(&o.module, run::TOKEN_LABEL, &env(run::PIN_ENV)?, &plan)
        }),
        Some("__rss") => args::ChildOptions::parse(&args[1..])
            .and_then(|o| rss::run(&o.module, run::TOKEN_LABEL, &env(run::PIN_ENV)?)),
        _ => args::Options::parse(&args)
            .and_then(|o| run::run(&o))
            .map(|report| report.print()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
