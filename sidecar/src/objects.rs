//! Session objects belong to the application that created them: PKCS#11
//! hides them from every other application, but the backend sees one
//! application (the sidecar), so the sidecar keeps the owners and hides
//! other applications' session objects itself. Token objects are shared.
//!
//! Any application can make session objects without a login, so they are
//! capped per application and across the sidecar
//! ([`MAX_SESSION_OBJECTS_PER_APP`], [`MAX_SESSION_OBJECTS`]). The module
//! creates an object before the sidecar learns its handle, so room is taken
//! before the call ([`SessionObjects::room`]) and a call past a cap is
//! `CKR_HOST_MEMORY` without asking the module. Token objects are not
//! recorded and not capped.

use std::collections::{HashMap, HashSet};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use cryptoki_sys::*;
use hsmbridge_proto::wire::{attribute::Value, Template};
use tracing::warn;

use crate::apps::App;

/// Session objects one application may have (recorded, or being created).
/// A call that would make one more is `CKR_HOST_MEMORY`; the module is not
/// asked. (SoftHSM, in the sidecar's process, spends 3.5-8.5 KiB on each.)
pub const MAX_SESSION_OBJECTS_PER_APP: usize = 4096;

/// Session objects of all applications together, the same way.
pub const MAX_SESSION_OBJECTS: usize = 16384;

#[derive(Clone, Copy)]
struct Owner {
    app: u64,
    session: u64,
}

#[derive(Default)]
struct Table {
    owners: HashMap<u64, Owner>,
    /// Session -> its session objects, so closing a session costs its own
    /// objects, not all of them.
    by_session: HashMap<u64, HashSet<u64>>,
    /// Session objects recorded or being created, per application (no entry
    /// at 0, so ended applications leave nothing behind).
    per_app: HashMap<u64, usize>,
    /// The same for all applications.
    total: usize,
}

#[derive(Default)]
pub struct SessionObjects {
    table: RwLock<Table>,
}

/// Room for the session objects one call may create, taken by
/// [`SessionObjects::room`]; what is not used is given back when it is
/// dropped.
pub struct Room<'a> {
    objects: &'a SessionObjects,
    app: &'a App,
    left: usize,
}

/// Whether a template makes a token object (CKA_TOKEN true); `None` when
/// it does not say.
pub fn token_attribute(t: Option<&Template>) -> Option<bool> {
    t?.attributes
        .iter()
        .find(|a| a.r#type == CKA_TOKEN as u64)
        .map(|a| match &a.value {
            Some(Value::Bytes(b)) => b.iter().any(|x| *x != 0),
            _ => false,
        })
}

impl Table {
    fn take(&mut self, app: u64, n: usize) {
        *self.per_app.entry(app).or_default() += n;
        self.total += n;
    }

    fn give_back(&mut self, app: u64, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(c) = self.per_app.get_mut(&app) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                self.per_app.remove(&app);
            }
        }
        self.total = self.total.saturating_sub(n);
    }

    fn remove(&mut self, object: u64) -> Option<Owner> {
        let o = self.owners.remove(&object)?;
        if let Some(set) = self.by_session.get_mut(&o.session) {
            set.remove(&object);
            if set.is_empty() {
                self.by_session.remove(&o.session);
            }
        }
        self.give_back(o.app, 1);
        Some(o)
    }
}

impl SessionObjects {
    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Room for a call that creates objects, before the module is called:
    /// one place for each of them that is not a token object (`tokens`:
    /// whether each one is). `CKR_HOST_MEMORY` when the application or the
    /// sidecar would pass its cap.
    pub fn room<'a>(&'a self, app: &'a App, tokens: &[bool]) -> Result<Room<'a>, CK_RV> {
        let n = tokens.iter().filter(|t| !**t).count();
        if n > 0 {
            let mut table = self.write();
            let mine = table.per_app.get(&app.id).copied().unwrap_or(0);
            if mine + n > MAX_SESSION_OBJECTS_PER_APP || table.total + n > MAX_SESSION_OBJECTS {
                let sidecar_full = table.total + n > MAX_SESSION_OBJECTS;
                drop(table);
                if app.first_object_refusal() {
                    let whose = if sidecar_full {
                        "the sidecar's"
                    } else {
                        "the application's"
                    };
                    warn!(
                        app = app.id,
                        "object refused (CKR_HOST_MEMORY): {whose} session objects are at the cap"
                    );
                }
                return Err(CKR_HOST_MEMORY);
            }
            table.take(app.id, n);
        }
        Ok(Room {
            objects: self,
            app,
            left: n,
        })
    }

