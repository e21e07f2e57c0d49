//! The sidecar serves a call on its caller's CPU: the shim sends the CPU
//! along, the connection's thread binds itself to it (see
//! sidecar/src/cpu_follow.rs), and `--follow-caller-cpu false` turns that off.
//! While both ends poll for each other (sidecar/src/server/waiting.rs) the
//! thread does not follow: polling on the caller's CPU would starve it.

use cryptoki_sys::*;
use hsmbridge_conformance::module::Module;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::SoftHsm;

/// `Cpus_allowed_list` of each of the sidecar's connection threads.
fn connection_threads_cpus(pid: u32) -> Vec<String> {
    let tasks = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&tasks).unwrap_or_else(|e| panic!("{tasks}: {e}")) {
        let dir = entry.expect("task entry").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("conn-") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        if let Some(list) = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")) {
            out.push(list.trim().to_owned());
        }
    }
    out
}

fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; read with CPU_ISSET below its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|c| libc::CPU_ISSET(*c, &set))
            .collect()
    }
}

/// From a thread bound to `cpu`: C_Initialize, `calls` calls, and the sidecar's
/// connection threads' CPU lists while the connection is open.
fn call_from_cpu(shim: &Module, sidecar: &Sidecar, cpu: usize, calls: usize) -> Vec<String> {
    let f = shim.fl();
    let pid = sidecar.pid().expect("sidecar running");
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: as in allowed_cpus; `cpu` is one of ours.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                assert_eq!(
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                    0
                );
            }
            let mut info = CK_INFO::default();
            // SAFETY: the shim's own functions with valid arguments.
            unsafe {
                assert_eq!(f.C_Initialize.expect("C_Initialize")(std::ptr::null_mut()), CKR_OK);
                for _ in 0..calls {
                    assert_eq!(f.C_GetInfo.expect("C_GetInfo")(&mut info), CKR_OK);
                }
            }
            let cpus = connection_threads_cpus(pid);
            // SAFETY: as above.
            unsafe { assert_eq!(f.C_Finalize.expect("C_Finalize")(std::ptr::null_mut()), CKR_OK) };
            cpus
        })
        .join()
        .expect("calling thread")
    })
}

#[test]
fn the_connection_thread_runs_on_the_callers_cpu_unless_turned_off() {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("one CPU only: following is not observable here");
        return;
    }
    let last = *cpus.last().expect("a CPU");
    let off = Sidecar::start_with_args(SoftHsm::new(), None, &["--follow-caller-cpu", "false"]);
    let shim = Module::load(off.shim_lib()).expect("load the shim");
    std::env::set_var("HSMBRIDGE_SOCKET", off.socket());
    let unbound = call_from_cpu(&shim, &off, last, 1);
    assert!(!unbound.is_empty(), "a connection thread while connected");
    assert!(
        unbound.iter().all(|c| *c != last.to_string()),
        "not bound when turned off: {unbound:?}"
    );

    let sidecar = Sidecar::start();
    std::env::set_var("HSMBRIDGE_SOCKET", sidecar.socket());
    // Other connection threads may be about (the readiness probe's, the previous connection's
    // ending): one of them must be on the caller's CPU.
    let on = call_from_cpu(&shim, &sidecar, last, 1);
    assert!(
        on.contains(&last.to_string()),
        "a connection thread bound to the caller's CPU {last}: {on:?}"
    );
    let moved = call_from_cpu(&shim, &sidecar, cpus[0], 1);
    assert!(
        moved.contains(&cpus[0].to_string()),
        "follows the caller to CPU {}: {moved:?}",
        cpus[0]
    );

    // Both ends polling (forced, as the automatic mode depends on the machine's load): the first
    // call follows (the Hello's answer said the sidecar blocks), the next ones do not.
    let polling = Sidecar::start_with_args(SoftHsm::new(), None, &["--spin-us", "200"]);
    std::env::set_var("HSMBRIDGE_SOCKET", polling.socket());
    std::env::set_var(hsmbridge_contract::ENV_SPIN_US, "200");
    let free = call_from_cpu(&shim, &polling, last, 3);
    std::env::remove_var(hsmbridge_contract::ENV_SPIN_US);
    assert!(!free.is_empty(), "a connection thread while connected");
    assert!(
        free.iter().all(|c| *c != last.to_string()),
        "not bound to the caller's CPU while both ends poll: {free:?}"
    );
}
