//! The shim's connection to hsm-sidecar: one per C_Initialize, holding a
//! small pool of Unix-socket connections (one per concurrently calling
//! thread) that together form one PKCS#11 application in the sidecar.
//!
//! Blocking I/O, no threads of our own, nothing opened before C_Initialize.

use std::io::{self, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use cryptoki_sys::*;
use hsmbridge_proto::frame::{read_frame, write_frame};
use hsmbridge_proto::wire::{request::Call, response, Hello, Request, Response};
use hsmbridge_proto::PROTOCOL_VERSION;
use zeroize::Zeroize;

use crate::guard::Rv;
use crate::handles;

pub const SOCKET_ENV: &str = "HSMBRIDGE_SOCKET";
pub const DEFAULT_SOCKET: &str = "/var/run/hsmbridge/pkcs11.sock";
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
    // Only an atomic add: async-signal-safe, no lock that another thread of
    // the parent may have held.
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

pub struct Client {
    socket: PathBuf,
    timeout: Duration,
    fork_generation: u64,
    pool: Mutex<Pool>,
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

pub struct Conn {
    stream: BufReader<UnixStream>,
    buf: Vec<u8>,
    /// When this connection last answered a call.
    last_used: Instant,
    /// The CPU (plus one) of this connection's last caller; the sidecar's
    /// thread for it follows its caller's CPU, so a caller prefers an idle
    /// connection last used from its own CPU.
    cpu: u32,
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
        socket: std::env::var_os(SOCKET_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| DEFAULT_SOCKET.into()),
        timeout: env_millis(TIMEOUT_ENV, 30_000),
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

impl Client {
    /// Takes an idle connection or opens one; the lease returns it when dropped.
    pub fn lease(self: &Arc<Self>) -> Rv<Lease> {
        let mut pool = self.pool.lock().map_err(|_| CKR_GENERAL_ERROR)?;
        let cpu = caller_cpu();
        let stale = match take_idle(&mut pool, cpu) {
            Ok(conn) => {
                return Ok(Lease {
                    client: self.clone(),
                    conn: Some(conn),
                    epoch: pool.epoch,
                })
            }
            Err(stale) => stale,
        };
        self.lease_cold(pool, stale, cpu)
    }

    /// `lease` without a fresh idle connection: opens one, joining the
    /// application first if it has a name. `stale`, if any, is a connection of
    /// the pool's epoch that the sidecar may have closed: it is dropped only
    /// once the new connection joined, so that the application (and its
    /// sessions) outlives it.
    #[cold]
    #[inline(never)]
    fn lease_cold<'a>(
        self: &'a Arc<Self>,
        mut pool: MutexGuard<'a, Pool>,
        mut stale: Option<Conn>,
        cpu: u32,
    ) -> Rv<Lease> {
        let mut retried = false;
        loop {
            let epoch = pool.epoch;
            let Some(token) = pool.app_token.clone() else {
                // The first connection names the application; others wait for it.
                let (conn, token, stale_after) = self.connect(Vec::new(), cpu)?;
                pool.app_token = Some(token);
                pool.stale_after = stale_after;
                drop(pool);
                drop(stale);
                return Ok(Lease {
                    client: self.clone(),
                    conn: Some(conn),
                    epoch,
                });
            };
            // Joining an existing application can happen outside the lock; the
            // pool is then checked again: another thread may have adopted a new
            // application or reset the epoch meanwhile.
            drop(pool);
            let joined = self.connect(token.clone(), cpu);
            pool = self.pool.lock().map_err(|_| CKR_GENERAL_ERROR)?;
            let unchanged = pool.epoch == epoch && pool.app_token.as_ref() == Some(&token);
            match joined {
                Ok((conn, got, stale_after)) if unchanged => {
                    if got != token {
                        // The application had ended in the sidecar: its handles are void.
                        pool.epoch = NEXT_EPOCH.fetch_add(1, Ordering::SeqCst);
                        pool.idle.clear();
                        pool.app_token = Some(got);
                    }
                    pool.stale_after = stale_after;
                    let epoch = pool.epoch;
                    drop(pool);
                    drop(stale);
                    return Ok(Lease {
                        client: self.clone(),
                        conn: Some(conn),
                        epoch,
                    });
                }
                Err(e) if unchanged => {
                    drop(pool);
                    // The join failed (e.g. the sidecar refuses connections). The
                    // stale connection is very likely still open (the sidecar
                    // keeps the last connection of an application with
                    // sessions) and closing it could end the application: this
                    // call tries it instead. If it was closed, the call fails
                    // as any lost connection does (`Lease::call`).
                    return match stale.take() {
                        Some(mut conn) => {
                            conn.cpu = cpu;
                            Ok(Lease {
                                client: self.clone(),
                                conn: Some(conn),
                                epoch,
                            })
                        }
                        None => Err(e),
                    };
                }
                // The epoch changed while we joined: whatever the new connection
                // reached (the epoch's old application or one created by the
                // join) is not the pool's application now, nor is the stale
                // connection of the current epoch. Both go; the lease is tried
                // once more.
                raced => {
                    drop(pool);
                    drop(raced);
                    drop(stale.take());
                    if retried {
                        return Err(CKR_DEVICE_ERROR);
                    }
                    retried = true;
                    pool = self.pool.lock().map_err(|_| CKR_GENERAL_ERROR)?;
                    stale = match take_idle(&mut pool, cpu) {
                        Ok(conn) => {
                            return Ok(Lease {
                                client: self.clone(),
                                conn: Some(conn),
                                epoch: pool.epoch,
                            })
                        }
                        Err(stale) => stale,
                    };
                }
            }
        }
    }

    /// Opens a connection and says hello: the connection, the application's
    /// token, and after how long an idle connection counts as stale.
    fn connect(&self, join_token: Vec<u8>, cpu: u32) -> Rv<(Conn, Vec<u8>, Option<Duration>)> {
        let stream = UnixStream::connect(&self.socket).map_err(|_| CKR_DEVICE_REMOVED)?;
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(|_| CKR_DEVICE_ERROR)?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(|_| CKR_DEVICE_ERROR)?;
        let mut conn = Conn {
            stream: BufReader::with_capacity(16 * 1024, stream),
            buf: Vec::with_capacity(256),
            last_used: Instant::now(),
            cpu,
        };
        let hello = Call::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            join_token,
        });
        let reply = conn.round_trip(hello).map_err(|_| CKR_DEVICE_ERROR)?;
        match reply.result {
            Some(response::Result::Hello(h)) if reply.rv == CKR_OK as u64 => {
                Ok((conn, h.app_token, stale_after(h.idle_timeout_ms)))
            }
            _ => Err(CKR_DEVICE_ERROR),
        }
    }

    /// Forgets every connection of `epoch`: the sidecar went away or a call
    /// missed its deadline, so handles of that epoch are void from now on.
    fn reset(&self, epoch: u64) {
        if let Ok(mut pool) = self.pool.lock() {
            if pool.epoch == epoch {
                pool.epoch = NEXT_EPOCH.fetch_add(1, Ordering::SeqCst);
                pool.app_token = None;
                pool.idle.clear();
            }
        }
    }
}

