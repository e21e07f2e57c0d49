//! Ratios between backends, each taken within one run (the backends of a run
//! are measured seconds apart) and printed run by run, and the targets of
//! issues 2 and 11, each met only if it holds in every run.

use super::spread::{per_run, verdict, Bound, Verdict};
use super::table::total_per_1000_ms;
use super::Report;
use crate::backend::Backend;
use crate::measure::Cell;
use crate::run::micros;
use crate::workload::Workload;

/// Issue 2: shim overhead / p11-kit overhead on cheap calls at 1 thread.
const OVERHEAD_RATIO_TARGET: f64 = 0.8;
/// Issue 11: shim / direct ECDSA throughput at 1 thread, and at 4 and 8.
const ECDSA_1T_TARGET: f64 = 0.8;
const ECDSA_MT_TARGET: f64 = 0.95;
/// Issue 11: shim / direct RSA throughput at 4 threads.
const RSA_4T_TARGET: f64 = 0.9;
/// Issue 11: what the shim may add to direct's p50 and p99 on cheap calls at 1 thread.
const P50_EXTRA_US: f64 = 5.0;
const P99_EXTRA_US: f64 = 20.0;
/// Issue 11: shim / shim-block CPU (client + server) per call, at 1 and 4 threads.
const CPU_1T_TARGET: f64 = 1.5;
const CPU_4T_TARGET: f64 = 1.0;

/// How a figure's values print.
pub struct Unit {
    pub name: &'static str,
    pub prec: usize,
    pub signed: bool,
}

pub const RATIO: Unit = Unit {
    name: "",
    prec: 2,
    signed: false,
};
pub const MICROS: Unit = Unit {
    name: " µs",
    prec: 1,
    signed: true,
};

/// Width of one run's value in the per-run lists.
pub const VALUE_WIDTH: usize = 7;

fn throughput(a: &Cell, b: &Cell) -> f64 {
    a.ops_per_sec() / b.ops_per_sec()
}

/// Targets met in every run, and the others.
#[derive(Default)]
pub struct Tally {
    met: usize,
    missed: usize,
    not_measured: usize,
}

impl Tally {
    pub fn add(&mut self, v: Option<Verdict>) {
        match v {
            Some(Verdict::Met(_)) => self.met += 1,
            Some(Verdict::Missed(_)) => self.missed += 1,
            Some(Verdict::NotMeasured) => self.not_measured += 1,
            None => {}
        }
    }

    pub fn print(&self, issue: &str) {
        println!(
            "  {issue}: {} targets met in every run, {} missed or not measured in some run, {} not measured",
            self.met, self.missed, self.not_measured
        );
    }
}

impl Report {
    /// One line: a figure run by run, and its target's verdict if it has one.
    pub(super) fn figure(
        &self,
        w: Workload,
        t: usize,
        what: &str,
        values: &[Option<f64>],
        unit: &Unit,
        bound: Option<Bound>,
    ) -> Option<Verdict> {
        let list = per_run(values, VALUE_WIDTH, unit.prec, unit.signed);
        let verdict = bound.map(|b| verdict(values, b));
        let target = match (bound, &verdict) {
            (Some(b), Some(v)) => format!("{}: {}", b.show(unit.name), v.text()),
            _ => String::new(),
        };
        println!("{:<14} {t:>3}  {what:<29} {list}{:<4} {target}", w.name(), unit.name);
        verdict
    }

    /// Every backend's throughput over direct's, cell by cell, run by run.
    pub(super) fn print_vs_direct(&self) {
        let others: Vec<Backend> = self
            .backends
            .iter()
            .copied()
            .filter(|&b| b != Backend::Direct)
            .collect();
        if !self.backends.contains(&Backend::Direct) || others.is_empty() {
            return;
        }
        let width = self.runs.len() * (VALUE_WIDTH + 1) - 1;
        println!();
        println!("throughput / direct throughput, run by run");
        print!("{:<14} {:>3} ", "workload", "thr");
        for b in &others {
            print!("| {:<width$} ", b.name());
        }
        println!();
        for &w in &self.workloads {
            for &t in &self.threads {
                print!("{:<14} {t:>3} ", w.name());
                for &b in &others {
                    let v = self.compare(b, Backend::Direct, w, t, throughput);
                    print!("| {} ", per_run(&v, VALUE_WIDTH, 2, false));
                }
                println!();
            }
        }
    }

