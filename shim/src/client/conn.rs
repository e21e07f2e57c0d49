//! One connection to the sidecar and its round trip: a frame out (without
//! SIGPIPE, PINs wiped once sent), a frame back; or, for a call that polls,
//! through the connection's ring (`ring.rs`).

use super::*;

pub struct Conn {
    pub(super) stream: BufReader<UnixStream>,
    pub(super) buf: Vec<u8>,
    /// When this connection last answered a call.
    pub(super) last_used: Instant,
    /// The CPU (plus one) of this connection's last caller; the sidecar's
    /// thread for it follows its caller's CPU, so a caller prefers an idle
    /// connection last used from its own CPU.
    pub(super) cpu: u32,
    /// How long to poll for an answer on this connection (`spin`).
    pub(super) bound: Adaptive,
    /// The sidecar's last answer said it polls for our requests (and does not sit on our CPU).
    pub(super) peer_spins: bool,
    /// The ring the sidecar made for this connection. Its `req_seq`, which only this side
    /// writes, numbers this connection's requests.
    pub(super) ring: Option<Ring>,
}

/// Calls of this process waiting for their answers (every bounded call, whatever the mode): the
/// callers counted against the CPUs to decide whether to poll (`Mode::allows`) and how to sleep
/// (`Sleep::choose`).
static WAITING: Callers = Callers::new();

/// Counts one caller in [`WAITING`] while it lives.
struct Waiting;

impl Waiting {
    fn new(cpus: &Cpus) -> Waiting {
        WAITING.enter(cpus);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.leave();
    }
}

/// Writes with MSG_NOSIGNAL: a sidecar gone away is an error for the call,
/// not a SIGPIPE that kills the application.
pub(super) struct NoSigPipe<'a>(pub(super) &'a UnixStream);

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
pub(super) enum Failed {
    /// The request does not fit in a frame (README "Limits"); nothing was sent.
    TooLarge,
    /// The connection failed: the call may or may not have run.
    Transport,
}

impl Conn {
    /// Writes the encoded frame in `buf` to the socket.
    pub(super) fn send_frame(&mut self) -> io::Result<()> {
        NoSigPipe(self.stream.get_ref()).write_all(&self.buf)
    }

    /// Reads the next answer frame from the socket, skipping doorbells (only a connection with a
    /// ring gets any).
    pub(super) fn read_answer_frame(&mut self) -> Result<Response, Failed> {
        loop {
            let frame = read_frame_or_doorbell(&mut self.stream, &mut self.buf).map_err(|_| Failed::Transport)?;
            if frame {
                return decode(&mut self.buf).map_err(|_| Failed::Transport);
            }
            if self.ring.is_none() {
                return Err(Failed::Transport);
            }
        }
    }

    /// Sends `call` tagged with the CPU the lease was taken on (a call is too short for the
    /// thread to have moved in between, and it would only cost one follow) and waits for the
    /// answer within `bounded`'s deadline, polling first within the bound when its `Spin` allows
    /// it (`None`: a call that may block for long, C_WaitForSlotEvent, has no deadline, neither
    /// polls nor counts as a busy caller, and sleeps in the read).
    pub(super) fn round_trip(&mut self, call: Call, bounded: Option<(&Spin, Duration)>) -> Result<Response, Failed> {
        let (spin, timeout) = (bounded.map(|(s, _)| s), bounded.map(|(_, t)| t));
        // Every bounded call is a busy caller (how callers sleep depends on how many there are);
        // one that never polls has no bound to adapt.
        let _waiting = spin.map(|s| Waiting::new(&s.cpus));
        let polling = spin.filter(|s| s.mode != Mode::Off);
        let budget = match polling {
            Some(s) if self.peer_spins && s.mode.allows(&s.cpus, &WAITING) && self.stream.buffer().is_empty() => {
                self.bound.budget()
            }
            _ => Duration::ZERO,
        };
        let mut req = Request {
            call: Some(call),
            caller_cpu: self.cpu,
            caller_polls: !budget.is_zero(),
        };
        // The only error encoding has is a message past the frame limit.
        if encode_frame(&req, &mut self.buf).is_err() {
            wipe_pins(&mut req);
            return Err(Failed::TooLarge);
        }
        let pin = carries_pin(&req);
        // A call that polls, fits in a slot and carries no PIN goes through the ring.
        let in_ring = self.ring.is_some() && !budget.is_zero() && !pin && self.buf.len() - 4 <= SLOT;
        // A sidecar thread woken by a doorbell is not polled for: it sleeps on the socket at once.
        let sent = if in_ring {
            self.send_in_ring()
                .map(|(seq, woke)| (seq, if woke { Duration::ZERO } else { budget }))
        } else {
            self.announce_on_socket();
            self.send_frame().map(|()| (0, budget))
        };
        if pin {
            wipe_pins(&mut req);
            self.buf.zeroize();
        }
        shrink(&mut self.buf);
        let (seq, budget) = sent.map_err(|_| Failed::Transport)?;
        let sent_at = Instant::now();
        let (r, outcome) = if in_ring {
            self.wait_in_ring(seq, budget, timeout.map(|t| sent_at + t))
        } else {
            // At most the budget, then a sleep until the answer comes (within the deadline, if bounded).
            let outcome = poll_readable(self.stream.get_ref(), budget);
            if outcome != Outcome::Hit
                && self.stream.buffer().is_empty()
                && spin.is_some_and(|s| Sleep::choose(&s.cpus, &WAITING) == Sleep::Poll)
                && !sleep_until_readable(self.stream.get_ref(), timeout)
            {
                return Err(Failed::Transport);
            }
            (self.read_answer_frame(), outcome)
        };
        self.last_used = Instant::now();
        if polling.is_some() {
            self.bound.record(self.last_used - sent_at, outcome);
        }
        if let Ok(resp) = &r {
            self.peer_spins = resp.peer_spins;
        }
        r
    }
}

/// In the child after fork(): the parent's threads that were in a call are not the child's.
pub(super) fn forget_callers_after_fork() {
    WAITING.reset();
}

fn carries_pin(req: &Request) -> bool {
    matches!(
        req.call,
        Some(Call::Login(_) | Call::InitPin(_) | Call::SetPin(_) | Call::InitToken(_))
    )
}
