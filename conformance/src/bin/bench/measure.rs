//! One cell of the table: a workload at N threads, each thread in its own
//! session, for a fixed wall-clock duration after a warm-up.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use cryptoki_sys::*;

use crate::cpu::{self, CellCpu, Sample};
use crate::p11::{self, Fl};
use crate::worker::Plan;
use crate::workload::{Keys, Scratch, Workload};

pub struct Cell {
    pub ops: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// Where the CPU went while the cell was measured.
    pub cpu: CellCpu,
}

impl Cell {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

struct ThreadRun {
    latencies_ns: Vec<u64>,
    elapsed: Duration,
    /// This thread's CPU time over the measured window.
    cpu: Duration,
    /// Its context switches over the window.
    switches: u64,
}

pub fn run_cell(
    f: Fl,
    slot: CK_SLOT_ID,
    keys: Keys,
    workload: Workload,
    threads: usize,
    plan: &Plan,
) -> Result<Cell, String> {
    let (warmup, duration, server_pid) = (plan.warmup, plan.duration, plan.server_pid);
    // This thread waits at the barrier too, so that it samples the CPU
    // counters when the measuring starts (after every thread's warm-up).
    let barrier = Barrier::new(threads + 1);
    let (runs, mut cpu): (Vec<Result<ThreadRun, String>>, _) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| one_thread(f, slot, &keys, workload, &barrier, warmup, duration)))
            .collect();
        barrier.wait();
        let start = Sample::take(server_pid);
        let runs = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("benchmark thread panicked".into())))
            .collect();
        (runs, Sample::take(server_pid).since(&start))
    });

    let mut all = Vec::new();
    let mut elapsed = Duration::ZERO;
    for run in runs {
        let run = run?;
        elapsed = elapsed.max(run.elapsed);
        cpu.client += run.cpu;
        cpu.switches += run.switches;
        all.extend_from_slice(&run.latencies_ns);
    }
    if all.is_empty() {
        return Err("no op completed".into());
    }
    all.sort_unstable();
    Ok(Cell {
        ops: all.len() as u64,
        elapsed,
        p50: Duration::from_nanos(percentile(&all, 50.0)),
        p99: Duration::from_nanos(percentile(&all, 99.0)),
        cpu,
    })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn one_thread(
    f: Fl,
    slot: CK_SLOT_ID,
    keys: &Keys,
    workload: Workload,
    barrier: &Barrier,
    warmup: Duration,
    duration: Duration,
) -> Result<ThreadRun, String> {
    let mut x = Scratch::default();
    // Open the session and warm up before the barrier; every thread reaches
    // the barrier even when that fails, so the others are not left waiting.
    let prepared = p11::open_session(f, slot, false).and_then(|s| {
        let end = Instant::now() + warmup;
        let mut warm = Ok(());
        while warm.is_ok() && Instant::now() < end {
            warm = workload.run(f, s, keys, &mut x);
        }
        match warm {
            Ok(()) => Ok(s),
            Err(e) => {
                p11::close_session(f, s);
                Err(e)
            }
        }
    });
    barrier.wait();
    let s = prepared?;

    let mut latencies_ns = Vec::with_capacity(1 << 16);
    let cpu_start = cpu::thread_cpu();
    let switches_start = cpu::thread_switches();
    let start = Instant::now();
    let end = start + duration;
    let mut result = Ok(());
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        if let Err(e) = workload.run(f, s, keys, &mut x) {
            result = Err(e);
            break;
        }
        latencies_ns.push(t0.elapsed().as_nanos() as u64);
    }
    let elapsed = start.elapsed();
    let cpu = cpu::thread_cpu().saturating_sub(cpu_start);
    let switches = cpu::thread_switches().saturating_sub(switches_start);
    p11::close_session(f, s);
    result.map(|()| ThreadRun {
        latencies_ns,
        elapsed,
        cpu,
        switches,
    })
}