/// Takes an idle connection for a caller on `cpu`, preferring one last used
/// there: `Ok` if it may be reused, `Err(Some(_))` if it was idle so long that
/// the sidecar may have closed it, `Err(None)` if there is none.
#[inline(always)]
fn take_idle(pool: &mut Pool, cpu: u32) -> Result<Conn, Option<Conn>> {
    let here = pool.idle.iter().rposition(|c| c.cpu == cpu);
    let mut conn = here
        .map(|i| pool.idle.swap_remove(i))
        .or_else(|| pool.idle.pop())
        .ok_or(None)?;
    if pool.stale_after.is_none_or(|t| conn.last_used.elapsed() < t) {
        conn.cpu = cpu;
        Ok(conn)
    } else {
        Err(Some(conn))
    }
}

/// A pooled connection idle for `idle_timeout_ms` less a margin (a quarter,
/// at most 5 s) is not reused.
fn stale_after(idle_timeout_ms: u64) -> Option<Duration> {
    let t = Duration::from_millis(idle_timeout_ms);
    (idle_timeout_ms > 0).then(|| t - (t / 4).min(Duration::from_secs(5)))
}

/// Writes with MSG_NOSIGNAL: a sidecar gone away is an error for the call,
/// not a SIGPIPE that kills the application.
struct NoSigPipe<'a>(&'a UnixStream);

