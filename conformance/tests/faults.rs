//! The sidecar killed, hung and restarted under load, and garbage on its
//! socket: calls fail fast with a PKCS#11 error, none outlives its
//! deadline, and the same process recovers without restarting.
//!
//! One test per file: the shim is process-global state, and this file's
//! scenarios need it initialized with their own environment.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmbridge_conformance::module::Module;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::USER_PIN;

/// The shim's per-call deadline in this test.
const DEADLINE: Duration = Duration::from_millis(1500);

struct Shim {
    m: Module,
}

impl Shim {
    fn f(&self) -> &'static CK_FUNCTION_LIST {
        self.m.fl()
    }

    fn slot(&self) -> CK_SLOT_ID {
        let mut slots = [0 as CK_SLOT_ID; 8];
        let mut n = slots.len() as CK_ULONG;
        // SAFETY: `self.f()` is the function list of `self.m`, loaded while `self` lives (borrowed
        // here); `slots` has the `n` writable entries `n` says.
        let rv = unsafe { self.f().C_GetSlotList.unwrap()(CK_TRUE, slots.as_mut_ptr(), &mut n) };
        assert_eq!(rv, CKR_OK, "C_GetSlotList");
        assert!(n >= 1, "a token is present");
        slots[0]
    }

    fn open_logged_in(&self) -> CK_RV {
        self.try_open_logged_in().err().unwrap_or(CKR_OK)
    }

    fn try_open_logged_in(&self) -> Result<CK_SESSION_HANDLE, CK_RV> {
        let mut slots = [0 as CK_SLOT_ID; 8];
        let mut n = slots.len() as CK_ULONG;
        // SAFETY: `self.f()` is the function list of `self.m`, loaded while `self` lives (borrowed
        // here); `slots` has the `n` writable entries `n` says.
        let rv = unsafe { self.f().C_GetSlotList.unwrap()(CK_TRUE, slots.as_mut_ptr(), &mut n) };
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut s: CK_SESSION_HANDLE = 0;
        let flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
        // SAFETY: as above; no Notify callback, so pApplication NULL is never used; phSession is
        // the live local `s`.
        let rv = unsafe { self.f().C_OpenSession.unwrap()(slots[0], flags, std::ptr::null_mut(), None, &mut s) };
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut pin = USER_PIN.as_bytes().to_vec();
        // SAFETY: as above; pPin is `pin`, a live buffer of the `pin.len()` bytes passed.
        let rv = unsafe { self.f().C_Login.unwrap()(s, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG) };
        if rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN {
            return Err(rv);
        }
        Ok(s)
    }

    fn random(&self, s: CK_SESSION_HANDLE) -> CK_RV {
        let mut buf = [0u8; 32];
        // SAFETY: `self.f()` is the function list of `self.m`, loaded while `self` lives (borrowed
        // here); `buf` has the 32 writable bytes passed. Several threads call this at once (see
        // `load`): the shim locks with OS primitives whatever C_Initialize was given.
        unsafe { self.f().C_GenerateRandom.unwrap()(s, buf.as_mut_ptr(), 32) }
    }
}

/// Runs `threads` loops of C_GenerateRandom on their own sessions until
/// `stop`; returns, per thread, the first error and the longest call.
fn load(shim: &Arc<Shim>, threads: usize, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<(CK_RV, Duration)>> {
    (0..threads)
        .map(|_| {
            let (shim, stop) = (shim.clone(), stop.clone());
            std::thread::spawn(move || {
                let s = shim.try_open_logged_in().expect("session before the fault");
                let mut longest = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let rv = shim.random(s);
                    longest = longest.max(t.elapsed());
                    if rv != CKR_OK {
                        return (rv, longest);
                    }
                }
                (CKR_OK, longest)
            })
        })
        .collect()
}

/// SIGSTOP is asynchronous: wait until /proc shows the process stopped.
fn wait_until_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state is the field after the parenthesised command name.
        if stat.rsplit(") ").next().is_some_and(|rest| rest.starts_with('T')) {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} did not stop: {stat}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is_device_failure(rv: CK_RV) -> bool {
    matches!(rv, CKR_DEVICE_ERROR | CKR_DEVICE_REMOVED | CKR_SESSION_HANDLE_INVALID)
}

