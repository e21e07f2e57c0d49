//! The sidecar's own look at its backend, every [`CHECK_EVERY`] on a thread of its own:
//! - whether the module reaches an initialized token and whether the token rejects the held
//!   PIN: health (`health.rs`, SERVING or not) and metrics read what it saw ([`Observed`]);
//! - a token lost for good: the module is re-initialized when no session is open (`recovery.rs`);
//! - a rotated credential: the PIN file changed. The new PIN is adopted as the module is
//!   re-initialized, at the first check with no session open: a module may keep the token's PIN
//!   data from its C_Initialize (SoftHSM 2.6 does: a PIN another process set is rejected until
//!   then), and offering it the new PIN earlier would cost the one attempt `held_pin.rs` allows.
//!   Open sessions are never taken for it (the backend's login they hold stays valid). While
//!   the held PIN stands rejected nothing logs in anyway: the new one is adopted at once.
//!   Reported in the log, the metrics and the audit trail;
//! - a changed provider configuration (`--watch-config`, `config_watch.rs`): the module is
//!   re-initialized under the running applications (`reload.rs`).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki_sys::CKR_OK;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::audit::Kind;
use crate::backend::Reinit;
use crate::config_watch::ConfigWatch;
use crate::metrics::Cause;
use crate::recovery::Recovery;
use crate::rv::Rv;
use crate::server::Registry;
use crate::service::Service;

/// Kubelet probes every 10 s by default; a fresher answer costs one
/// C_GetSlotList and a C_GetTokenInfo per slot.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// After a configuration change could not drain the module, the next try waits this long,
/// doubling up to [`RELOAD_BACKOFF_MAX`] (each try holds new calls back for up to
/// `reload::DRAIN_WAIT`).
pub const RELOAD_BACKOFF: Duration = Duration::from_secs(60);
pub const RELOAD_BACKOFF_MAX: Duration = Duration::from_secs(600);

/// What the last check saw.
pub struct Observed {
    token_present: AtomicBool,
    held_pin_rejected: AtomicBool,
    config_generation: AtomicI64,
    /// SERVING (true) or not, for the health server.
    serving: watch::Sender<bool>,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            token_present: AtomicBool::new(false),
            held_pin_rejected: AtomicBool::new(false),
            config_generation: AtomicI64::new(0),
            serving: watch::channel(false).0,
        }
    }
}

impl Observed {
    pub fn token_present(&self) -> bool {
        self.token_present.load(Ordering::Relaxed)
    }

    pub fn held_pin_rejected(&self) -> bool {
        self.held_pin_rejected.load(Ordering::Relaxed)
    }

    pub fn config_generation(&self) -> i64 {
        self.config_generation.load(Ordering::Relaxed)
    }

    /// Follows SERVING / NOT_SERVING.
    pub fn serving(&self) -> watch::Receiver<bool> {
        self.serving.subscribe()
    }
}

/// Starts the checks; the first runs at once.
pub fn spawn(service: Arc<Service>, connections: Arc<Registry>, config: Option<ConfigWatch>) -> std::io::Result<()> {
    if let Some(watch) = &config {
        service
            .observed
            .config_generation
            .store(watch.generation(), Ordering::Relaxed);
        let dirs: Vec<String> = watch.dirs().iter().map(|d| d.display().to_string()).collect();
        info!(dirs = ?dirs, generation = watch.generation(), "watching the provider configuration");
    }
    std::thread::Builder::new()
        .name("monitor".into())
        .spawn(move || run(&service, &connections, config))?;
    Ok(())
}

fn run(service: &Service, connections: &Registry, mut config: Option<ConfigWatch>) {
    let mut recovery = Recovery::default();
    let mut last: Option<bool> = None;
    // When a configuration change may next try to drain the module, and the wait after that.
    let mut reload_after: Option<Instant> = None;
    let mut backoff = RELOAD_BACKOFF;
    loop {
        let reachable = service.backend.token_reachable();
        let rejected = service.logins.held_pin_rejected();
        let observed = &service.observed;
        observed.token_present.store(reachable, Ordering::Relaxed);
        observed.held_pin_rejected.store(rejected, Ordering::Relaxed);
        let serving = reachable && !rejected;
        if last != Some(serving) {
            info!(
                serving,
                reachable,
                held_pin_rejected = rejected,
                "backend health changed"
            );
            last = Some(serving);
        }
        observed.serving.send_replace(serving);

        if recovery.due(reachable, Instant::now()) {
            recover(service);
            // The rest between attempts counts from the end of this one (a
            // C_Initialize that waits for an unreachable HSM may take long).
            recovery.attempted(Instant::now());
        }
        if service.logins.credential_changed_on_disk() {
            adopt_credential(service, rejected);
        }
        if let Some(watch) = config.as_mut() {
            let due = reload_after.is_none_or(|t| Instant::now() >= t);
            if due && watch.changed() {
                if reload(service, connections, watch) {
                    reload_after = None;
                    backoff = RELOAD_BACKOFF;
                } else {
                    reload_after = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(RELOAD_BACKOFF_MAX);
                }
            }
        }
        std::thread::sleep(CHECK_EVERY);
    }
}

