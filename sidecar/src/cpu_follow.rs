//! Serving a call on the CPU its caller runs on. A cross-CPU wake-up costs
//! tens of µs on a VM (an IPI to a halted vCPU), and a call has two; when
//! the connection's thread sits on the caller's CPU the hand-over is a
//! local switch. `make bench`, ECDSA P-256, 2 CPUs, shim/direct throughput:
//! 2 threads 0.43-0.47 without, 0.83-0.91 with; 4 threads 0.69-0.75
//! without, 0.94-1.10 with.
//!
//! The thread follows at once: rate-limiting the moves measured worse.

pub struct CpuFollower {
    enabled: bool,
    /// The CPU (plus one) this thread is bound to; 0 before the first move.
    bound: u32,
}

impl CpuFollower {
    pub fn new(enabled: bool) -> Self {
        CpuFollower { enabled, bound: 0 }
    }

    /// `caller_cpu` is the request's field: the caller's CPU plus one, or 0.
    pub fn follow(&mut self, caller_cpu: u32) {
        if !self.enabled || caller_cpu == 0 || caller_cpu == self.bound {
            return;
        }
        if bind_current_thread((caller_cpu - 1) as usize) {
            self.bound = caller_cpu;
        } else {
            // Not ours to use (a cpuset without it, say): stop trying.
            self.enabled = false;
        }
    }
}

fn bind_current_thread(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: cpu_set_t is plain data, zeroed is the empty set; CPU_SET is
    // given an index checked against the set's size; 0 = this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed_cpus() -> Vec<usize> {
        // SAFETY: as in bind_current_thread; the set is read with CPU_ISSET below the set's size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set), 0);
            (0..libc::CPU_SETSIZE as usize).filter(|c| libc::CPU_ISSET(*c, &set)).collect()
        }
    }

    // Each test runs in a thread of its own: binding changes the calling thread only.
    fn in_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().expect("test thread");
    }

    #[test]
    fn follows_the_callers_cpu() {
        in_thread(|| {
            let cpus = allowed_cpus();
            let last = *cpus.last().expect("some CPU");
            let mut f = CpuFollower::new(true);
            f.follow(last as u32 + 1);
            assert_eq!(allowed_cpus(), vec![last]);
            // SAFETY: no arguments.
            assert_eq!(unsafe { libc::sched_getcpu() }, last as i32);
            f.follow(cpus[0] as u32 + 1);
            assert_eq!(allowed_cpus(), vec![cpus[0]]);
        });
    }

    #[test]
    fn unknown_cpu_and_disabled_follower_leave_the_thread_alone() {
        in_thread(|| {
            let before = allowed_cpus();
            CpuFollower::new(true).follow(0);
            CpuFollower::new(false).follow(before[0] as u32 + 1);
            assert_eq!(allowed_cpus(), before);
        });
    }

    #[test]
    fn a_cpu_outside_the_set_turns_following_off() {
        in_thread(|| {
            let before = allowed_cpus();
            let mut f = CpuFollower::new(true);
            f.follow(libc::CPU_SETSIZE as u32 + 7);
            assert!(!f.enabled);
            f.follow(before[0] as u32 + 1);
            assert_eq!(allowed_cpus(), before, "a disabled follower never binds");
            let outside = (0..libc::CPU_SETSIZE as usize - 1).find(|c| !before.contains(c)).expect("a CPU not ours");
            let mut f = CpuFollower::new(true);
            f.follow(outside as u32 + 1);
            assert!(!f.enabled);
            assert_eq!(allowed_cpus(), before);
        });
    }
}
