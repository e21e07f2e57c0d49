//! The measured table: per workload, thread count and backend the median and
//! spread over the runs of throughput, p50 and p99, and the CPU one thousand
//! calls cost the application's threads and the server; then the cells that
//! failed and the cells other processes disturbed.

use std::time::Duration;

use super::spread::Spread;
use super::{CellKey, Report};
use crate::backend::Backend;
use crate::measure::Cell;
use crate::run::micros;
use crate::workload::Workload;

/// CPU other processes may use during a cell (share of one CPU) before the
/// report calls the cell disturbed.
const DISTURBED_SHARE: f64 = 0.05;
/// Disturbed cells named at most; the rest are counted.
const DISTURBED_NAMED: usize = 6;

/// CPU time per 1,000 calls, in ms (numerically, µs per call).
pub fn per_1000_ms(d: Duration, c: &Cell) -> f64 {
    d.as_secs_f64() * 1e3 * 1000.0 / c.ops.max(1) as f64
}

/// The client's and the server's CPU per 1,000 calls, in ms.
pub fn total_per_1000_ms(c: &Cell) -> f64 {
    per_1000_ms(c.cpu.client + c.cpu.server, c)
}

/// Context switches per call, client and server together.
fn switches_per_call(c: &Cell) -> f64 {
    c.cpu.switches as f64 / c.ops.max(1) as f64
}

impl Report {
    pub(super) fn print_table(&self) {
        println!();
        println!("median (min-max) over {} runs; CPU = ms per 1,000 calls (µs per call): client = the benchmark threads (CLOCK_THREAD_CPUTIME_ID), server = the RPC server's threads (schedstat); sw = context switches per call, both sides", self.runs.len());
        println!(
            "{:<14} {:>3} {:<10} | {:>24} | {:>22} | {:>22} | {:>7} {:>7} {:>22} | {:>5}",
            "workload", "thr", "backend", "ops/s", "p50 µs", "p99 µs", "client", "server", "CPU total", "sw"
        );
        for &w in &self.workloads {
            for &t in &self.threads {
                for (i, &b) in self.backends.iter().enumerate() {
                    let (name, thr) = if i == 0 {
                        (w.name(), t.to_string())
                    } else {
                        ("", String::new())
                    };
                    let ops = self.each_run(b, w, t, Cell::ops_per_sec);
                    if ops.iter().all(Option::is_none) {
                        let failed = (0..self.runs.len()).any(|r| self.failure(r, b, w, t).is_some());
                        println!(
                            "{name:<14} {thr:>3} {:<10} | {:>24} |",
                            b.name(),
                            if failed { "failed" } else { "-" }
                        );
                        continue;
                    }
                    println!(
                        "{name:<14} {thr:>3} {:<10} | {:>24} | {:>22} | {:>22} | {:>7} {:>7} {:>22} | {:>5}",
                        b.name(),
                        Spread::show(&ops, 0),
                        Spread::show(&self.each_run(b, w, t, |c| micros(c.p50)), 1),
                        Spread::show(&self.each_run(b, w, t, |c| micros(c.p99)), 1),
                        Spread::median_of(&self.each_run(b, w, t, |c| per_1000_ms(c.cpu.client, c)), 2),
                        Spread::median_of(&self.each_run(b, w, t, |c| per_1000_ms(c.cpu.server, c)), 2),
                        Spread::show(&self.each_run(b, w, t, total_per_1000_ms), 2),
                        Spread::median_of(&self.each_run(b, w, t, switches_per_call), 2),
                    );
                }
            }
        }
        for (run, cells) in self.runs.iter().enumerate() {
            for (k, r) in cells {
                if let Err(e) = r {
                    let (b, w, t) = (k.backend.name(), k.workload.name(), k.threads);
                    println!("failed: run {} {b} {w} x{t}: {e}", run + 1);
                }
            }
        }
        self.print_disturbed();
    }

    fn failure(&self, run: usize, b: Backend, w: Workload, t: usize) -> Option<&str> {
        let key = CellKey {
            backend: b,
            workload: w,
            threads: t,
        };
        self.runs.get(run)?.get(&key)?.as_ref().err().map(String::as_str)
    }

    /// The CPU processes outside the benchmark took while cells were measured.
    fn print_disturbed(&self) {
        let shares: Vec<(usize, &CellKey, f64)> = self
            .runs
            .iter()
            .enumerate()
            .flat_map(|(run, cells)| {
                cells.iter().filter_map(move |(k, c)| {
                    let c = c.as_ref().ok()?;
                    Some((run, k, c.cpu.others.as_secs_f64() / c.elapsed.as_secs_f64()))
                })
            })
            .collect();
        let Some(max) = shares.iter().map(|(_, _, s)| *s).reduce(f64::max) else {
            return;
        };
        let mut disturbed: Vec<&(usize, &CellKey, f64)> =
            shares.iter().filter(|(_, _, s)| *s > DISTURBED_SHARE).collect();
        let count = disturbed.len();
        disturbed.sort_by(|a, b| b.2.total_cmp(&a.2));
        let named: Vec<String> = disturbed
            .iter()
            .take(DISTURBED_NAMED)
            .map(|(run, k, s)| {
                format!(
                    "run {} {} {} x{} {:.0}%",
                    run + 1,
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
            if count == 0 {
                String::new()
            } else {
                let more = count.saturating_sub(DISTURBED_NAMED);
                format!(
                    "; over {:.0}% (numbers suspect) in {count} of {} cells: {}{}",
                    100.0 * DISTURBED_SHARE,
                    shares.len(),
                    named.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                )
            }
        );
    }
}
