//! The shim's calls that poll go through the connection's ring (hsmbridge_proto::ring), and the
//! others over the socket: this process looks into its own mapping of the ring after each kind
//! of call. One test per file: the shim is process-global state.

use std::sync::atomic::{AtomicU32, Ordering};

use cryptoki_sys::*;
use hsmbridge_conformance::module::Module;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::{SoftHsm, USER_PIN};
use hsmbridge_proto::ring::{ON_SOCKET, REQUEST_SLOT, SLOT};
use hsmbridge_proto::wire::{request::Call, Request};
use prost::Message;

/// The start addresses of this process's mappings of a ring's memfd.
fn rings() -> Vec<usize> {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter(|l| l.contains("memfd:hsmbridge-ring"))
        .filter_map(|l| l.split('-').next().and_then(|a| usize::from_str_radix(a, 16).ok()))
        .collect()
}

/// What one ring of this process holds now.
struct Seen {
    req_seq: u32,
    ans_seq: u32,
    ans_len: u32,
    req_len: u32,
    /// The request slot decodes as a request (of `req_len` bytes), and which call it is.
    request: Option<Request>,
    /// The whole request slot.
    slot: Vec<u8>,
}

fn look(base: usize) -> Seen {
    let word = |off: usize| {
        // SAFETY: `base` is the start of a live RING_BYTES mapping of this process (read from
        // /proc/self/maps while the shim holds it), page-aligned; the control words are u32s.
        unsafe { (*((base + off) as *const AtomicU32)).load(Ordering::SeqCst) }
    };
    let req_len = word(4);
    let mut slot = vec![0u8; SLOT];
    // SAFETY: as above; the request slot lies inside the mapping.
    unsafe { std::ptr::copy_nonoverlapping((base + REQUEST_SLOT) as *const u8, slot.as_mut_ptr(), SLOT) };
    let request = slot.get(..req_len as usize).and_then(|b| Request::decode(b).ok());
    Seen {
        req_seq: word(0),
        ans_seq: word(64),
        ans_len: word(68),
        req_len,
        request,
        slot,
    }
}

/// Makes 200 calls of C_GenerateRandom: how many were answered through the ring. The bound on
/// polling adapts (a call that missed it may make the next ones block at once, over the socket):
/// most calls, not necessarily all, go through the ring.
fn through_ring(
    random: unsafe extern "C" fn(CK_SESSION_HANDLE, *mut u8, CK_ULONG) -> CK_RV,
    session: CK_SESSION_HANDLE,
    ring: usize,
) -> usize {
    let mut buf = [0u8; 32];
    let mut n = 0;
    for _ in 0..200 {
        // SAFETY: the shim's C_GenerateRandom, with a buffer of the length passed.
        let rv = unsafe { random(session, buf.as_mut_ptr(), buf.len() as CK_ULONG) };
        assert_eq!(rv, CKR_OK);
        let s = look(ring);
        if s.ans_seq == s.req_seq && s.ans_len as usize <= SLOT {
            n += 1;
        }
    }
    n
}

#[test]
fn calls_that_poll_use_the_ring_and_the_others_the_socket() {
    let sidecar = Sidecar::start_with_args(SoftHsm::new(), None, &["--spin-us", "200"]);
    for (k, v) in sidecar.shim_env() {
        std::env::set_var(k, v);
    }
    // Polling forced, so that it happens on any machine (one CPU, a quota).
    std::env::set_var(hsmbridge_contract::ENV_SPIN_US, "200");
    let shim = Module::load(sidecar.shim_lib()).expect("load the shim");
    let f = shim.fl();
    let (init, finalize, list, open, login, random) = (
        f.C_Initialize.expect("C_Initialize"),
        f.C_Finalize.expect("C_Finalize"),
        f.C_GetSlotList.expect("C_GetSlotList"),
        f.C_OpenSession.expect("C_OpenSession"),
        f.C_Login.expect("C_Login"),
        f.C_GenerateRandom.expect("C_GenerateRandom"),
    );
    let mut slots = [0 as CK_SLOT_ID; 4];
    let mut n = slots.len() as CK_ULONG;
    let mut session: CK_SESSION_HANDLE = 0;
    let mut small = [0u8; 32];
    let mut large = vec![0u8; 4 * SLOT];
    let mut pin = USER_PIN.as_bytes().to_vec();
    // SAFETY: function pointers from the shim's function list, which lives as long as `shim`;
    // every pointer is to a local of the length passed.
    unsafe {
        assert_eq!(init(std::ptr::null_mut()), CKR_OK);
        assert_eq!(list(CK_TRUE, slots.as_mut_ptr(), &mut n), CKR_OK);
        assert_eq!(
            open(slots[0], CKF_SERIAL_SESSION, std::ptr::null_mut(), None, &mut session),
            CKR_OK
        );
        assert_eq!(random(session, small.as_mut_ptr(), small.len() as CK_ULONG), CKR_OK);
    }
    let ring = match rings().as_slice() {
        [one] => *one,
        other => panic!("one connection, one ring: {other:x?}"),
    };
    // The bound on polling adapts (a call that missed it may make the next ones block at once,
    // over the socket): most calls, not all, go through the ring.
    let n = through_ring(random, session, ring);
    assert!(n >= 50, "{n} of 200 C_GenerateRandom answered through the ring");
    let seen = look(ring);
    assert!(seen.req_seq >= 200, "{} requests announced", seen.req_seq);
    assert_eq!(
        seen.ans_seq, seen.req_seq,
        "the last request was answered through the ring"
    );
    assert!(seen.ans_len as usize <= SLOT, "and its answer is in the ring");
    assert!(
        matches!(seen.request.and_then(|r| r.call), Some(Call::GenerateRandom(_))),
        "the request slot holds the last C_GenerateRandom"
    );
    // SAFETY: as above.
    unsafe {
        // A call with a PIN goes over the socket, announced in the ring.
        assert_eq!(
            login(session, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG),
            CKR_OK
        );
    }
    let after_login = look(ring);
    assert_eq!(after_login.req_seq, seen.req_seq + 1, "announced");
    assert_eq!(after_login.req_len, ON_SOCKET, "sent on the socket");
    assert_eq!(after_login.ans_len, ON_SOCKET, "answered on the socket");
    assert!(
        !after_login.slot.windows(pin.len()).any(|w| w == USER_PIN.as_bytes()),
        "no PIN was written into the ring"
    );
    // SAFETY: as above.
    unsafe {
        // An answer too large for the slot comes on the socket; the call still succeeds.
        assert_eq!(random(session, large.as_mut_ptr(), large.len() as CK_ULONG), CKR_OK);
        assert!(large.iter().any(|&b| b != 0), "random bytes came");
    }
    assert_eq!(look(ring).req_seq, seen.req_seq + 2);
    let n = through_ring(random, session, ring);
    assert!(
        n >= 50,
        "after a large answer: {n} of 200 C_GenerateRandom through the ring"
    );
    // SAFETY: as above.
    unsafe {
        assert_eq!(finalize(std::ptr::null_mut()), CKR_OK);
    }
    assert!(rings().is_empty(), "C_Finalize unmaps the ring");
}
