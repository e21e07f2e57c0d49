//! Re-initializing the module under running applications, for a new provider configuration
//! (vendor modules read it only at C_Initialize): calls inside the module finish first (new
//! ones wait, up to [`DRAIN_WAIT`]); then every application is forgotten and every connection
//! closed, so that each shim starts a new epoch, exactly as after a sidecar restart: its old
//! session and object handles fail (`*_HANDLE_INVALID`), new sessions work (README "Rotation").

use std::time::Duration;

use cryptoki_sys::CK_RV;

use crate::server::Registry;
use crate::service::Service;

/// How long the calls inside the module may take to end before the re-initialization is put
/// off (a blocking C_WaitForSlotEvent never ends by itself; `monitor.rs` backs off).
pub const DRAIN_WAIT: Duration = Duration::from_secs(10);

impl Service {
    /// C_Finalize + C_Initialize once no call is inside; `None` when one stayed inside for
    /// [`DRAIN_WAIT`] (nothing was done).
    pub fn reload_module(&self, connections: &Registry) -> Option<CK_RV> {
        self.backend
            .reinitialize_draining(DRAIN_WAIT, || self.forget_module_state(connections))
    }

    /// Forgets what the module's C_Finalize ends: every application (their shims start a new
    /// epoch), session, search, login and key name; closes every connection. Called with no
    /// call inside the module (the gate held exclusively), so nothing can open, log in or
    /// create meanwhile; calls waiting for the gate find no session of theirs left.
    pub fn forget_module_state(&self, connections: &Registry) {
        for app in self.apps.forget_all() {
            for (session, _) in app.take_all_sessions() {
                self.session_gone(session);
            }
        }
        self.logins.forget_all();
        self.key_names.clear();
        connections.close_all();
    }
}
