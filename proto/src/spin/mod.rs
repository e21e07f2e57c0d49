//! Polling before blocking: how the shim waits for an answer and the sidecar's connection thread
//! for the next request.
//!
//! A blocking read lets the CPU go idle; on a VM an idle vCPU is halted and waking it costs tens of
//! µs, twice per call (README.md "Benchmark"). Polling the socket for a short, bounded time first
//! keeps both ends on their CPUs while the answer is near. The bound adapts per connection
//! ([`Adaptive`]) to what the waits there recently took: it spins only as long as an answer is
//! likely and not at all for calls that take longer than the cap (a network HSM's milliseconds).
//!
//! Where polling cannot help or hurts, [`Mode::allows`] says no: one usable CPU, a CFS quota on
//! the cgroup (spinning would burn the quota), or more busy callers than CPU pairs (the spinners
//! would take the CPUs the work needs). The sidecar sees every caller of the pod; it tells the
//! shim in each answer whether polling pays (`Response.peer_spins`), and serves on the caller's CPU
//! (`cpu_follow`) only when it does not: polling on one CPU would starve the other end.
//!
//! Once an end stops polling it sleeps, and how matters too ([`Sleep`]): a blocking read is woken
//! early, when the peer reads what this end sent, which hides a vCPU's wake-up where CPUs are idle
//! but is a context switch for nothing where they are busy; there it sleeps in `poll(POLLIN)`.
//!
//! `poll` waits on a descriptor, `cpus` finds the usable CPUs and the quota, `callers` counts the
//! busy callers and remembers when they last were too many.

mod callers;
mod cpus;
mod poll;

use std::time::Duration;

pub use callers::{Callers, CONTENDED_HOLD};
pub use cpus::Cpus;
pub use poll::{poll_readable, sleep_until_readable, spin_until, wait_readable};

/// The default cap on one poll for an answer: above an ECDSA sign (~60-80 µs in SoftHSM), below
/// an RSA-2048 one. The sidecar's poll for a next request has a lower one
/// (sidecar/src/server/waiting.rs).
pub const DEFAULT_CAP: Duration = Duration::from_micros(200);

/// The largest cap `HSMBRIDGE_SPIN_US` / `--spin-us` may set: polling longer than a few ms is
/// never cheaper than a wake-up.
pub const MAX_CAP: Duration = Duration::from_millis(10);

/// How one end waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Never poll: block at once (`0`).
    Off,
    /// The default: poll up to [`DEFAULT_CAP`], adaptively, where [`Cpus`] says it can help.
    Auto,
    /// Poll up to this cap, adaptively, also on one CPU or under a quota (the operator asked for
    /// it: `N` > 0).
    Forced(Duration),
}

impl Mode {
    /// Parses `HSMBRIDGE_SPIN_US` / `--spin-us`: unset is [`Mode::Auto`], `0` is off, `N` forces a
    /// cap of N µs (at most [`MAX_CAP`]). Anything else is an error naming the value's problem.
    pub fn parse(value: Option<&str>) -> Result<Mode, String> {
        let Some(v) = value else { return Ok(Mode::Auto) };
        let us: u64 = v
            .trim()
            .parse()
            .map_err(|_| "not a number of microseconds".to_string())?;
        let cap = Duration::from_micros(us);
        if cap > MAX_CAP {
            return Err(format!("more than {} µs", MAX_CAP.as_micros()));
        }
        Ok(if us == 0 { Mode::Off } else { Mode::Forced(cap) })
    }

    /// The cap of one poll, or `None` when this mode never polls.
    pub fn cap(self) -> Option<Duration> {
        match self {
            Mode::Off => None,
            Mode::Auto => Some(DEFAULT_CAP),
            Mode::Forced(cap) => Some(cap),
        }
    }

    /// Whether polling pays on `cpus` with these `callers` (this one counted among them). Each
    /// polling caller keeps two CPUs busy (its own and the other end's), so neither mode polls
    /// while more than half the CPUs' worth of callers have been busy at once within
    /// [`CONTENDED_HOLD`] (which also bounds what many connections can make the sidecar spin);
    /// the automatic mode also needs 2 CPUs and no quota.
    pub fn allows(self, cpus: &Cpus, callers: &Callers) -> bool {
        let contended = callers.recently_contended();
        match self {
            Mode::Off => false,
            Mode::Forced(_) => !contended,
            Mode::Auto => !cpus.quota && cpus.usable >= 2 && !contended,
        }
    }
}

