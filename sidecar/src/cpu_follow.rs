//! Serving a call on the CPU its caller runs on. A cross-CPU wake-up costs
//! tens of µs on a VM (an IPI to a halted vCPU), and a call has two; when
//! the connection's thread sits on the caller's CPU the hand-over is a
//! local switch. `make bench`, ECDSA P-256, 2 CPUs, shim/direct throughput:
//! 2 threads 0.43-0.47 without, 0.83-0.91 with; 4 threads 0.69-0.75
//! without, 0.94-1.10 with.
//!
//! The thread follows at once: rate-limiting the moves measured worse. A CPU it may not use
//! (another container's exclusive CPU) unbinds it instead.

pub struct CpuFollower {
    enabled: bool,
    /// The CPU (plus one) this thread is bound to; 0 while it is not.
    bound: u32,
    /// A CPU (plus one) that could not be bound (not in this container's cpuset, say): not
    /// tried again until the caller moves elsewhere.
    refused: u32,
    /// The thread's CPUs before the first move, restored when a move fails, so a thread never
    /// stays bound to a CPU it no longer follows.
    original: Option<libc::cpu_set_t>,
}

impl CpuFollower {
    pub fn new(enabled: bool) -> Self {
        CpuFollower {
            enabled,
            bound: 0,
            refused: 0,
            original: None,
        }
    }

    /// `caller_cpu` is the request's field: the caller's CPU plus one, or 0. CPUs beyond
    /// CPU_SETSIZE (1024) are not followed.
    pub fn follow(&mut self, caller_cpu: u32) {
        if !self.enabled || caller_cpu == 0 || caller_cpu == self.bound || caller_cpu == self.refused {
            return;
        }
        if self.original.is_none() {
            self.original = current_affinity();
            if self.original.is_none() {
                self.enabled = false;
                return;
            }
        }
        if bind_current_thread((caller_cpu - 1) as usize) {
            self.bound = caller_cpu;
            self.refused = 0;
        } else {
            self.refused = caller_cpu;
            if self.bound != 0 {
                if let Some(set) = &self.original {
                    set_affinity(set);
                }
                self.bound = 0;
            }
        }
    }

    /// Stops following: the thread may run on all its CPUs again (its caller polls for the answer
    /// on its own CPU, see `server/waiting.rs`).
    pub fn release(&mut self) {
        if self.bound != 0 {
            if let Some(set) = &self.original {
                set_affinity(set);
            }
            self.bound = 0;
        }
    }
}

fn current_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; the kernel fills at most its size; 0 = this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0).then_some(set)
    }
}

fn set_affinity(set: &libc::cpu_set_t) -> bool {
    // SAFETY: a valid cpu_set_t of the size given; 0 = this thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
}

fn bind_current_thread(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: zeroed is the empty set; CPU_SET is given an index checked against its size.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    set_affinity(&set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed_cpus() -> Vec<usize> {
        let set = current_affinity().expect("sched_getaffinity");
        // SAFETY: CPU_ISSET reads the set below its size.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|c| unsafe { libc::CPU_ISSET(*c, &set) })
            .collect()
    }

    // Each test runs in a thread of its own: binding changes the calling thread only.
    fn in_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().expect("test thread");
    }

    /// A CPU number this process may not use.
    fn outside(allowed: &[usize]) -> usize {
        (0..libc::CPU_SETSIZE as usize - 1)
            .find(|c| !allowed.contains(c))
            .expect("a CPU not ours")
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
            if before.len() < 2 {
                eprintln!("one CPU allowed: binding to it changes nothing, nothing to check");
                return;
            }
            CpuFollower::new(true).follow(0);
            CpuFollower::new(false).follow(before[0] as u32 + 1);
            assert_eq!(allowed_cpus(), before);
        });
    }

    #[test]
    fn a_cpu_it_cannot_use_unbinds_the_thread_and_is_not_retried() {
        in_thread(|| {
            let before = allowed_cpus();
            let mut f = CpuFollower::new(true);
            f.follow(libc::CPU_SETSIZE as u32 + 7);
            assert_eq!(allowed_cpus(), before, "nothing bound");
            f.follow(before[0] as u32 + 1);
            assert_eq!(allowed_cpus(), vec![before[0]]);
            let refused = outside(&before) as u32 + 1;
            f.follow(refused);
            assert_eq!(
                allowed_cpus(),
                before,
                "back to all its CPUs, not stuck on the last one followed"
            );
            assert_eq!(f.refused, refused);
            f.follow(*before.last().expect("a CPU") as u32 + 1);
            assert_eq!(allowed_cpus(), vec![*before.last().expect("a CPU")], "follows again");
        });
    }
}
