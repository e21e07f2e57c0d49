//! The sidecar's Prometheus metrics (`serve --metrics-addr`, served by `http.rs`): what every
//! PKCS#11 call did, how long it took, and the state of the connections, sessions, login, held
//! PIN, token, audit queue and configuration. README "Observability" lists them.
//!
//! Label values are bounded: a function name, a CK_RV name (`names::rv`), a fixed reason or
//! cause. No handle, key, PID or pod name is ever a label value.
//!
//! With metrics off (no `--metrics-addr`) the data path's recorders return at once (it pays
//! one branch); the rare events (re-initializations, audit, credential) are counted anyway.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub mod http;

/// Upper bounds (seconds) of the call latency buckets: 10 µs (an in-memory call) to 10 s (a
/// network HSM's slow path).
pub const CALL_BUCKETS: [f64; 19] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    function: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    version: &'static str,
    partition: String,
}

/// Why a connection was refused before it joined an application.
#[derive(Clone, Copy, Debug)]
pub enum Refused {
    /// The connection cap was reached.
    Limit,
    /// No valid Hello in time.
    Hello,
}

/// Why the sidecar closed a connection.
#[derive(Clone, Copy, Debug)]
pub enum Closed {
    BadFrame,
    SlowFrame,
    Idle,
}

/// Why the module was re-initialized.
#[derive(Clone, Copy, Debug)]
pub enum Cause {
    /// The token stayed unreachable (`recovery.rs`).
    TokenLost,
    /// The provider configuration changed (`reload.rs`).
    ConfigChanged,
    /// The credential changed and no session was open (`monitor.rs`).
    CredentialChanged,
}

/// State sampled when `/metrics` is read.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    pub applications: usize,
    pub connections: usize,
    pub sessions: usize,
    pub logged_in: bool,
    pub held_pin_rejected: bool,
    pub token_present: bool,
    pub credential_generation: i64,
    pub config_generation: i64,
}

pub struct Metrics {
    on: bool,
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    durations: Family<FunctionLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    received: Counter,
    sent: Counter,
    refused: Family<ReasonLabels, Counter>,
    closed: Family<ReasonLabels, Counter>,
    reinitializations: Family<CauseLabels, Counter>,
    audit_lines: Counter,
    audit_dropped: Counter,
    credential_reloads: Counter,
    applications: Gauge,
    connections: Gauge,
    sessions: Gauge,
    logged_in: Gauge,
    held_pin_rejected: Gauge,
    token_present: Gauge,
    credential_generation: Gauge<i64, AtomicI64>,
    config_generation: Gauge<i64, AtomicI64>,
}

fn call_histogram() -> Histogram {
    Histogram::new(CALL_BUCKETS)
}

