//! PKCS#11 applications: each shim process is one. The backend sees the
//! sidecar as a single application, so the sidecar keeps what PKCS#11 keeps
//! per application itself: which sessions it owns (others' handles are
//! invalid to it) and whether it is logged in (see `login`). When the last
//! connection of an application ends, its sessions are closed in the backend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cryptoki_sys::*;

/// The secret a shim process presents to join its application from further
/// connections.
pub type AppToken = [u8; 16];

pub struct App {
    pub id: u64,
    token: AppToken,
    /// Session handle -> slot it was opened on.
    sessions: Mutex<HashMap<u64, CK_SLOT_ID>>,
    connections: AtomicUsize,
}

impl App {
    fn sessions(&self) -> MutexGuard<'_, HashMap<u64, CK_SLOT_ID>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single inserts/removes), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot of one of this application's sessions.
    pub fn slot_of(&self, session: u64) -> Result<CK_SLOT_ID, CK_RV> {
        self.sessions().get(&session).copied().ok_or(CKR_SESSION_HANDLE_INVALID)
    }

    pub fn add_session(&self, session: u64, slot: CK_SLOT_ID) {
        self.sessions().insert(session, slot);
    }

    pub fn remove_session(&self, session: u64) {
        self.sessions().remove(&session);
    }

    pub fn sessions_on(&self, slot: CK_SLOT_ID) -> Vec<u64> {
        self.sessions().iter().filter(|(_, s)| **s == slot).map(|(h, _)| *h).collect()
    }

    pub fn take_all_sessions(&self) -> Vec<(u64, CK_SLOT_ID)> {
        self.sessions().drain().collect()
    }

    pub fn has_sessions(&self) -> bool {
        !self.sessions().is_empty()
    }

    pub fn has_session_on(&self, slot: CK_SLOT_ID) -> bool {
        self.sessions().values().any(|s| *s == slot)
    }

    pub fn token(&self) -> &AppToken {
        &self.token
    }
}

#[derive(Default)]
pub struct Apps {
    by_token: Mutex<HashMap<AppToken, Arc<App>>>,
    next_id: AtomicU64,
}

impl Apps {
    fn map(&self) -> MutexGuard<'_, HashMap<AppToken, Arc<App>>> {
        self.by_token.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new application for a connection that presented no token.
    pub fn create(&self) -> std::io::Result<Arc<App>> {
        let mut token = [0u8; 16];
        fill_random(&mut token)?;
        let app = Arc::new(App {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            token,
            sessions: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(1),
        });
        self.map().insert(token, app.clone());
        Ok(app)
    }

    /// The application a further connection joins, if its token is known.
    pub fn join(&self, token: &[u8]) -> Option<Arc<App>> {
        let map = self.map();
        let app = map.get(token)?.clone();
        app.connections.fetch_add(1, Ordering::SeqCst);
        Some(app)
    }

    /// Joins the application of `token`, or starts a new one when it has
    /// ended (all its connections closed, or the sidecar restarted): the shim
    /// sees a new token and voids its handles.
    pub fn join_or_create(&self, token: &[u8]) -> std::io::Result<Arc<App>> {
        match self.join(token) {
            Some(app) => Ok(app),
            None => self.create(),
        }
    }

    /// Drops an idle connection unless it is the last one of an application
    /// that has sessions (closing it would end them). Returns whether the
    /// connection left, and then whether it was the application's last.
    pub fn leave_idle(&self, app: &App) -> Option<bool> {
        let mut map = self.map();
        let n = app.connections.load(Ordering::SeqCst);
        if n <= 1 && app.has_sessions() {
            return None;
        }
        app.connections.fetch_sub(1, Ordering::SeqCst);
        if n == 1 {
            map.remove(&app.token);
        }
        Some(n == 1)
    }

    /// Drops a connection; returns true when it was the application's last,
    /// so the caller ends the application.
    pub fn leave(&self, app: &App) -> bool {
        let mut map = self.map();
        if app.connections.fetch_sub(1, Ordering::SeqCst) == 1 {
            map.remove(&app.token);
            true
        } else {
            false
        }
    }

    pub fn all(&self) -> Vec<Arc<App>> {
        self.map().values().cloned().collect()
    }

    /// Any session of any application on `slot` (to log the backend out with).
    pub fn any_session_on(&self, slot: CK_SLOT_ID) -> Option<u64> {
        self.all().iter().find_map(|a| a.sessions_on(slot).first().copied())
    }
}

fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}
