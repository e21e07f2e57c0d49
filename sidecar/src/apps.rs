//! PKCS#11 applications: each shim process is one. The backend sees the
//! sidecar as a single application, so the sidecar keeps what PKCS#11 keeps
//! per application itself: which sessions it owns (others' handles are
//! invalid to it) and whether it is logged in (see `login`). When the last
//! connection of an application ends, its sessions are closed in the backend.
//!
//! Sessions are capped per application and across the sidecar
//! ([`MAX_SESSIONS_PER_APP`], [`MAX_SESSIONS`]): any process of the pod can
//! open them without a login, each costs the module memory, and an
//! application's are all closed when it ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cryptoki_sys::*;
use tracing::warn;

use crate::audit::Caller;

/// Sessions one application may have open (or being opened) at once.
/// C_OpenSession past it is `CKR_SESSION_COUNT`; the module is not asked.
pub const MAX_SESSIONS_PER_APP: usize = 1024;

/// Sessions of all applications together, the same way.
pub const MAX_SESSIONS: usize = 8192;

/// The secret a shim process presents to join its application from further
/// connections.
pub type AppToken = [u8; 16];

#[derive(Default)]
struct Sessions {
    /// Session handle -> slot it was opened on.
    open: HashMap<u64, CK_SLOT_ID>,
    /// C_OpenSession calls under way (room taken, handle not known yet).
    opening: usize,
}

pub struct App {
    pub id: u64,
    token: AppToken,
    sessions: Mutex<Sessions>,
    /// Sessions open or being opened by all applications (one counter, shared).
    all_sessions: Arc<AtomicUsize>,
    /// Whether a refusal of this application's sessions, of its session
    /// objects, was logged: once per application, as an application can only
    /// be refused again by paying for another connection and a cap's worth.
    sessions_refused: AtomicBool,
    objects_refused: AtomicBool,
    connections: AtomicUsize,
    /// Who the application's first connection came from (audit lines).
    caller: Arc<Caller>,
}

/// Room for one session taken by [`App::reserve_session`]: given back when
/// dropped, unless the session was opened.
pub struct SessionRoom<'a> {
    app: &'a App,
    opened: bool,
}

impl SessionRoom<'_> {
    /// The session the room was for is open.
    pub fn opened(mut self, session: u64, slot: CK_SLOT_ID) {
        let mut s = self.app.sessions();
        s.opening -= 1;
        if s.open.insert(session, slot).is_some() {
            // The module answered a handle that is open already: it counts once.
            self.app.all_sessions.fetch_sub(1, Ordering::SeqCst);
        }
        self.opened = true;
    }
}

impl Drop for SessionRoom<'_> {
    fn drop(&mut self) {
        if !self.opened {
            self.app.sessions().opening -= 1;
            self.app.all_sessions.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl App {
    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single inserts/removes), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot of one of this application's sessions.
    pub fn slot_of(&self, session: u64) -> Result<CK_SLOT_ID, CK_RV> {
        self.sessions()
            .open
            .get(&session)
            .copied()
            .ok_or(CKR_SESSION_HANDLE_INVALID)
    }

    /// Room for one more session, before C_OpenSession: `CKR_SESSION_COUNT`
    /// when this application or the sidecar is at its cap. Checked and taken
    /// under the application's lock, so concurrent opens cannot pass a cap.
    pub fn reserve_session(&self) -> Result<SessionRoom<'_>, CK_RV> {
        let mut s = self.sessions();
        let refused = if s.open.len() + s.opening >= MAX_SESSIONS_PER_APP {
            Some(MAX_SESSIONS_PER_APP)
        } else if self
            .all_sessions
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_SESSIONS).then_some(n + 1)
            })
            .is_err()
        {
            Some(MAX_SESSIONS)
        } else {
            None
        };
        if let Some(cap) = refused {
            drop(s);
            if !self.sessions_refused.swap(true, Ordering::Relaxed) {
                let whose = if cap == MAX_SESSIONS {
                    "the sidecar's"
                } else {
                    "the application's"
                };
                warn!(
                    app = self.id,
                    cap, "C_OpenSession refused (CKR_SESSION_COUNT): {whose} sessions are at the cap"
                );
            }
            return Err(CKR_SESSION_COUNT);
        }
        s.opening += 1;
        Ok(SessionRoom {
            app: self,
            opened: false,
        })
    }

    pub fn remove_session(&self, session: u64) {
        if self.sessions().open.remove(&session).is_some() {
            self.all_sessions.fetch_sub(1, Ordering::SeqCst);
        }
    }

    pub fn sessions_on(&self, slot: CK_SLOT_ID) -> Vec<u64> {
        self.sessions()
            .open
            .iter()
            .filter(|(_, s)| **s == slot)
            .map(|(h, _)| *h)
            .collect()
    }

    /// All the application's sessions, no longer its own: their room is
    /// given back, the caller closes them in the backend.
    pub fn take_all_sessions(&self) -> Vec<(u64, CK_SLOT_ID)> {
        let taken: Vec<(u64, CK_SLOT_ID)> = std::mem::take(&mut self.sessions().open).into_iter().collect();
        self.all_sessions.fetch_sub(taken.len(), Ordering::SeqCst);
        taken
    }

    /// True the first time this application's session objects are refused
    /// (to log it once).
    pub fn first_object_refusal(&self) -> bool {
        !self.objects_refused.swap(true, Ordering::Relaxed)
    }

    pub fn has_sessions(&self) -> bool {
        !self.sessions().open.is_empty()
    }

    pub fn has_session(&self, session: u64) -> bool {
        self.sessions().open.contains_key(&session)
    }

    pub fn has_session_on(&self, slot: CK_SLOT_ID) -> bool {
        self.sessions().open.values().any(|s| *s == slot)
    }

    pub fn token(&self) -> &AppToken {
        &self.token
    }

    pub fn caller(&self) -> Arc<Caller> {
        self.caller.clone()
    }
}

