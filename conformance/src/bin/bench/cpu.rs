//! Where the CPU went while a cell was measured: the benchmark's own threads
//! (the client: each reads its `CLOCK_THREAD_CPUTIME_ID` when the measuring
//! starts and ends, so setup, warm-up and the other threads of the worker
//! do not count), the RPC server's threads
//! (from `/proc/<pid>/task/<tid>/schedstat`, nanoseconds on CPU: `stat`'s
//! clock ticks are too coarse for the sidecar's audit thread), that thread
//! alone (the sidecar names its audit writer `audit`: the one thread the
//! observability adds), and every process outside the benchmark (the
//! machine's busy time from `/proc/stat`, less this process and the
//! server): a cell another build shared the CPUs with is not a measurement.
//! It also counts the context switches of both sides (the client's from
//! `getrusage(RUSAGE_THREAD)`, the server's from each thread's `status`):
//! where CPUs are busy, a hand-over's cost is mostly its switches.

use std::collections::BTreeMap;
use std::time::Duration;

/// Name of the sidecar's audit writer thread (sidecar/src/audit/writer.rs).
const AUDIT_THREAD: &str = "audit";

/// What was spent on CPU between two samples.
#[derive(Clone, Copy, Default)]
pub struct CellCpu {
    /// The benchmark threads, summed: the application's side of the calls
    /// (the module it loaded, including any polling the shim does).
    pub client: Duration,
    /// The server process and its children (p11-kit forks per connection).
    pub server: Duration,
    /// The server's `audit` thread.
    pub audit: Duration,
    /// Every other process on the machine.
    pub others: Duration,
    /// Context switches (voluntary and not) of the benchmark threads and of the server's.
    pub switches: u64,
}

/// CPU counters at one instant.
pub struct Sample {
    /// Per server thread: its name, its time on CPU (ns) and its context switches.
    server: BTreeMap<u32, (String, u64, u64)>,
    /// The machine's busy time (all CPUs) and this process's, in clock ticks.
    busy_ticks: u64,
    self_ticks: u64,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Busy ticks of all CPUs: the first line of /proc/stat less idle and iowait.
fn busy_ticks() -> u64 {
    let stat = read("/proc/stat");
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let (idle, iowait) = (v.get(3).copied().unwrap_or(0), v.get(4).copied().unwrap_or(0));
    v.iter().sum::<u64>() - idle - iowait
}

/// utime + stime of this process (all its threads, ended ones included).
fn self_ticks() -> u64 {
    let stat = read("/proc/self/stat");
    // The fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum()
}

fn ticks(n: u64) -> Duration {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Duration::from_nanos(n * 1_000_000_000 / hz.max(1) as u64)
}

/// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`); zero if the
/// clock cannot be read, which Linux does not do for this clock.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // the kernel knows, and the call has no other memory effects.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// The calling thread's context switches, voluntary and not (0 if unknown).
pub fn thread_switches() -> u64 {
    // SAFETY: all-zero bytes are a valid `rusage` (integers and timevals).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; RUSAGE_THREAD asks for the calling thread only.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return 0;
    }
    (ru.ru_nvcsw.max(0) + ru.ru_nivcsw.max(0)) as u64
}

/// `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` of a task's `status`.
fn switches_in(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        })
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}

/// Adds the threads of `pid` and of its descendants to `out`.
fn threads_of(pid: u32, out: &mut BTreeMap<u32, (String, u64, u64)>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let dir = task.path();
        let dir = dir.display();
        // A thread may end between the listing and the read; it then counts as absent.
        if let Some(ns) = read(&format!("{dir}/schedstat"))
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
        {
            let switches = switches_in(&read(&format!("{dir}/status")));
            out.insert(tid, (read(&format!("{dir}/comm")).trim_end().to_string(), ns, switches));
        }
        for child in read(&format!("{dir}/children"))
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
        {
            threads_of(child, out);
        }
    }
}

impl Sample {
    pub fn take(server_pid: Option<u32>) -> Sample {
        let mut server = BTreeMap::new();
        if let Some(pid) = server_pid {
            threads_of(pid, &mut server);
        }
        Sample {
            server,
            busy_ticks: busy_ticks(),
            self_ticks: self_ticks(),
        }
    }

    /// CPU time since `earlier`. A server thread started in between counts
    /// from 0; one that ended in between is lost (the shim keeps its
    /// connections in a pool, so their sidecar threads outlive a cell).
    pub fn since(&self, earlier: &Sample) -> CellCpu {
        let mut cpu = CellCpu::default();
        for (tid, (comm, ns, switches)) in &self.server {
            let (before, switched_before) = earlier.server.get(tid).map(|(_, ns, sw)| (*ns, *sw)).unwrap_or((0, 0));
            let spent = Duration::from_nanos(ns.saturating_sub(before));
            cpu.switches += switches.saturating_sub(switched_before);
            cpu.server += spent;
            if comm == AUDIT_THREAD {
                cpu.audit += spent;
            }
        }
        let busy = ticks(self.busy_ticks.saturating_sub(earlier.busy_ticks));
        let mine = ticks(self.self_ticks.saturating_sub(earlier.self_ticks));
        cpu.others = busy.saturating_sub(mine).saturating_sub(cpu.server);
        cpu
    }
}