/// How an end sleeps once it stops polling (or never polled).
///
/// A blocking read on a Unix stream socket is also woken when the peer reads what this end sent:
/// af_unix's write-space wake-up shares the socket's wait queue and does not say which event it is
/// for. That wake-up comes early, as the other end starts on the request (or the answer), so on an
/// idle CPU it wakes the vCPU while the other end works and hides most of a VM's wake-up latency
/// (measured: a blocking `C_GenerateRandom` from one thread, p50 13.5 µs this way, 123 µs without
/// it). Where the CPUs are busy the same wake-up is a context switch for nothing, twice per call.
/// `poll(POLLIN)` is woken only when data arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sleep {
    /// A blocking read: woken early, which pays on idle CPUs.
    Read,
    /// `poll(POLLIN)`, then the read: woken once, for the data.
    Poll,
}

impl Sleep {
    /// [`Sleep::Poll`] on one usable CPU (the early wake-up cannot run beside the other end) and
    /// while busy callers have outnumbered the CPU pairs within [`CONTENDED_HOLD`]; otherwise
    /// [`Sleep::Read`]. The same whether or not the end polls first (`Mode`).
    pub fn choose(cpus: &Cpus, callers: &Callers) -> Sleep {
        if cpus.usable < 2 || callers.recently_contended() {
            Sleep::Poll
        } else {
            Sleep::Read
        }
    }
}

/// The poll bound of one connection: a moving average of its recent waits, each counted at most
/// twice the cap. It polls for three times that average (plus a little: a wait that runs past the
/// poll pays a wake-up, the tail this is for), never past the cap, and not at all once the average
/// reaches the cap; a blocking wait is measured too, so a connection whose
/// calls become short again polls again within a few calls.
///
/// A poll that runs out without an answer is a miss: the other end is slower than it was, or
/// cannot run because the CPUs are taken (by other processes, or by this poll itself). After two
/// misses in a row (one is the odd slow call) the connection blocks for the next 1, 2, 4, ... up
/// to [`MAX_BACKOFF`] waits before it tries once more; a poll that is answered ends the back-off.
/// On a machine whose CPUs are all busy, polling so costs one bounded poll per [`MAX_BACKOFF`]
/// calls.
#[derive(Clone, Copy, Debug)]
pub struct Adaptive {
    /// At most [`MAX_CAP`] (10 ms), so the ns fit in 32 bits (kept small: a shim connection holds one).
    cap_ns: u32,
    average_ns: u32,
    /// Waits left to block at once.
    skip: u16,
    /// The length of the current back-off (0: none).
    backoff: u16,
    /// Polls in a row that ran out.
    misses: u16,
}

/// Slack above three times the average: the jitter of a call that usually takes a few µs.
const SLACK_NS: u32 = 10_000;

/// The longest back-off, in waits.
pub const MAX_BACKOFF: u16 = 256;

/// How one wait went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It did not poll (budget 0).
    Blocked,
    /// The answer came while it polled.
    Hit,
    /// It polled the whole budget, then blocked.
    Miss,
}

impl Adaptive {
    /// A new connection starts as if its waits took a quarter of the cap.
    pub fn new(cap: Duration) -> Adaptive {
        let cap_ns = cap.min(MAX_CAP).as_nanos() as u32;
        Adaptive {
            cap_ns,
            average_ns: cap_ns / 4,
            skip: 0,
            backoff: 0,
            misses: 0,
        }
    }

    /// How long to poll before blocking.
    pub fn budget(&self) -> Duration {
        if self.cap_ns == 0 || self.skip > 0 || self.average_ns >= self.cap_ns {
            return Duration::ZERO;
        }
        Duration::from_nanos(u64::from(
            self.average_ns
                .saturating_mul(3)
                .saturating_add(SLACK_NS)
                .min(self.cap_ns),
        ))
    }

    /// Records how long a wait took (polled and blocked together) and how the poll went.
    pub fn record(&mut self, waited: Duration, outcome: Outcome) {
        let sample = waited.as_nanos().min(u128::from(self.cap_ns.saturating_mul(2))) as u32;
        // An average over about the last 8 waits.
        self.average_ns = self.average_ns - self.average_ns / 8 + sample / 8;
        match outcome {
            Outcome::Hit => {
                self.backoff = 0;
                self.misses = 0;
            }
            Outcome::Miss => {
                self.misses = self.misses.saturating_add(1);
                if self.misses >= 2 {
                    self.backoff = (self.backoff.saturating_mul(2)).clamp(1, MAX_BACKOFF);
                    self.skip = self.backoff;
                }
            }
            Outcome::Blocked => self.skip = self.skip.saturating_sub(1),
        }
    }
}

#[cfg(test)]
mod tests;
