//! CPU affinity for the single-thread cells, opt-in since issue 11
//! (`--pin-single-thread yes`): by default nothing is pinned, because
//! applications are not, and the targets are stated for that case.
//!
//! Why pinning existed: on a small VM a cross-CPU wake-up (the client sends,
//! the server thread sleeping on the other vCPU is woken by an IPI, and back)
//! can cost tens of µs each way, and whether a client/server pair lands on
//! one CPU or two is up to the scheduler, run by run. That noise swamps the
//! few µs of transport overhead the 1-thread cells measure, for p11-kit and
//! the shim alike. Pinned, a 1-thread cell runs the client and its server
//! (every thread of the server process and of its children) on one CPU: both
//! then pay a plain context switch per direction, the floor of any socket
//! design. Cells with more threads run on all CPUs.

use std::mem::MaybeUninit;

use libc::cpu_set_t;

/// The calling thread's affinity mask.
pub fn current() -> Result<cpu_set_t, String> {
    let mut set = MaybeUninit::<cpu_set_t>::zeroed();
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<cpu_set_t>(), set.as_mut_ptr()) };
    if rc != 0 {
        return Err(format!("sched_getaffinity: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: zero-initialized and filled in by the kernel.
    Ok(unsafe { set.assume_init() })
}

/// A mask holding only the lowest CPU of `set`.
pub fn first_of(set: &cpu_set_t) -> cpu_set_t {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut one: cpu_set_t = unsafe { std::mem::zeroed() };
    let bits = 8 * std::mem::size_of::<cpu_set_t>();
    // SAFETY: `cpu` < the set's bit size, as the CPU_* functions require.
    if let Some(cpu) = (0..bits).find(|&cpu| unsafe { libc::CPU_ISSET(cpu, set) }) {
        // SAFETY: `cpu` < the bit size of `one`, a cpu_set_t like `set`.
        unsafe { libc::CPU_SET(cpu, &mut one) };
    }
    one
}

fn set_thread(tid: libc::pid_t, set: &cpu_set_t) -> Result<(), String> {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<cpu_set_t>(), set) };
    if rc != 0 {
        return Err(format!("sched_setaffinity({tid}): {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Sets the calling thread's mask; threads it spawns afterwards inherit it.
pub fn set_self(set: &cpu_set_t) -> Result<(), String> {
    set_thread(0, set)
}

/// Sets the mask of every thread of process `pid` and of its descendants
/// (p11-kit's server forks per connection).
pub fn set_process_tree(pid: u32, set: &cpu_set_t) -> Result<(), String> {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|s| s.parse::<libc::pid_t>().ok()) else {
            continue;
        };
        // A thread may end between the listing and the call; that is fine.
        let _ = set_thread(tid, set);
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            let _ = set_process_tree(child, set);
        }
    }
    Ok(())
}
