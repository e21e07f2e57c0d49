//! Which calls the service audits, and what their lines say: the key is named before the call
//! (a destroyed object cannot be named after), made objects from the answer.

use std::sync::Arc;
use std::time::SystemTime;

use cryptoki_sys::*;
use hsmbridge_proto::wire::{request::Call, response, Response};

use super::{subject, Event, KeyName, Kind, Subject};
use crate::apps::App;
use crate::service::Service;

/// A call being audited: what was known before it ran.
pub struct Audited {
    subject: Subject,
    function: &'static str,
    key: Option<Arc<KeyName>>,
    other: Option<Arc<KeyName>>,
}

fn user_type_name(user_type: u64) -> &'static str {
    match user_type as CK_USER_TYPE {
        CKU_USER => "user CKU_USER",
        CKU_SO => "user CKU_SO",
        CKU_CONTEXT_SPECIFIC => "user CKU_CONTEXT_SPECIFIC",
        _ => "a vendor-defined user type",
    }
}

impl Service {
    /// A handle named through one of `app`'s sessions (nothing if either is not the app's: the
    /// call then fails, and its line says so).
    fn name_of(&self, app: &App, session: u64, handle: u64) -> Option<Arc<KeyName>> {
        let session = self.session(app, session).ok()?;
        let object = self.object(app, handle).ok()?;
        let session_object = self.objects.is_session_object(handle);
        Some(self.key_names.name(&self.backend, session, object, session_object))
    }

    /// Whether `call` is audited, and its key's name.
    pub fn audit_before(&self, app: &App, call: &Call) -> Option<Audited> {
        if !self.audit.is_on() {
            return None;
        }
        let subject = subject(call)?;
        let key = subject.key.and_then(|h| self.name_of(app, subject.session, h));
        // Public keys (verify, encrypt with RSA/EC) are not what the trail is for; but a key
        // wrapped out (C_WrapKey, `other`) is, whatever it was wrapped with.
        let public_use = subject.kind == Kind::KeyUse && key.as_ref().is_some_and(|k| !k.is_private_or_secret());
        if public_use && subject.other.is_none() {
            return None;
        }
        let other = subject.other.and_then(|h| self.name_of(app, subject.session, h));
        Some(Audited {
            subject,
            function: crate::names::function(call),
            key,
            other,
        })
    }

    /// Records the line(s) of an audited call that answered `response`.
    pub fn audit_after(&self, app: &App, audited: Audited, response: &Response, backend_login: bool) {
        let rv = response.rv as CK_RV;
        let Audited {
            subject,
            function,
            key,
            other,
        } = audited;
        if matches!(subject.kind, Kind::ObjectDestroyed | Kind::ObjectModified) {
            // A new label must not be hidden behind the cached one (nor a destroyed handle's).
            if let Some(h) = subject.key {
                self.key_names.forget(h);
            }
        }
        if function == "C_InitToken" && rv == CKR_OK {
            self.key_names.clear();
        }
        let mut detail = subject.user_type.map(|u| user_type_name(u).to_owned());
        let mut kind = subject.kind;
        if backend_login && self.logins.managed() {
            kind = Kind::BackendLogin;
            detail = Some(format!(
                "{}; the backend logged in with the held credential (generation {})",
                detail.unwrap_or_default(),
                self.logins.credential_generation()
            ));
        }
        let made: Vec<u64> = match (&response.result, subject.creates && rv == CKR_OK) {
            (Some(response::Result::Ulong(h)), true) => vec![*h],
            (Some(response::Result::KeyPair(p)), true) => vec![p.public_key, p.private_key],
            _ => Vec::new(),
        };
        let mut objects: Vec<Option<Arc<KeyName>>> = made
            .into_iter()
            .map(|h| self.name_of(app, subject.session, h))
            .collect();
        if objects.is_empty() {
            objects.push(other);
        }
        for object in objects {
            self.audit.record(Event {
                time: SystemTime::now(),
                kind,
                app: Some(app.id),
                caller: Some(app.caller()),
                function,
                mechanism: subject.mechanism,
                key: key.clone(),
                object,
                result: rv,
                detail: detail.clone(),
            });
        }
    }

    /// A request refused before the module saw it (`why`: a few words, never the request's bytes).
    pub fn audit_refused(&self, app: &App, rv: CK_RV, why: &str) {
        self.audit.record(Event {
            time: SystemTime::now(),
            kind: Kind::Refused,
            app: Some(app.id),
            caller: Some(app.caller()),
            function: "",
            mechanism: None,
            key: None,
            object: None,
            result: rv,
            detail: Some(why.to_owned()),
        });
    }
}
