//! How a connection's thread waits for the next request: polling for a bounded, adaptive time
//! while spinning pays (hsmbridge_proto::spin), then blocking. The same decision goes to the shim
//! in the answer (`Response.peer_spins`), and decides whether the thread follows its caller's CPU:
//! a thread polling on its caller's CPU would take it from the caller, so it follows only when
//! both ends block.

use std::time::{Duration, Instant};

use hsmbridge_proto::spin::{Adaptive, Callers, Cpus, Mode, Outcome};

use super::frames::FrameReader;

/// Connection threads that are in a call or polling, not blocked in a read: the callers the
/// automatic mode counts against the CPUs.
static BUSY: Callers = Callers::new();

pub struct Waiting {
    mode: Mode,
    cpus: Cpus,
    bound: Adaptive,
    /// This connection is counted in [`BUSY`].
    busy: bool,
    /// What the last answer told the shim.
    polls: bool,
    /// When the last answer was written (the wait for the next request starts there), and how
    /// the poll for that request went.
    answered: Option<(Instant, Outcome)>,
}

impl Waiting {
    pub fn new(mode: Mode, cpus: Cpus) -> Waiting {
        Waiting {
            mode,
            cpus,
            bound: Adaptive::new(mode.cap().unwrap_or(Duration::ZERO)),
            busy: false,
            polls: false,
            answered: None,
        }
    }

    /// A request has begun to arrive.
    pub fn request_arrived(&mut self) {
        self.set_busy(true);
        if let Some((t, outcome)) = self.answered.take() {
            self.bound.record(t.elapsed(), outcome);
        }
    }

    /// Whether the shim polled for the answer to this request: the thread then must not sit on
    /// the caller's CPU.
    pub fn caller_polls(&self) -> bool {
        self.polls
    }

    /// Decides, as the answer is about to go out, whether this connection polls for the next
    /// request; the answer carries the decision to the shim.
    pub fn decide(&mut self) -> bool {
        self.polls = self.mode.allows(&self.cpus, &BUSY);
        self.polls
    }

    /// After the answer is written: polls for the next request within the bound if [`decide`]
    /// said so, and stops counting as busy unless a request is already there.
    ///
    /// [`decide`]: Waiting::decide
    pub fn before_next(&mut self, reader: &FrameReader) {
        let answered = Instant::now();
        let outcome = if self.polls {
            reader.poll_for(self.bound.budget())
        } else {
            Outcome::Blocked
        };
        self.answered = Some((answered, outcome));
        if outcome != Outcome::Hit {
            self.set_busy(false);
        }
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