#[test]
fn sidecar_faults_fail_fast_and_recover_in_the_same_process() {
    let mut sidecar = Sidecar::start();
    for (k, v) in sidecar.shim_env() {
        std::env::set_var(k, v);
    }
    std::env::set_var("HSMBRIDGE_TIMEOUT_MS", DEADLINE.as_millis().to_string());
    let shim = Arc::new(Shim {
        m: Module::load(sidecar.shim_lib()).expect("load the shim"),
    });
    // SAFETY: `shim.f()` is the function list of `shim.m`, loaded while `shim` lives (to the end
    // of this test); pInitArgs NULL is allowed.
    assert_eq!(unsafe { shim.f().C_Initialize.unwrap()(std::ptr::null_mut()) }, CKR_OK);
    let before = shim.try_open_logged_in().expect("a logged-in session");

    // 1. Killed mid-load: every thread sees a device error, fast.
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&shim, 4, &stop);
    std::thread::sleep(Duration::from_millis(300));
    let killed_at = Instant::now();
    sidecar.kill();
    for w in workers {
        let (rv, longest) = w.join().expect("worker thread");
        assert!(is_device_failure(rv), "a call after the kill returned {rv:#x}");
        assert!(
            longest < DEADLINE,
            "a call took {longest:?}, past the {DEADLINE:?} deadline"
        );
    }
    assert!(
        killed_at.elapsed() < DEADLINE,
        "threads noticed the kill only after {:?}",
        killed_at.elapsed()
    );
    let t = Instant::now();
    let rv = shim.open_logged_in();
    assert!(is_device_failure(rv), "with the sidecar down a call returned {rv:#x}");
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "a call with no sidecar took {:?}",
        t.elapsed()
    );

    // 2. Restarted: old handles are invalid, new sessions work, no app restart.
    sidecar.restart();
    let mut rv = shim.random(before);
    if rv == CKR_DEVICE_ERROR {
        rv = shim.random(before); // the first call may find its pooled connection dead
    }
    assert_eq!(rv, CKR_SESSION_HANDLE_INVALID, "a session from before the restart");
    let after = shim.try_open_logged_in().expect("a new session after the restart");
    assert_eq!(shim.random(after), CKR_OK);
    let _ = shim.slot();

    // 3. Hung (SIGSTOP): calls end at the deadline with a device error; recovery after SIGCONT.
    let pid = sidecar.pid().expect("sidecar pid");
    // SAFETY: kill(2) takes no pointers; `pid` is our own sidecar child, running and not reaped
    // (so not reused by another process).
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    wait_until_stopped(pid);
    let t = Instant::now();
    let rv = shim.random(after);
    let took = t.elapsed();
    // SAFETY: as for SIGSTOP above: no pointers, and `pid` is still our stopped, unreaped child.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    assert_eq!(rv, CKR_DEVICE_ERROR, "a call to a hung sidecar");
    assert!(
        took >= DEADLINE - Duration::from_millis(100) && took < DEADLINE * 2,
        "a hung call took {took:?}"
    );
    let recovered = shim.try_open_logged_in().expect("a session after SIGCONT");
    assert_eq!(shim.random(recovered), CKR_OK);

    // 4. Garbage on the socket: those connections are closed, the sidecar keeps serving.
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x05, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0u8; 4],
    ] {
        let mut raw = UnixStream::connect(sidecar.socket()).expect("raw connection");
        raw.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        raw.write_all(garbage).expect("write garbage");
        let mut buf = [0u8; 64];
        let n = raw.read(&mut buf).unwrap_or(0);
        assert_eq!(
            n, 0,
            "garbage {garbage:02x?} got an answer instead of a closed connection"
        );
        assert_eq!(shim.random(recovered), CKR_OK, "the shim's own connection still works");
    }
    assert!(
        sidecar.is_running(),
        "the sidecar survived the garbage:\n{}",
        sidecar.stderr()
    );

    // SAFETY: `shim.f()` is the function list of `shim.m`, still loaded (`shim` lives to the end
    // of this test); pReserved NULL as required.
    assert_eq!(unsafe { shim.f().C_Finalize.unwrap()(std::ptr::null_mut()) }, CKR_OK);
}
