//! The shim's connection to hsm-sidecar: one per C_Initialize, holding a
//! small pool of Unix-socket connections (one per concurrently calling
//! thread) that together form one PKCS#11 application in the sidecar.
//!
//! No threads of our own, nothing opened before C_Initialize. A call waits for
//! its answer by polling for a bounded, adaptive time while the sidecar says
//! polling pays, then blocking (`HSMBRIDGE_SPIN_US`, proto/src/spin/mod.rs);
//! such a call goes through the connection's shared-memory ring
//! (proto/src/ring/mod.rs), the others over the socket. `pool` lends
//! connections (and joins the application again when one may have gone
//! stale), `conn` is one connection's round trip, `ring` its calls through
//! the ring, `lease` one call.

mod conn;
mod lease;
mod pool;
mod ring;

use conn::{Conn, Failed};
pub use lease::{lease, Lease};

use std::io::{self, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use cryptoki_sys::*;
use hsmbridge_proto::frame::{decode, encode_frame, read_frame_or_doorbell, shrink, DOORBELL};
use hsmbridge_proto::ring::{check_sealed, recv_with_fd, Ring, RING_BYTES, SLOT};
use hsmbridge_proto::spin::{
    poll_readable, sleep_until_readable, spin_until, Adaptive, Callers, Cpus, Mode, Outcome, Sleep,
};
use hsmbridge_proto::wire::{request::Call, response, Hello, Request, Response};
use hsmbridge_proto::PROTOCOL_VERSION;
use zeroize::Zeroize;

use crate::guard::Rv;
use crate::handles;

/// Deadline of one call, milliseconds.
pub const TIMEOUT_ENV: &str = "HSMBRIDGE_TIMEOUT_MS";
/// How long C_Initialize waits for a sidecar that is not up yet, milliseconds.
pub const CONNECT_WAIT_ENV: &str = "HSMBRIDGE_CONNECT_WAIT_MS";

static CLIENT: ArcSwapOption<Client> = ArcSwapOption::const_empty();
/// Bumped in the child after fork(): a client made before it is not the child's.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
/// Every C_Initialize and every lost connection starts a new epoch.
static NEXT_EPOCH: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    // Only atomic stores and adds: async-signal-safe, no lock that another
    // thread of the parent may have held.
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
    conn::forget_callers_after_fork();
}

pub struct Client {
    socket: PathBuf,
    timeout: Duration,
    spin: Spin,
    fork_generation: u64,
    pool: Mutex<Pool>,
}

/// How this client waits for answers: `HSMBRIDGE_SPIN_US` (hsmbridge_proto::spin), read at
/// C_Initialize; a value that is not a number of µs up to 10000 is ignored (adaptive).
struct Spin {
    mode: Mode,
    cpus: Cpus,
}

impl Spin {
    fn from_env() -> Spin {
        let value = std::env::var(hsmbridge_contract::ENV_SPIN_US).ok();
        Spin {
            mode: Mode::parse(value.as_deref()).unwrap_or(Mode::Auto),
            cpus: Cpus::of_this_process(),
        }
    }
}

struct Pool {
    epoch: u64,
    /// The sidecar's name for this application; `None` until the first connection.
    app_token: Option<Vec<u8>>,
    /// Connections idle this long may have been closed by the sidecar (its
    /// idle timeout less a margin); `None`: never.
    stale_after: Option<Duration>,
    idle: Vec<Conn>,
}

/// The calling thread's CPU plus one, 0 if unknown.
fn caller_cpu() -> u32 {
    // SAFETY: no arguments; returns -1 on failure.
    let cpu = unsafe { libc::sched_getcpu() };
    (cpu + 1).max(0) as u32
}

fn env_millis(name: &str, default: u64) -> Duration {
    let ms = std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    Duration::from_millis(ms)
}

/// The current client, unless the library is not initialized in this process.
pub fn current() -> Rv<Arc<Client>> {
    match CLIENT.load_full() {
        Some(c) if c.fork_generation == FORK_GENERATION.load(Ordering::SeqCst) => Ok(c),
        _ => Err(CKR_CRYPTOKI_NOT_INITIALIZED),
    }
}

/// C_Initialize after its arguments were checked.
pub fn initialize() -> Rv {
    static AT_FORK: Once = Once::new();
    // SAFETY: pthread_atfork only records three handlers (two NULL); the one
    // given is a plain `extern "C" fn` of the signature it expects, which lives
    // as long as the library, and does only an atomic add (async-signal-safe).
    // `Once` registers it once per process, not on every C_Initialize.
    AT_FORK.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_in_child));
    });
    let old = CLIENT.load();
    if matches!(&*old, Some(c) if c.fork_generation == FORK_GENERATION.load(Ordering::SeqCst)) {
        return Err(CKR_CRYPTOKI_ALREADY_INITIALIZED);
    }
    let client = Arc::new(Client {
        socket: std::env::var_os(hsmbridge_contract::ENV_SOCKET)
            .map(PathBuf::from)
            .unwrap_or_else(|| hsmbridge_contract::SOCKET_PATH.into()),
        timeout: env_millis(TIMEOUT_ENV, 30_000),
        spin: Spin::from_env(),
        fork_generation: FORK_GENERATION.load(Ordering::SeqCst),
        pool: Mutex::new(Pool {
            epoch: NEXT_EPOCH.fetch_add(1, Ordering::SeqCst),
            app_token: None,
            stale_after: None,
            idle: Vec::new(),
        }),
    });
    let prev = CLIENT.compare_and_swap(&old, Some(client.clone()));
    if !same(&prev, &old) {
        return Err(CKR_CRYPTOKI_ALREADY_INITIALIZED);
    }
    // A sidecar that is still starting (pod start-up) gets a moment; a
    // sidecar that is not there leaves the first call to fail fast instead.
    let deadline = Instant::now() + env_millis(CONNECT_WAIT_ENV, 10_000);
    loop {
        match client.lease() {
            Ok(lease) => break drop(lease),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break,
        }
    }
    Ok(())
}

fn same(a: &Option<Arc<Client>>, b: &Option<Arc<Client>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// C_Finalize: drops the client, closing its connections, which ends the
/// application (its sessions and login) in the sidecar.
pub fn finalize() -> Rv {
    let c = current()?;
    CLIENT.store(None);
    if let Ok(mut pool) = c.pool.lock() {
        pool.idle.clear();
    }
    Ok(())
}