impl Metrics {
    /// `on`: record (the sidecar serves `/metrics`); off, every recorder is a no-op.
    pub fn new(on: bool, partition: &str) -> Self {
        let mut registry = Registry::with_prefix("hsmbridge_sidecar");
        let m = Metrics {
            on,
            registry: Registry::default(),
            calls: Family::default(),
            durations: Family::new_with_constructor(call_histogram),
            in_flight: Gauge::default(),
            received: Counter::default(),
            sent: Counter::default(),
            refused: Family::default(),
            closed: Family::default(),
            reinitializations: Family::default(),
            audit_lines: Counter::default(),
            audit_dropped: Counter::default(),
            credential_reloads: Counter::default(),
            applications: Gauge::default(),
            connections: Gauge::default(),
            sessions: Gauge::default(),
            logged_in: Gauge::default(),
            held_pin_rejected: Gauge::default(),
            token_present: Gauge::default(),
            credential_generation: Gauge::default(),
            config_generation: Gauge::default(),
        };
        let r = &mut registry;
        r.register(
            "calls",
            "PKCS#11 calls by function and result (CK_RV name).",
            m.calls.clone(),
        );
        r.register_with_unit(
            "call_duration",
            "Time from a request's decoding to its answer, by function.",
            Unit::Seconds,
            m.durations.clone(),
        );
        r.register("calls_in_flight", "Calls being served now.", m.in_flight.clone());
        r.register_with_unit("received", "Request frame bytes read.", Unit::Bytes, m.received.clone());
        r.register_with_unit("sent", "Answer frame bytes written.", Unit::Bytes, m.sent.clone());
        r.register(
            "refused_connections",
            "Connections refused before they joined an application (reason: limit, hello).",
            m.refused.clone(),
        );
        r.register(
            "closed_connections",
            "Connections the sidecar closed (reason: bad_frame, slow_frame, idle).",
            m.closed.clone(),
        );
        r.register(
            "module_reinitializations",
            "C_Finalize + C_Initialize of the module (cause: token_lost, config_changed, credential_changed).",
            m.reinitializations.clone(),
        );
        r.register("audit_lines", "Audit lines written.", m.audit_lines.clone());
        r.register(
            "audit_dropped",
            "Audit lines dropped because the audit queue was full.",
            m.audit_dropped.clone(),
        );
        r.register(
            "credential_reloads",
            "Times the held credential changed on disk and was picked up.",
            m.credential_reloads.clone(),
        );
        r.register(
            "applications",
            "Connected PKCS#11 applications (shim processes).",
            m.applications.clone(),
        );
        r.register("connections", "Open shim connections.", m.connections.clone());
        r.register("sessions", "Open PKCS#11 sessions.", m.sessions.clone());
        r.register(
            "logged_in",
            "1 while the backend is logged in on some slot.",
            m.logged_in.clone(),
        );
        r.register(
            "held_pin_rejected",
            "1 while the token rejects the PIN the sidecar holds (managed mode).",
            m.held_pin_rejected.clone(),
        );
        r.register(
            "token_present",
            "1 while the module reaches an initialized token.",
            m.token_present.clone(),
        );
        r.register(
            "credential_generation",
            "Generation of the credential the sidecar holds (the Secret's generation key; 0: none).",
            m.credential_generation.clone(),
        );
        r.register(
            "config_generation",
            "Generation of the provider configuration the module runs with (0: none).",
            m.config_generation.clone(),
        );
        let info: Family<InfoLabels, Gauge> = Family::default();
        info.get_or_create(&InfoLabels {
            version: env!("CARGO_PKG_VERSION"),
            partition: partition.to_owned(),
        })
        .set(1);
        r.register("info", "The sidecar's version and partition (value 1).", info);
        Metrics { registry, ..m }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// A call starts: counted in flight until [`Metrics::call_done`].
    pub fn call_started(&self) {
        if self.on {
            self.in_flight.inc();
        }
    }

    /// A call of `function` answered `rv` after `elapsed`.
    pub fn call_done(&self, function: &'static str, rv: cryptoki_sys::CK_RV, elapsed: Duration) {
        if !self.on {
            return;
        }
        self.in_flight.dec();
        let result = crate::names::rv(rv);
        self.calls.get_or_create(&CallLabels { function, result }).inc();
        self.durations
            .get_or_create(&FunctionLabels { function })
            .observe(elapsed.as_secs_f64());
    }

    /// A request refused before decoding (a limit): counted as a call of unknown function.
    pub fn call_refused(&self, rv: cryptoki_sys::CK_RV) {
        if self.on {
            let result = crate::names::rv(rv);
            self.calls
                .get_or_create(&CallLabels {
                    function: "unknown",
                    result,
                })
                .inc();
        }
    }

    pub fn frame_bytes(&self, received: usize, sent: usize) {
        if self.on {
            self.received.inc_by(received as u64);
            self.sent.inc_by(sent as u64);
        }
    }

    pub fn refused(&self, why: Refused) {
        if self.on {
            let reason = match why {
                Refused::Limit => "limit",
                Refused::Hello => "hello",
            };
            self.refused.get_or_create(&ReasonLabels { reason }).inc();
        }
    }

    pub fn closed(&self, why: Closed) {
        if self.on {
            let reason = match why {
                Closed::BadFrame => "bad_frame",
                Closed::SlowFrame => "slow_frame",
                Closed::Idle => "idle",
            };
            self.closed.get_or_create(&ReasonLabels { reason }).inc();
        }
    }

    pub fn reinitialized(&self, why: Cause) {
        let cause = match why {
            Cause::TokenLost => "token_lost",
            Cause::ConfigChanged => "config_changed",
            Cause::CredentialChanged => "credential_changed",
        };
        self.reinitializations.get_or_create(&CauseLabels { cause }).inc();
    }

    pub fn audit_written(&self, lines: u64) {
        self.audit_lines.inc_by(lines);
    }

    pub fn audit_dropped(&self, lines: u64) {
        self.audit_dropped.inc_by(lines);
    }

    pub fn credential_reloaded(&self) {
        self.credential_reloads.inc();
    }

    /// The exposition (OpenMetrics text) with the gauges set from `state`.
    pub fn render(&self, state: State) -> String {
        let as_gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.applications.set(as_gauge(state.applications));
        self.connections.set(as_gauge(state.connections));
        self.sessions.set(as_gauge(state.sessions));
        self.logged_in.set(i64::from(state.logged_in));
        self.held_pin_rejected.set(i64::from(state.held_pin_rejected));
        self.token_present.set(i64::from(state.token_present));
        self.credential_generation.set(state.credential_generation);
        self.config_generation.set(state.config_generation);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests;