/// Under the gate: with no session open, forgets the logins and key names the re-initialization
/// ends, and says yes. Applications and their connections stay (closing them would fail a call
/// a shim is about to send; see `recovery.rs` on the handles they may keep).
fn idle_then_forget(service: &Service) -> bool {
    if service.apps.session_count() != 0 {
        return false;
    }
    service.logins.forget_all();
    service.key_names.clear();
    true
}

/// The token stayed unreachable: re-initialize if no session is open.
fn recover(service: &Service) {
    match service.backend.reinitialize_if(|| idle_then_forget(service)) {
        Reinit::Done(rv) => {
            service.metrics.reinitialized(Cause::TokenLost);
            service.audit.sidecar_event(
                Kind::ModuleReinitialized,
                "C_Initialize",
                rv,
                "the token stayed unreachable and no session was open".to_owned(),
            );
            if rv == CKR_OK {
                info!("token unreachable and no session open: module re-initialized");
            } else {
                warn!(c_initialize = %Rv(rv), "token unreachable and no session open: module re-initialization failed");
            }
        }
        Reinit::Skipped => debug!("token unreachable, but a call or a session is open: module left alone"),
    }
}

/// The PIN file changed: adopt its PIN as the module is re-initialized with no session open,
/// or at once while the held PIN stands `rejected`.
fn adopt_credential(service: &Service, rejected: bool) {
    let mut adopted = None;
    let reinit = service.backend.reinitialize_if(|| {
        // Under the gate: no login can slip in with the old PIN before C_Initialize.
        let idle = idle_then_forget(service);
        if idle {
            adopted = service.logins.adopt_credential();
        }
        idle
    });
    let how = match reinit {
        Reinit::Done(rv) => {
            service.metrics.reinitialized(Cause::CredentialChanged);
            format!("module re-initialized with no session open ({})", crate::names::rv(rv))
        }
        Reinit::Skipped if rejected => {
            adopted = service.logins.adopt_credential();
            "the old PIN stood rejected: adopted at once".to_owned()
        }
        Reinit::Skipped => return,
    };
    // None: changed back meanwhile, nothing new to report.
    let Some(generation) = adopted else { return };
    service.metrics.credential_reloaded();
    info!(
        generation,
        how, "the held credential changed: the next backend login uses it"
    );
    service.audit.sidecar_event(
        Kind::CredentialChanged,
        "",
        CKR_OK,
        format!("the PIN file changed (generation {generation}); {how}"),
    );
}

/// The provider configuration changed: re-initialize under the applications; false when the
/// module could not be drained.
fn reload(service: &Service, connections: &Registry, watch: &mut ConfigWatch) -> bool {
    let started = Instant::now();
    match service.reload_module(connections) {
        Some(rv) => {
            watch.applied();
            let generation = watch.generation();
            service.observed.config_generation.store(generation, Ordering::Relaxed);
            service.metrics.reinitialized(Cause::ConfigChanged);
            service.audit.sidecar_event(
                Kind::ModuleReinitialized,
                "C_Initialize",
                rv,
                format!("the provider configuration changed (generation {generation}); every application starts anew"),
            );
            let took_ms = started.elapsed().as_millis() as u64;
            if rv == CKR_OK {
                info!(
                    generation,
                    took_ms, "provider configuration changed: module re-initialized, applications start anew"
                );
            } else {
                warn!(generation, c_initialize = %Rv(rv), "provider configuration changed: module re-initialization failed");
            }
            true
        }
        None => {
            warn!(
                wait_secs = crate::reload::DRAIN_WAIT.as_secs(),
                "provider configuration changed, but a call stayed inside the module: re-initialization put off"
            );
            false
        }
    }
}
