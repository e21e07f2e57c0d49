//! No cost at rest: after a burst of calls, during which both ends poll for each other
//! (hsmbridge_proto::spin), an idle sidecar and an idle process holding the shim use (almost) no
//! CPU: the polls are bounded and nothing polls between calls once the burst is over. Checked in
//! the automatic mode and with polling forced (`--spin-us` / HSMBRIDGE_SPIN_US). One test per
//! file: the shim is process-global state.

use std::time::Duration;

use cryptoki_sys::*;
use hsmbridge_conformance::module::Module;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::SoftHsm;

/// CPU time of every thread of `pid` so far (schedstat: ns on CPU).
fn cpu_ns(pid: &str) -> u64 {
    let dir = format!("/proc/{pid}/task");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// Idle CPU allowed over 2 s: the sidecar's monitor reads a few files every 2 s; polling that did
/// not stop would take the whole 2 s.
const IDLE_LIMIT: Duration = Duration::from_millis(40);

fn burst_then_idle(spin_us: Option<&str>) {
    let args: Vec<&str> = spin_us.map(|v| vec!["--spin-us", v]).unwrap_or_default();
    let sidecar = Sidecar::start_with_args(SoftHsm::new(), None, &args);
    for (k, v) in sidecar.shim_env() {
        std::env::set_var(k, v);
    }
    match spin_us {
        Some(v) => std::env::set_var(hsmbridge_contract::ENV_SPIN_US, v),
        None => std::env::remove_var(hsmbridge_contract::ENV_SPIN_US),
    }
    let shim = Module::load(sidecar.shim_lib()).expect("load the shim");
    let f = shim.fl();
    let (init, finalize, list, open, random) = (
        f.C_Initialize.expect("C_Initialize"),
        f.C_Finalize.expect("C_Finalize"),
        f.C_GetSlotList.expect("C_GetSlotList"),
        f.C_OpenSession.expect("C_OpenSession"),
        f.C_GenerateRandom.expect("C_GenerateRandom"),
    );
    let mut slots = [0 as CK_SLOT_ID; 4];
    let mut n = slots.len() as CK_ULONG;
    let mut session: CK_SESSION_HANDLE = 0;
    let mut buf = [0u8; 32];
    // SAFETY: function pointers from the shim's function list, which lives as long as `shim`;
    // every pointer is to a local of the length passed.
    unsafe {
        assert_eq!(init(std::ptr::null_mut()), CKR_OK);
        assert_eq!(list(CK_TRUE, slots.as_mut_ptr(), &mut n), CKR_OK);
        assert_eq!(
            open(slots[0], CKF_SERIAL_SESSION, std::ptr::null_mut(), None, &mut session),
            CKR_OK
        );
        for _ in 0..2000 {
            assert_eq!(random(session, buf.as_mut_ptr(), buf.len() as CK_ULONG), CKR_OK);
        }
    }
    let sidecar_pid = sidecar.pid().expect("sidecar running").to_string();
    // Past the last poll (at most the cap, 10 ms) before the window opens.
    std::thread::sleep(Duration::from_millis(50));
    let (sidecar_before, shim_before) = (cpu_ns(&sidecar_pid), cpu_ns("self"));
    std::thread::sleep(Duration::from_secs(2));
    let sidecar_idle = Duration::from_nanos(cpu_ns(&sidecar_pid) - sidecar_before);
    let shim_idle = Duration::from_nanos(cpu_ns("self") - shim_before);
    eprintln!("spin {spin_us:?}: over 2 s idle the sidecar used {sidecar_idle:?} of CPU, this process {shim_idle:?}");
    assert!(
        sidecar_idle < IDLE_LIMIT,
        "idle sidecar used {sidecar_idle:?} of CPU in 2 s (spin {spin_us:?})"
    );
    assert!(
        shim_idle < IDLE_LIMIT,
        "idle shim process used {shim_idle:?} of CPU in 2 s (spin {spin_us:?})"
    );
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            random(session, buf.as_mut_ptr(), buf.len() as CK_ULONG),
            CKR_OK,
            "still serves"
        );
        assert_eq!(finalize(std::ptr::null_mut()), CKR_OK);
    }
}

#[test]
fn an_idle_sidecar_and_an_idle_shim_use_no_cpu_in_every_spin_mode() {
    burst_then_idle(None);
    burst_then_idle(Some("10000"));
}