    pub fn is_session_object(&self, object: u64) -> bool {
        self.read().owners.contains_key(&object)
    }

    /// False for another application's session object.
    pub fn visible(&self, app: u64, object: u64) -> bool {
        self.read().owners.get(&object).is_none_or(|o| o.app == app)
    }

    pub fn destroyed(&self, object: u64) {
        self.write().remove(object);
    }

    /// A closed session takes its session objects with it.
    pub fn session_closed(&self, session: u64) {
        let mut table = self.write();
        for object in table.by_session.remove(&session).unwrap_or_default() {
            table.remove(object);
        }
    }
}

impl Room<'_> {
    /// Records an object the module created in one of the application's
    /// sessions, unless it is a token object (or no object, handle 0).
    pub fn created(&mut self, session: u64, object: CK_OBJECT_HANDLE, token: bool) {
        if token || object == 0 {
            return;
        }
        let object = object as u64;
        let mut table = self.objects.write();
        // Under the table's lock: a session closed since the call (by another
        // connection of the application) has taken the object with it, and its
        // objects were removed already, or will be after this.
        if !self.app.has_session(session) {
            return;
        }
        // A handle recorded already (the module reused it) is the new object's now.
        table.remove(object);
        if self.left > 0 {
            self.left -= 1;
        } else {
            // Not reached (room was taken for each session object); the
            // object is still recorded, so it stays hidden from others.
            table.take(self.app.id, 1);
        }
        table.owners.insert(
            object,
            Owner {
                app: self.app.id,
                session,
            },
        );
        table.by_session.entry(session).or_default().insert(object);
    }
}

impl Drop for Room<'_> {
    fn drop(&mut self) {
        if self.left > 0 {
            self.objects.write().give_back(self.app.id, self.left);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::Apps;

    #[test]
    fn session_objects_stop_at_the_caps_and_go_with_their_session() {
        let apps = Apps::default();
        let a = apps.create(crate::audit::Caller::default()).expect("app");
        a.reserve_session().expect("room").opened(7, 0);
        let objects = SessionObjects::default();
        for h in 0..MAX_SESSION_OBJECTS_PER_APP as CK_OBJECT_HANDLE {
            objects.room(&a, &[false]).expect("room").created(7, h + 1, false);
        }
        assert_eq!(objects.room(&a, &[false]).err(), Some(CKR_HOST_MEMORY));
        // Token objects are neither capped nor recorded.
        objects
            .room(&a, &[true, true])
            .expect("token objects")
            .created(7, 1_000_000, true);
        assert!(!objects.is_session_object(1_000_000));
        objects.destroyed(1);
        assert_eq!(
            objects.room(&a, &[false, false]).err(),
            Some(CKR_HOST_MEMORY),
            "a pair with room for one"
        );
        // Unused room (a failed call) is given back.
        drop(objects.room(&a, &[false]).expect("room after a destroy"));
        objects.room(&a, &[false]).expect("room").created(7, 1, false);
        // An object of a session closed meanwhile is not recorded.
        objects.room(&a, &[false]).err().expect("at the cap");
        objects.session_closed(7);
        a.remove_session(7);
        objects.room(&a, &[false]).expect("room").created(7, 99, false);
        assert!(!objects.is_session_object(99));
        let t = objects.read();
        assert!(t.owners.is_empty() && t.by_session.is_empty() && t.per_app.is_empty() && t.total == 0);
    }

    #[test]
    fn the_sidecar_cap_holds_across_applications() {
        let apps = Apps::default();
        let objects = SessionObjects::default();
        let all: Vec<_> = (0..=MAX_SESSION_OBJECTS / MAX_SESSION_OBJECTS_PER_APP)
            .map(|_| apps.create(crate::audit::Caller::default()).expect("app"))
            .collect();
        let (last, full) = all.split_last().expect("apps");
        for (i, app) in full.iter().enumerate() {
            let session = i as u64 + 1;
            app.reserve_session().expect("room").opened(session, 0);
            let mut room = objects
                .room(app, &vec![false; MAX_SESSION_OBJECTS_PER_APP])
                .expect("room");
            for h in 0..MAX_SESSION_OBJECTS_PER_APP {
                room.created(session, (session << 32 | h as u64) as CK_OBJECT_HANDLE, false);
            }
        }
        assert_eq!(objects.room(last, &[false]).err(), Some(CKR_HOST_MEMORY));
        objects.session_closed(1);
        assert!(objects.room(last, &[false]).is_ok());
    }
}