impl Write for NoSigPipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: the pointer and length describe `buf`, valid for reads; the fd is the stream's own.
        let n = unsafe { libc::send(self.0.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Wipes the PIN a call carries once it is sent.
fn wipe_pins(req: &mut Request) {
    match &mut req.call {
        Some(Call::Login(l)) => l.pin.zeroize(),
        Some(Call::InitPin(p)) => p.data.zeroize(),
        Some(Call::SetPin(p)) => {
            p.old_pin.zeroize();
            p.new_pin.zeroize();
        }
        Some(Call::InitToken(t)) => t.so_pin.zeroize(),
        _ => {}
    }
}

/// Why a round trip failed.
enum Failed {
    /// The request does not fit in a frame (README "Limits"); nothing was sent.
    TooLarge,
    /// The connection failed: the call may or may not have run.
    Transport,
}

impl Conn {
    /// Sends `call` tagged with the CPU the lease was taken on (a call is too short for the
    /// thread to have moved in between, and it would only cost one follow).
    fn round_trip(&mut self, call: Call) -> Result<Response, Failed> {
        let mut req = Request {
            call: Some(call),
            caller_cpu: self.cpu,
        };
        if !hsmbridge_proto::frame::fits(&req) {
            wipe_pins(&mut req);
            return Err(Failed::TooLarge);
        }
        let sent = write_frame(&mut NoSigPipe(self.stream.get_ref()), &req, &mut self.buf);
        if carries_pin(&req) {
            wipe_pins(&mut req);
            self.buf.zeroize();
        }
        sent.map_err(|_| Failed::Transport)?;
        let r = read_frame(&mut self.stream, &mut self.buf).map_err(|_| Failed::Transport);
        self.last_used = Instant::now();
        r
    }
}

fn carries_pin(req: &Request) -> bool {
    matches!(
        req.call,
        Some(Call::Login(_) | Call::InitPin(_) | Call::SetPin(_) | Call::InitToken(_))
    )
}

/// One connection, lent to one call.
pub struct Lease {
    client: Arc<Client>,
    conn: Option<Conn>,
    pub epoch: u64,
}

impl Lease {
    /// Sends one call and waits (up to the deadline) for its answer. A
    /// transport failure is CKR_DEVICE_ERROR and voids the epoch; the call is
    /// never replayed, as it may have run.
    pub fn call(&mut self, call: Call) -> Rv<Response> {
        let conn = self.conn.as_mut().ok_or(CKR_DEVICE_ERROR)?;
        match conn.round_trip(call) {
            Ok(r) => Ok(r),
            Err(Failed::TooLarge) => Err(CKR_HOST_MEMORY),
            Err(Failed::Transport) => {
                self.conn = None;
                self.client.reset(self.epoch);
                Err(CKR_DEVICE_ERROR)
            }
        }
    }

    /// Like `call` but without a deadline (C_WaitForSlotEvent may block).
    pub fn call_unbounded(&mut self, call: Call) -> Rv<Response> {
        if let Some(c) = self.conn.as_ref() {
            let _ = c.stream.get_ref().set_read_timeout(None);
        }
        let r = self.call(call);
        if let Some(c) = self.conn.as_ref() {
            let _ = c.stream.get_ref().set_read_timeout(Some(self.client.timeout));
        }
        r
    }

    pub fn session(&self, app: CK_SESSION_HANDLE) -> Rv<u64> {
        handles::untag(app, self.epoch).ok_or(CKR_SESSION_HANDLE_INVALID)
    }

    pub fn object(&self, app: CK_OBJECT_HANDLE) -> Rv<u64> {
        handles::untag(app, self.epoch).ok_or(CKR_OBJECT_HANDLE_INVALID)
    }

    pub fn key(&self, app: CK_OBJECT_HANDLE) -> Rv<u64> {
        handles::untag(app, self.epoch).ok_or(CKR_KEY_HANDLE_INVALID)
    }

    pub fn tag(&self, backend: u64) -> CK_ULONG {
        handles::tag(backend, self.epoch)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if let Ok(mut pool) = self.client.pool.lock() {
                if pool.epoch == self.epoch {
                    pool.idle.push(conn);
                }
            }
        }
    }
}

/// Leases a connection of the initialized client.
pub fn lease() -> Rv<Lease> {
    current()?.lease()
}
