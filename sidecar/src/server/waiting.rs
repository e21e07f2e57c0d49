//! How a connection's thread waits for the next request: polling for a bounded, adaptive time
//! while spinning pays (hsmbridge_proto::spin), then blocking. The decision goes to the shim in
//! the answer (`Response.peer_spins`); the shim polls for its answer only then, and says so in
//! the request (`Request.caller_polls`), which decides whether the thread follows its caller's CPU
//! (`connection.rs`): a thread polling on its caller's CPU would take it from the caller.

use std::time::{Duration, Instant};

use hsmbridge_proto::spin::{Adaptive, Callers, Cpus, Mode, Outcome, Sleep};

use super::frames::FrameReader;

/// The longest poll for a next request in the automatic mode. The gap between an application's
/// calls is its own work (a few µs in a loop of signatures); a longer one is not worth polling
/// for, and the cap bounds what an app can make the sidecar spend: sending a cheap call just
/// inside the poll keeps one thread polling at most 50 µs per call.
const AUTO_REQUEST_CAP: Duration = Duration::from_micros(50);

/// Connection threads in a call or polling for a request (not asleep waiting for one, nor in a
/// call that may block for long): the callers counted against the CPUs to decide whether to poll
/// and how to sleep.
static BUSY: Callers = Callers::new();

pub struct Waiting {
    mode: Mode,
    cpus: Cpus,
    bound: Adaptive,
    /// This connection is counted in [`BUSY`].
    busy: bool,
    /// What the last answer told the shim: whether this thread polls for the next request.
    polls: bool,
    /// When the last answer was written (the wait for the next request starts there), and how
    /// the poll for that request went.
    answered: Option<(Instant, Outcome)>,
}

impl Waiting {
    pub fn new(mode: Mode, cpus: Cpus) -> Waiting {
        let cap = match mode {
            Mode::Off => Duration::ZERO,
            Mode::Auto => AUTO_REQUEST_CAP,
            Mode::Forced(cap) => cap,
        };
        Waiting {
            mode,
            cpus,
            bound: Adaptive::new(cap),
            busy: false,
            polls: false,
            answered: None,
        }
    }

    /// A whole request has arrived (or the connection ended).
    pub fn request_arrived(&mut self) {
        self.set_busy(true);
        if let Some((t, outcome)) = self.answered.take() {
            self.bound.record(t.elapsed(), outcome);
        }
    }

    /// The call about to run may block for long (C_WaitForSlotEvent): the thread is not a busy
    /// caller while it waits there.
    pub fn blocking_call(&mut self) {
        self.set_busy(false);
    }

    /// Decides, as an answer is about to go out, whether this connection polls for the next
    /// request; the answer carries the decision to the shim. Not while the bound backs off: a
    /// shim told "polls" that then finds this thread asleep would poll for an answer while the
    /// thread it woke waits for a CPU, perhaps the shim's own.
    pub fn decide(&mut self) -> bool {
        self.polls = self.mode.allows(&self.cpus, &BUSY) && !self.bound.budget().is_zero();
        self.polls
    }

    /// After the answer is written: polls for the next request's first byte within the bound if
    /// [`decide`] said so, then stops counting as busy until the whole request is there.
    ///
    /// [`decide`]: Waiting::decide
    pub fn before_next(&mut self, reader: &mut FrameReader) {
        let answered = Instant::now();
        let outcome = if self.polls {
            reader.poll_for(self.bound.budget())
        } else {
            Outcome::Blocked
        };
        self.answered = Some((answered, outcome));
        reader.sleep_next(Sleep::choose(&self.cpus, &BUSY));
        self.set_busy(false);
    }

    /// No request came within the idle wait and the connection stays: the sleep chosen after the
    /// last answer may be stale (the contention it saw has passed), so choose again.
    pub fn still_idle(&mut self, reader: &mut FrameReader) {
        reader.sleep_next(Sleep::choose(&self.cpus, &BUSY));
    }

    fn set_busy(&mut self, busy: bool) {
        if busy != self.busy {
            if busy {
                BUSY.enter(&self.cpus);
            } else {
                BUSY.leave();
            }
            self.busy = busy;
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.set_busy(false);
    }
}