    pub(super) fn print_targets(&self) {
        println!();
        println!("targets, run by run (ratios and differences between backends of the same run; met = in every run)");
        let mut tally = Tally::default();
        println!("issue 2: overhead = p50 - direct p50; shim overhead / p11-kit overhead on cheap calls at 1 thread");
        for &w in self.workloads.iter().filter(|w| w.is_cheap()) {
            let ratio: Vec<Option<f64>> = (0..self.runs.len())
                .map(|r| {
                    let d = micros(self.cell(r, Backend::Direct, w, 1)?.p50);
                    let p = micros(self.cell(r, Backend::P11Kit, w, 1)?.p50) - d;
                    let s = micros(self.cell(r, Backend::Shim, w, 1)?.p50) - d;
                    (p > 0.0).then(|| s / p)
                })
                .collect();
            let bound = Some(Bound::AtMost(OVERHEAD_RATIO_TARGET));
            tally.add(self.figure(w, 1, "shim ovh / p11-kit ovh", &ratio, &RATIO, bound));
        }
        tally.print("issue 2");

        let mut tally = Tally::default();
        println!("issue 11");
        let ecdsa = Workload::EcdsaSign;
        let thrpt = |b: Backend, w: Workload, t: usize| self.compare(b, Backend::Direct, w, t, throughput);
        let bound = Some(Bound::AtLeast(ECDSA_1T_TARGET));
        tally.add(self.figure(
            ecdsa,
            1,
            "shim/direct ops/s",
            &thrpt(Backend::Shim, ecdsa, 1),
            &RATIO,
            bound,
        ));
        for b in [Backend::P11Kit, Backend::ShimBlock] {
            let what = format!("{}/direct ops/s", b.name());
            self.figure(ecdsa, 1, &what, &thrpt(b, ecdsa, 1), &RATIO, None);
        }
        for w in [Workload::Random, Workload::GetAttribute] {
            let p50 = self.compare(Backend::Shim, Backend::Direct, w, 1, |s, d| {
                micros(s.p50) - micros(d.p50)
            });
            let p99 = self.compare(Backend::Shim, Backend::Direct, w, 1, |s, d| {
                micros(s.p99) - micros(d.p99)
            });
            let (b50, b99) = (Bound::AtMost(P50_EXTRA_US), Bound::AtMost(P99_EXTRA_US));
            tally.add(self.figure(w, 1, "shim p50 - direct p50", &p50, &MICROS, Some(b50)));
            tally.add(self.figure(w, 1, "shim p99 - direct p99", &p99, &MICROS, Some(b99)));
        }
        for (w, t, limit) in [
            (ecdsa, 4, ECDSA_MT_TARGET),
            (ecdsa, 8, ECDSA_MT_TARGET),
            (Workload::RsaSign, 4, RSA_4T_TARGET),
        ] {
            let bound = Some(Bound::AtLeast(limit));
            tally.add(self.figure(w, t, "shim/direct ops/s", &thrpt(Backend::Shim, w, t), &RATIO, bound));
        }
        for (t, limit) in [(1, CPU_1T_TARGET), (4, CPU_4T_TARGET)] {
            for &w in &self.workloads {
                let cpu = self.compare(Backend::Shim, Backend::ShimBlock, w, t, |s, b| {
                    total_per_1000_ms(s) / total_per_1000_ms(b)
                });
                let bound = Some(Bound::AtMost(limit));
                tally.add(self.figure(w, t, "shim/shim-block CPU per call", &cpu, &RATIO, bound));
            }
        }
        tally.print("issue 11");
    }
}
