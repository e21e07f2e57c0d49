//! The final table: per backend, workload and thread count the throughput and
//! latency; then the ratios the targets are stated in; then what the
//! sidecar's metrics and audit trail cost; then memory.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::args::Options;
use crate::cpu::CellCpu;
use crate::measure::Cell;
use crate::observe::Observed;
use crate::run::{micros, Cells};
use crate::workload::Workload;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Backend {
    Direct,
    P11Kit,
    Shim,
    /// The shim with the sidecar's metrics and audit trail on.
    ShimObs,
}

impl Backend {
    pub const ALL: [Backend; 4] = [Backend::Direct, Backend::P11Kit, Backend::Shim, Backend::ShimObs];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Direct => "direct",
            Backend::P11Kit => "p11-kit",
            Backend::Shim => "shim",
            Backend::ShimObs => "shim+obs",
        }
    }

    /// Served by an `hsm-sidecar` the bench starts.
    pub fn is_sidecar(self) -> bool {
        matches!(self, Backend::Shim | Backend::ShimObs)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Backend::Direct => "SoftHSM loaded in the process",
            Backend::P11Kit => "p11-kit-client.so -> p11-kit server -> SoftHSM",
            Backend::Shim => "libhsmbridge_pkcs11.so -> hsm-sidecar -> SoftHSM (--no-audit, no metrics)",
            Backend::ShimObs => "the same, the sidecar with --metrics-addr and --audit-file",
        }
    }

    pub fn parse(s: &str) -> Option<Backend> {
        match s {
            "direct" | "softhsm" => Some(Backend::Direct),
            "p11-kit" | "p11kit" => Some(Backend::P11Kit),
            "shim" | "hsmbridge" => Some(Backend::Shim),
            "shim+obs" | "shim+observe" => Some(Backend::ShimObs),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CellKey {
    pub backend: Backend,
    pub workload: Workload,
    pub threads: usize,
}

/// VmRSS in KiB of a fresh process around loading and using one module.
pub struct RssFigures {
    pub before: u64,
    pub loaded: u64,
    pub initialized: u64,
    pub in_use: u64,
}

pub struct Report {
    backends: Vec<Backend>,
    workloads: Vec<Workload>,
    threads: Vec<usize>,
    duration: Duration,
    pin_single: bool,
    pub cells: Cells,
    pub library: BTreeMap<Backend, String>,
    pub rss: BTreeMap<Backend, RssFigures>,
    /// Per sidecar backend: its VmRSS (KiB) after start and after the run.
    pub sidecar_rss: BTreeMap<Backend, (u64, Option<u64>)>,
    /// What the `shim+obs` sidecar recorded, read after the run.
    pub observed: Option<Observed>,
    pub notes: Vec<String>,
}

/// Targets from issue 2, printed next to the measured ratios.
const OVERHEAD_RATIO_TARGET: f64 = 0.8;
const ECDSA_THROUGHPUT_TARGET: f64 = 0.8;
const SIDECAR_RSS_TARGET_MIB: f64 = 30.0;
const SHIM_RSS_TARGET_MIB: f64 = 8.0;
/// Targets from issue 10: what metrics and audit cost, shim+obs against shim.
const OBSERVE_THROUGHPUT_TARGET: f64 = 0.95;
const OBSERVE_P50_TARGET_US: f64 = 1.0;
/// CPU other processes may use during a cell (share of one CPU) before the
/// report calls the cell disturbed.
const DISTURBED_SHARE: f64 = 0.05;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

impl Report {
    pub fn new(opts: &Options) -> Report {
        Report {
            backends: opts.backends.clone(),
            workloads: opts.workloads.clone(),
            threads: opts.threads.clone(),
            duration: opts.duration,
            pin_single: opts.pin_single,
            cells: BTreeMap::new(),
            library: BTreeMap::new(),
            rss: BTreeMap::new(),
            sidecar_rss: BTreeMap::new(),
            observed: None,
            notes: Vec::new(),
        }
    }

    fn cell(&self, backend: Backend, workload: Workload, threads: usize) -> Option<&Cell> {
        self.cells
            .get(&CellKey {
                backend,
                workload,
                threads,
            })
            .and_then(|r| r.as_ref().ok())
    }

    pub fn print(&self) {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        println!();
        println!(
            "hsmbridge bench: {:.1} s per cell after warm-up, {cpus} CPUs, each thread in its own session",
            self.duration.as_secs_f64()
        );
        if self.pin_single {
            println!("  1-thread cells: client and server pinned to one CPU (--pin-single-thread no to let the scheduler place them)");
        }
        for b in &self.backends {
            let lib = self.library.get(b).map(String::as_str).unwrap_or("?");
            println!("  {:<8} {} [{lib}]", b.name(), b.describe());
        }
        for w in &self.workloads {
            println!("  {:<14} {}", w.name(), w.describe());
        }
        self.print_table();
        self.print_ratios();
        self.print_observe();
        self.print_memory();
        for n in &self.notes {
            println!("note: {n}");
        }
    }

    fn print_table(&self) {
        println!();
        print!("{:<14} {:>3} ", "workload", "thr");
        for b in &self.backends {
            print!("| {:^29} ", b.name());
        }
        println!();
        print!("{:<14} {:>3} ", "", "");
        for _ in &self.backends {
            print!("| {:>11} {:>8} {:>8} ", "ops/s", "p50 µs", "p99 µs");
        }
        println!();
        for &w in &self.workloads {
            for &t in &self.threads {
                print!("{:<14} {:>3} ", w.name(), t);
                for &b in &self.backends {
                    match self.cells.get(&CellKey {
                        backend: b,
                        workload: w,
                        threads: t,
                    }) {
                        Some(Ok(c)) => {
                            print!(
                                "| {:>11.0} {:>8.1} {:>8.1} ",
                                c.ops_per_sec(),
                                micros(c.p50),
                                micros(c.p99)
                            )
                        }
                        Some(Err(_)) => print!("| {:>29} ", "failed"),
                        None => print!("| {:>29} ", "-"),
                    }
                }
                println!();
            }
        }
        for (k, r) in &self.cells {
            if let Err(e) = r {
                println!("failed: {} {} x{}: {e}", k.backend.name(), k.workload.name(), k.threads);
            }
        }
        self.print_disturbed();
    }

    /// The CPU processes outside the benchmark took while cells were measured.
    fn print_disturbed(&self) {
        let shares: Vec<(&CellKey, f64)> = self
            .cells
            .iter()
            .filter_map(|(k, c)| {
                let c = c.as_ref().ok()?;
                Some((k, c.cpu.others.as_secs_f64() / c.elapsed.as_secs_f64()))
            })
            .collect();
        let Some(max) = shares.iter().map(|(_, s)| *s).reduce(f64::max) else {
            return;
        };
        let disturbed: Vec<String> = shares
            .iter()
            .filter(|(_, s)| *s > DISTURBED_SHARE)
            .map(|(k, s)| {
                format!(
                    "{} {} x{} {:.0}%",
                    k.backend.name(),
                    k.workload.name(),
                    k.threads,
                    100.0 * s
                )
            })
            .collect();
        println!(
            "other processes: at most {:.0}% of one CPU while a cell was measured{}",
            100.0 * max,
            if disturbed.is_empty() {
                String::new()
            } else {
                format!(
                    "; over {:.0}% (numbers suspect) in: {}",
                    100.0 * DISTURBED_SHARE,
                    disturbed.join(", ")
                )
            }
        );
    }

    fn print_ratios(&self) {
        println!();
        println!("overhead = p50 - direct p50; ratio = shim overhead / p11-kit overhead (target <= {OVERHEAD_RATIO_TARGET} on cheap calls at 1 thread)");
        println!(
            "throughput = ops/s / direct ops/s (target: shim >= {ECDSA_THROUGHPUT_TARGET} for ecdsa-p256 at 4 threads)"
        );
        println!(
            "{:<14} {:>3} | {:>12} {:>10} {:>8} | {:>15} {:>10}   target",
            "workload", "thr", "p11-kit ovh", "shim ovh", "ratio", "p11-kit thrpt", "shim thrpt"
        );
        for &w in &self.workloads {
            for &t in &self.threads {
                let direct = self.cell(Backend::Direct, w, t);
                let p11 = self.cell(Backend::P11Kit, w, t);
                let shim = self.cell(Backend::Shim, w, t);
                let ovh = |c: Option<&Cell>| Some(micros(c?.p50) - micros(direct?.p50));
                let thr = |c: Option<&Cell>| Some(c?.ops_per_sec() / direct?.ops_per_sec());
                let (p11_ovh, shim_ovh) = (ovh(p11), ovh(shim));
                let ratio = match (p11_ovh, shim_ovh) {
                    (Some(p), Some(s)) if p > 0.0 => Some(s / p),
                    _ => None,
                };
                let (p11_thr, shim_thr) = (thr(p11), thr(shim));
                let fmt = |v: Option<f64>, unit: &str, prec: usize| match v {
                    Some(v) => format!("{v:.prec$}{unit}"),
                    None => "-".to_string(),
                };
                let target = if w.is_cheap() && t == 1 {
                    ratio
                        .map(|r| format!("ratio {}", verdict(r <= OVERHEAD_RATIO_TARGET)))
                        .unwrap_or_default()
                } else if w == Workload::EcdsaSign && t == 4 {
                    shim_thr
                        .map(|r| format!("throughput {}", verdict(r >= ECDSA_THROUGHPUT_TARGET)))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                println!(
                    "{:<14} {:>3} | {:>12} {:>10} {:>8} | {:>15} {:>10}   {}",
                    w.name(),
                    t,
                    fmt(p11_ovh, " µs", 1),
                    fmt(shim_ovh, " µs", 1),
                    fmt(ratio, "", 2),
                    fmt(p11_thr, "", 2),
                    fmt(shim_thr, "", 2),
                    target
                );
            }
        }
    }

    /// shim+obs against shim, cell by cell: what the metrics and the audit
    /// trail cost the data path, and the sidecar CPU time they add.
    fn print_observe(&self) {
        if !(self.backends.contains(&Backend::Shim) && self.backends.contains(&Backend::ShimObs)) {
            return;
        }
        println!();
        println!(
            "observability = shim+obs (sidecar with --metrics-addr and --audit-file) vs shim (--no-audit, no metrics)"
        );
        println!(
            "thrpt = shim+obs ops/s / shim ops/s (target >= {OBSERVE_THROUGHPUT_TARGET} for ecdsa-p256 at 4 threads)"
        );
        println!("p50 diff = shim+obs p50 - shim p50 (target <= {OBSERVE_P50_TARGET_US} µs for random and get-attribute at 1 thread)");
        println!("sidecar CPU = time its threads spent on CPU per op, shim / shim+obs; audit = the audit thread's part, and its share of one CPU");
        println!(
            "{:<14} {:>3} | {:>9} {:>9} {:>6} | {:>9} {:>9} | {:>9} {:>9} {:>9} {:>6}   target",
            "workload",
            "thr",
            "p50 diff",
            "p99 diff",
            "thrpt",
            "shim p50",
            "obs p50",
            "cpu shim",
            "cpu obs",
            "audit",
            "audit%"
        );
        let fmt = |v: Option<f64>, unit: &str, prec: usize| match v {
            Some(v) => format!("{v:.prec$}{unit}"),
            None => "-".to_string(),
        };
        for &w in &self.workloads {
            for &t in &self.threads {
                let shim = self.cell(Backend::Shim, w, t);
                let obs = self.cell(Backend::ShimObs, w, t);
                let both = shim.zip(obs);
                let p50_diff = both.map(|(s, o)| micros(o.p50) - micros(s.p50));
                let p99_diff = both.map(|(s, o)| micros(o.p99) - micros(s.p99));
                let thrpt = both.map(|(s, o)| o.ops_per_sec() / s.ops_per_sec());
                let per_op =
                    |c: Option<&Cell>, d: fn(&CellCpu) -> Duration| c.map(|c| micros(d(&c.cpu)) / c.ops.max(1) as f64);
                let audit_share = obs.map(|c| 100.0 * c.cpu.audit.as_secs_f64() / c.elapsed.as_secs_f64());
                let target = if w == Workload::EcdsaSign && t == 4 {
                    thrpt
                        .map(|r| format!("throughput {}", verdict(r >= OBSERVE_THROUGHPUT_TARGET)))
                        .unwrap_or_default()
                } else if matches!(w, Workload::Random | Workload::GetAttribute) && t == 1 {
                    p50_diff
                        .map(|d| format!("p50 {}", verdict(d <= OBSERVE_P50_TARGET_US)))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                println!(
                    "{:<14} {:>3} | {:>9} {:>9} {:>6} | {:>9} {:>9} | {:>9} {:>9} {:>9} {:>6}   {}",
                    w.name(),
                    t,
                    fmt(p50_diff, " µs", 2),
                    fmt(p99_diff, " µs", 1),
                    fmt(thrpt, "", 3),
                    fmt(shim.map(|c| micros(c.p50)), " µs", 1),
                    fmt(obs.map(|c| micros(c.p50)), " µs", 1),
                    fmt(per_op(shim, |c| c.server), " µs", 2),
                    fmt(per_op(obs, |c| c.server), " µs", 2),
                    fmt(per_op(obs, |c| c.audit), " µs", 2),
                    fmt(audit_share, "%", 1),
                    target
                );
            }
        }
        if let Some(o) = &self.observed {
            let measured: u64 = self
                .cells
                .iter()
                .filter(|(k, _)| {
                    k.backend == Backend::ShimObs && matches!(k.workload, Workload::EcdsaSign | Workload::RsaSign)
                })
                .filter_map(|(_, c)| c.as_ref().ok().map(|c| c.ops))
                .sum();
            println!(
                "  shim+obs /metrics after the run: {} C_Sign calls counted ({measured} measured sign ops, warm-ups not included), {} C_GenerateRandom",
                o.sign_calls, o.random_calls
            );
            println!(
                "  shim+obs audit file: {} lines (hsmbridge_sidecar_audit_lines_total {}, dropped {})",
                o.audit_file_lines, o.audit_lines_counted, o.audit_dropped
            );
        }
    }

    fn print_memory(&self) {
        println!();
        println!("memory (VmRSS)");
        for (b, &(start, after)) in &self.sidecar_rss {
            let after = after.unwrap_or(start);
            println!(
                "  hsm-sidecar ({}) idle: {:.1} MiB after start, {:.1} MiB after the run (target < {SIDECAR_RSS_TARGET_MIB} MiB: {})",
                b.name(),
                mib(start),
                mib(after),
                verdict(mib(start.max(after)) < SIDECAR_RSS_TARGET_MIB)
            );
        }
        if self.rss.is_empty() {
            return;
        }
        println!(
            "  {:<40} {:>9} {:>9} {:>12} {:>9}",
            "app process (fresh child), MiB", "before", "+dlopen", "+C_Initialize", "+in use"
        );
        for (b, r) in &self.rss {
            let d = |v: u64| format!("+{:.1}", mib(v.saturating_sub(r.before)));
            println!(
                "  {:<40} {:>9.1} {:>9} {:>12} {:>9}",
                format!("{} ({})", b.name(), module_name(*b)),
                mib(r.before),
                d(r.loaded),
                d(r.initialized),
                d(r.in_use)
            );
        }
        if let Some(r) = self.rss.get(&Backend::Shim) {
            let added = mib(r.in_use.saturating_sub(r.before));
            println!(
                "  the shim adds {added:.1} MiB to the app in use (session, login, one call) (target < {SHIM_RSS_TARGET_MIB} MiB: {})",
                verdict(added < SHIM_RSS_TARGET_MIB)
            );
        }
        println!("  (\"in use\" = after C_OpenSession, C_Login and one C_GenerateRandom)");
    }
}

fn module_name(b: Backend) -> &'static str {
    match b {
        Backend::Direct => "libsofthsm2.so",
        Backend::P11Kit => "p11-kit-client.so",
        Backend::Shim | Backend::ShimObs => "libhsmbridge_pkcs11.so",
    }
}
