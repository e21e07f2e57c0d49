//! Issue 10: shim+obs against shim, cell by cell and run by run: what the
//! metrics and the audit trail cost the data path, and the sidecar CPU time
//! they add.

use super::spread::{per_run, Bound, Spread};
use super::table::per_1000_ms;
use super::targets::{Tally, MICROS, RATIO, VALUE_WIDTH};
use super::Report;
use crate::backend::Backend;
use crate::measure::Cell;
use crate::run::micros;
use crate::workload::Workload;

/// shim+obs / shim throughput for ecdsa-p256 at 4 threads.
const OBSERVE_THROUGHPUT_TARGET: f64 = 0.95;
/// shim+obs p50 - shim p50 for random and get-attribute at 1 thread.
const OBSERVE_P50_TARGET_US: f64 = 1.0;

impl Report {
    pub(super) fn print_observe(&self) {
        if !(self.backends.contains(&Backend::Shim) && self.backends.contains(&Backend::ShimObs)) {
            return;
        }
        let (obs, shim) = (Backend::ShimObs, Backend::Shim);
        let thrpt = |w, t| self.compare(obs, shim, w, t, |o: &Cell, s: &Cell| o.ops_per_sec() / s.ops_per_sec());
        let p50 = |w, t| self.compare(obs, shim, w, t, |o: &Cell, s: &Cell| micros(o.p50) - micros(s.p50));
        let p99 = |w, t| self.compare(obs, shim, w, t, |o: &Cell, s: &Cell| micros(o.p99) - micros(s.p99));
        println!();
        println!(
            "issue 10: observability = shim+obs (sidecar with --metrics-addr and --audit-file) vs shim (--no-audit, no metrics)"
        );
        let mut tally = Tally::default();
        let (ecdsa, bound) = (Workload::EcdsaSign, Some(Bound::AtLeast(OBSERVE_THROUGHPUT_TARGET)));
        tally.add(self.figure(ecdsa, 4, "shim+obs/shim ops/s", &thrpt(ecdsa, 4), &RATIO, bound));
        for w in [Workload::Random, Workload::GetAttribute] {
            let bound = Some(Bound::AtMost(OBSERVE_P50_TARGET_US));
            tally.add(self.figure(w, 1, "shim+obs p50 - shim p50", &p50(w, 1), &MICROS, bound));
        }
        tally.print("issue 10");

        let width = self.runs.len() * (VALUE_WIDTH + 1) - 1;
        println!("run by run: thrpt = shim+obs ops/s / shim ops/s, p50 and p99 diff = shim+obs - shim (µs);");
        println!("medians: sidecar CPU per op (µs), shim and shim+obs; audit = the audit thread's part, and its share of one CPU");
        println!(
            "{:<14} {:>3} | {:<width$} | {:<width$} | {:<width$} | {:>8} {:>8} {:>8} {:>6}",
            "workload", "thr", "thrpt", "p50 diff", "p99 diff", "cpu shim", "cpu obs", "audit", "audit%"
        );
        for &w in &self.workloads {
            for &t in &self.threads {
                let server = |b| Spread::median_of(&self.each_run(b, w, t, |c| per_1000_ms(c.cpu.server, c)), 2);
                let audit = Spread::median_of(&self.each_run(obs, w, t, |c| per_1000_ms(c.cpu.audit, c)), 2);
                let share = self.each_run(obs, w, t, |c| {
                    100.0 * c.cpu.audit.as_secs_f64() / c.elapsed.as_secs_f64()
                });
                println!(
                    "{:<14} {t:>3} | {} | {} | {} | {:>8} {:>8} {:>8} {:>5}%",
                    w.name(),
                    per_run(&thrpt(w, t), VALUE_WIDTH, 3, false),
                    per_run(&p50(w, t), VALUE_WIDTH, 2, true),
                    per_run(&p99(w, t), VALUE_WIDTH, 1, true),
                    server(shim),
                    server(obs),
                    audit,
                    Spread::median_of(&share, 1),
                );
            }
        }
        if let Some(o) = &self.observed {
            let measured: u64 = self
                .runs
                .iter()
                .flatten()
                .filter(|(k, _)| {
                    k.backend == Backend::ShimObs && matches!(k.workload, Workload::EcdsaSign | Workload::RsaSign)
                })
                .filter_map(|(_, c)| c.as_ref().ok().map(|c| c.ops))
                .sum();
            println!(
                "  shim+obs /metrics after the run: {} C_Sign calls counted ({measured} measured sign ops in all runs, warm-ups not included), {} C_GenerateRandom",
                o.sign_calls, o.random_calls
            );
            println!(
                "  shim+obs audit file: {} lines (hsmbridge_sidecar_audit_lines_total {}, dropped {})",
                o.audit_file_lines, o.audit_lines_counted, o.audit_dropped
            );
        }
    }
}
