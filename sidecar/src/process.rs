//! Process-wide protections for a process that holds secrets.

use std::io;

/// Not dumpable: no core dump holds the PIN, and the pod's other processes
/// (same uid in a shared process namespace) cannot ptrace it or read its
/// memory through /proc.
pub fn harden() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers and only changes this process's flag.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Keeps freed request and answer buffers from staying in the heap: glibc
/// otherwise raises its mmap threshold after the first large free, and one
/// arena per thread multiplies what is kept. Large buffers are then mapped
/// and unmapped per call, and at most four arenas are shared by all
/// connection threads.
pub fn limit_heap() {
    // SAFETY: mallopt only sets allocator parameters; called before the connection threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

/// Raises the soft limit on open files to the hard one: each connection
/// holds a descriptor, and the connection cap is above the usual soft 1024.
pub fn raise_open_files() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill and setrlimit to read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn harden_makes_the_process_non_dumpable() {
        super::harden().expect("prctl");
        // SAFETY: PR_GET_DUMPABLE takes no pointers.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
    }
}
