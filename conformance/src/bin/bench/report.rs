//! The final report: per backend, workload and thread count the throughput,
//! latency and CPU per call over the runs (`table.rs`); then the targets,
//! each ratio taken between backends of the same run (`targets.rs`); then
//! what the sidecar's metrics and audit trail cost (`observability.rs`);
//! then memory.

#[path = "report/observability.rs"]
mod observability;
#[path = "report/spread.rs"]
mod spread;
#[path = "report/table.rs"]
mod table;
#[path = "report/targets.rs"]
mod targets;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::args::Options;
use crate::backend::Backend;
use crate::measure::Cell;
use crate::observe::Observed;
use crate::run::Cells;
use crate::workload::Workload;

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
    /// Per run, the cells measured in it.
    pub runs: Vec<Cells>,
    pub library: BTreeMap<Backend, String>,
    /// Per module (the first backend loading it): app-side RSS.
    pub rss: BTreeMap<Backend, RssFigures>,
    /// Per sidecar backend: its VmRSS (KiB) after start and after the run.
    pub sidecar_rss: BTreeMap<Backend, (u64, Option<u64>)>,
    /// What the `shim+obs` sidecar recorded, read after the run.
    pub observed: Option<Observed>,
    pub notes: Vec<String>,
}

/// Memory targets from issue 2.
const SIDECAR_RSS_TARGET_MIB: f64 = 30.0;
const SHIM_RSS_TARGET_MIB: f64 = 8.0;

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
            runs: (0..opts.runs).map(|_| BTreeMap::new()).collect(),
            library: BTreeMap::new(),
            rss: BTreeMap::new(),
            sidecar_rss: BTreeMap::new(),
            observed: None,
            notes: Vec::new(),
        }
    }

    fn cell(&self, run: usize, backend: Backend, workload: Workload, threads: usize) -> Option<&Cell> {
        let key = CellKey {
            backend,
            workload,
            threads,
        };
        self.runs.get(run)?.get(&key)?.as_ref().ok()
    }

    /// `f` of one backend's cell, run by run.
    fn each_run(&self, b: Backend, w: Workload, t: usize, f: impl Fn(&Cell) -> f64) -> Vec<Option<f64>> {
        (0..self.runs.len()).map(|r| self.cell(r, b, w, t).map(&f)).collect()
    }

    /// `f` of two backends' cells measured in the same run, run by run.
    fn compare(
        &self,
        a: Backend,
        b: Backend,
        w: Workload,
        t: usize,
        f: impl Fn(&Cell, &Cell) -> f64,
    ) -> Vec<Option<f64>> {
        (0..self.runs.len())
            .map(|r| Some(f(self.cell(r, a, w, t)?, self.cell(r, b, w, t)?)))
            .collect()
    }

    pub fn print(&self) {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        println!();
        println!(
            "hsmbridge bench: {} runs of {:.1} s per cell after warm-up, {cpus} CPUs, each thread in its own session",
            self.runs.len(),
            self.duration.as_secs_f64()
        );
        println!("  every run measures each cell on every backend in turn; ratios compare backends of one run");
        if self.pin_single {
            println!("  1-thread cells: client and server pinned to one CPU (--pin-single-thread yes)");
        } else {
            println!("  nothing pinned: the scheduler places client and server (--pin-single-thread yes pins 1-thread cells)");
        }
        for b in &self.backends {
            let lib = self.library.get(b).map(String::as_str).unwrap_or("?");
            println!("  {:<10} {} [{lib}]", b.name(), b.describe());
        }
        for w in &self.workloads {
            println!("  {:<14} {}", w.name(), w.describe());
        }
        self.print_table();
        self.print_vs_direct();
        self.print_targets();
        self.print_observe();
        self.print_memory();
        for n in &self.notes {
            println!("note: {n}");
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
                format!("{} ({})", b.name(), b.module_name()),
                mib(r.before),
                d(r.loaded),
                d(r.initialized),
                d(r.in_use)
            );
        }
        if let Some(r) = self.rss.iter().find(|(b, _)| b.is_sidecar()).map(|(_, r)| r) {
            let added = mib(r.in_use.saturating_sub(r.before));
            println!(
                "  the shim adds {added:.1} MiB to the app in use (session, login, one call) (target < {SHIM_RSS_TARGET_MIB} MiB: {})",
                verdict(added < SHIM_RSS_TARGET_MIB)
            );
        }
        println!("  (\"in use\" = after C_OpenSession, C_Login and one C_GenerateRandom)");
    }
}