#[derive(Default)]
pub struct Apps {
    by_token: Mutex<HashMap<AppToken, Arc<App>>>,
    next_id: AtomicU64,
    /// Sessions open or being opened by all applications ([`MAX_SESSIONS`]).
    all_sessions: Arc<AtomicUsize>,
}

impl Apps {
    fn map(&self) -> MutexGuard<'_, HashMap<AppToken, Arc<App>>> {
        self.by_token.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions open or being opened by all applications.
    pub fn session_count(&self) -> usize {
        self.all_sessions.load(Ordering::SeqCst)
    }

    /// A new application for a connection that presented no token.
    pub fn create(&self, caller: Caller) -> std::io::Result<Arc<App>> {
        let mut token = [0u8; 16];
        fill_random(&mut token)?;
        let app = Arc::new(App {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            token,
            sessions: Mutex::new(Sessions::default()),
            all_sessions: self.all_sessions.clone(),
            sessions_refused: AtomicBool::new(false),
            objects_refused: AtomicBool::new(false),
            connections: AtomicUsize::new(1),
            caller: Arc::new(caller),
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
    pub fn join_or_create(&self, token: &[u8], caller: Caller) -> std::io::Result<Arc<App>> {
        match self.join(token) {
            Some(app) => Ok(app),
            None => self.create(caller),
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

    /// Connected applications.
    pub fn count(&self) -> usize {
        self.map().len()
    }

    /// Forgets every application: a join with their tokens makes a new one,
    /// so their shims start a new epoch (the module was re-initialized).
    pub fn forget_all(&self) -> Vec<Arc<App>> {
        self.map().drain().map(|(_, app)| app).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_stop_at_the_caps_and_room_is_given_back() {
        let apps = Apps::default();
        let a = apps.create(Caller::default()).expect("app");
        for h in 0..MAX_SESSIONS_PER_APP as u64 {
            a.reserve_session().expect("room").opened(h + 1, 0);
        }
        assert_eq!(a.reserve_session().err(), Some(CKR_SESSION_COUNT));
        a.remove_session(1);
        // A failed open gives its room back.
        drop(a.reserve_session().expect("room after a close"));
        a.reserve_session().expect("room again").opened(1, 0);
        assert_eq!(a.reserve_session().err(), Some(CKR_SESSION_COUNT));
        assert_eq!(apps.all_sessions.load(Ordering::SeqCst), MAX_SESSIONS_PER_APP);
        assert_eq!(a.take_all_sessions().len(), MAX_SESSIONS_PER_APP);
        assert_eq!(apps.all_sessions.load(Ordering::SeqCst), 0);

        // Across applications: rooms taken (not yet opened) count too.
        let others: Vec<_> = (0..MAX_SESSIONS / MAX_SESSIONS_PER_APP)
            .map(|_| apps.create(Caller::default()).expect("app"))
            .collect();
        let rooms: Vec<_> = others
            .iter()
            .flat_map(|o| (0..MAX_SESSIONS_PER_APP).map(|_| o.reserve_session().expect("room")))
            .collect();
        assert_eq!(
            a.reserve_session().err(),
            Some(CKR_SESSION_COUNT),
            "past the sidecar's cap"
        );
        drop(rooms);
        assert!(a.reserve_session().is_ok());
    }
}
