//! Session objects belong to the application that created them: PKCS#11
//! hides them from every other application, but the backend sees one
//! application (the sidecar), so the sidecar keeps the owners and hides
//! other applications' session objects itself. Token objects are shared.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use cryptoki_sys::*;
use hsmbridge_proto::wire::{attribute::Value, Template};

#[derive(Clone, Copy)]
struct Owner {
    app: u64,
    session: u64,
}

#[derive(Default)]
pub struct SessionObjects {
    owners: RwLock<HashMap<u64, Owner>>,
}

/// Whether a template makes a token object (CKA_TOKEN true); `None` when
/// it does not say.
pub fn token_attribute(t: Option<&Template>) -> Option<bool> {
    t?.attributes.iter().find(|a| a.r#type == CKA_TOKEN as u64).map(|a| match &a.value {
        Some(Value::Bytes(b)) => b.iter().any(|x| *x != 0),
        _ => false,
    })
}

impl SessionObjects {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<u64, Owner>> {
        self.owners.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<u64, Owner>> {
        self.owners.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a new object unless it is a token object.
    pub fn created(&self, app: u64, session: u64, object: CK_OBJECT_HANDLE, token: bool) {
        if object != 0 && !token {
            self.write().insert(object as u64, Owner { app, session });
        }
    }

    pub fn is_session_object(&self, object: u64) -> bool {
        self.read().contains_key(&object)
    }

    /// False for another application's session object.
    pub fn visible(&self, app: u64, object: u64) -> bool {
        self.read().get(&object).is_none_or(|o| o.app == app)
    }

    pub fn destroyed(&self, object: u64) {
        self.write().remove(&object);
    }

    /// A closed session takes its session objects with it.
    pub fn session_closed(&self, session: u64) {
        self.write().retain(|_, o| o.session != session);
    }
}
