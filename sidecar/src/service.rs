//! What the sidecar does with one PKCS#11 call from one application: check
//! that the session is the application's, run the call on the backend, and
//! answer. The function groups live in sibling files as `impl Service`.

use std::sync::Arc;

use cryptoki_sys::*;
use hsmbridge_proto::mechanism::{self, OwnedMechanism, RawParamMechanisms};
use hsmbridge_proto::wire::{self, request::Call, Response};

use crate::apps::{App, Apps};
use crate::audit::{Audit, KeyNames};
use crate::backend::{p11, Backend};
use crate::login::Logins;
use crate::metrics::Metrics;
use crate::monitor::Observed;
use crate::objects::SessionObjects;
use crate::reply;
use crate::searches::Searches;

pub struct Service {
    pub backend: Backend,
    pub apps: Apps,
    pub logins: Logins,
    pub objects: SessionObjects,
    pub searches: Searches,
    /// Vendor mechanisms declared pointer-free (`--raw-param-mechanism`).
    pub raw_params: RawParamMechanisms,
    pub metrics: Arc<Metrics>,
    pub audit: Audit,
    /// Key names for the audit trail (`audit/key_names.rs`).
    pub key_names: KeyNames,
    /// What the monitor last saw (`monitor.rs`).
    pub observed: Observed,
}

pub type Answer = Result<Response, CK_RV>;

impl Service {
    pub fn new(
        backend: Backend,
        logins: Logins,
        raw_params: RawParamMechanisms,
        metrics: Arc<Metrics>,
        audit: Audit,
    ) -> Arc<Self> {
        Arc::new(Service {
            backend,
            apps: Apps::default(),
            logins,
            objects: SessionObjects::default(),
            searches: Searches::default(),
            raw_params,
            metrics,
            audit,
            key_names: KeyNames::default(),
            observed: Observed::default(),
        })
    }

    /// What `/metrics` shows besides the counters.
    pub fn metrics_state(&self, connections: &crate::server::Registry) -> crate::metrics::State {
        crate::metrics::State {
            applications: self.apps.count(),
            connections: connections.count(),
            sessions: self.apps.session_count(),
            logged_in: self.logins.any_logged_in(),
            held_pin_rejected: self.observed.held_pin_rejected(),
            token_present: self.observed.token_present(),
            credential_generation: self.logins.credential_generation(),
            config_generation: self.observed.config_generation(),
        }
    }

    /// A call's mechanism rebuilt in C memory, in the layout its type prescribes.
    pub fn mechanism(&self, m: Option<&wire::Mechanism>) -> Result<OwnedMechanism, CK_RV> {
        mechanism::to_c(m.ok_or(CKR_ARGUMENTS_BAD)?, &self.raw_params)
    }

    /// The backend handle of one of `app`'s sessions.
    pub fn session(&self, app: &App, session: u64) -> Result<CK_SESSION_HANDLE, CK_RV> {
        app.slot_of(session)?;
        Ok(session as CK_SESSION_HANDLE)
    }

    /// An object handle `app` may use: not another application's session object.
    pub fn object(&self, app: &App, object: u64) -> Result<CK_OBJECT_HANDLE, CK_RV> {
        if self.objects.visible(app.id, object) {
            Ok(object as CK_OBJECT_HANDLE)
        } else {
            Err(CKR_OBJECT_HANDLE_INVALID)
        }
    }

    /// The same for a key argument, with the error PKCS#11 gives for keys.
    pub fn key(&self, app: &App, key: u64) -> Result<CK_OBJECT_HANDLE, CK_RV> {
        self.object(app, key).map_err(|_| CKR_KEY_HANDLE_INVALID)
    }

    pub fn handle(&self, app: &App, call: Call) -> Response {
        use Call::*;
        // Inside the module until the answer is made (backend.rs: no
        // re-initialization meanwhile, for any call: a blocking
        // C_WaitForSlotEvent holds re-initialization off while it waits).
        let _inside = self.backend.enter();
        let audited = self.audit_before(app, &call);
        let mut backend_login = false;
        let answer = match call {
            // Hello is only valid as a connection's first message.
            Hello(_) => Err(CKR_GENERAL_ERROR),
            GetInfo(_) => self.get_info(),
            GetSlotList(c) => self.get_slot_list(c),
            GetSlotInfo(c) => self.get_slot_info(c.slot),
            GetTokenInfo(c) => self.get_token_info(c.slot),
            GetMechanismList(c) => self.get_mechanism_list(c),
            GetMechanismInfo(c) => self.get_mechanism_info(c),
            InitToken(c) => self.init_token(c),
            InitPin(c) => self.init_pin(app, c),
            SetPin(c) => self.set_pin(app, c),
            OpenSession(c) => self.open_session(app, c),
            CloseSession(c) => self.close_session(app, c.session),
            CloseAllSessions(c) => self.close_all_sessions(app, c.slot),
            GetSessionInfo(c) => self.get_session_info(app, c.session),
            GetOperationState(c) => self.get_operation_state(app, c),
            SetOperationState(c) => self.set_operation_state(app, c),
            Login(c) => {
                let login = self
                    .logins
                    .login(&self.backend, app, c.session, c.user_type as CK_USER_TYPE, c.pin);
                backend_login = login.backend;
                Ok(reply::rv(login.rv))
            }
            Logout(c) => Ok(reply::rv(self.logins.logout(&self.backend, app, c.session))),
            CreateObject(c) => self.create_object(app, c),
            CopyObject(c) => self.copy_object(app, c),
            DestroyObject(c) => self.destroy_object(app, c),
            GetObjectSize(c) => self.get_object_size(app, c),
            GetAttributeValue(c) => self.get_attribute_value(app, c),
            SetAttributeValue(c) => self.set_attribute_value(app, c),
            FindObjectsInit(c) => self.find_objects_init(app, c),
            FindObjects(c) => self.find_objects(app, c),
            FindObjectsFinal(c) => self.session_call(app, c.session, |s| {
                // SAFETY: only a session handle, the app's (checked by `session_call`); no pointers.
                let rv = unsafe { p11!(self.backend, C_FindObjectsFinal(s)) };
                if rv == CKR_OK {
                    self.searches.ended(c.session);
                }
                rv
            }),
            EncryptInit(c) => {
                // SAFETY: `operation_init` passes the request's OwnedMechanism, which owns its parameter buffers (see there).
                self.operation_init(app, c, |s, m, k| unsafe { p11!(self.backend, C_EncryptInit(s, m, k)) })
            }
            // SAFETY: `data_output` passes `c.data` and `with_output`'s output arguments, valid for the call (see there).
            Encrypt(c) => self.data_output(app, c, |s, d, n, o, ol| unsafe {
                p11!(self.backend, C_Encrypt(s, d, n, o, ol))
            }),
            // SAFETY: `data_output` passes `c.data` and `with_output`'s output arguments, valid for the call (see there).
            EncryptUpdate(c) => self.data_output(app, c, |s, d, n, o, ol| unsafe {
                p11!(self.backend, C_EncryptUpdate(s, d, n, o, ol))
            }),
            // SAFETY: `final_output` passes `with_output`'s output arguments, valid for the call (see there).
            EncryptFinal(c) => self.final_output(app, c, |s, o, ol| unsafe {
                p11!(self.backend, C_EncryptFinal(s, o, ol))
            }),
            DecryptInit(c) => {
                // SAFETY: `operation_init` passes the request's OwnedMechanism, which owns its parameter buffers (see there).
                self.operation_init(app, c, |s, m, k| unsafe { p11!(self.backend, C_DecryptInit(s, m, k)) })
            }
            // SAFETY: `data_output` passes `c.data` and `with_output`'s output arguments, valid for the call (see there).
            Decrypt(c) => self.data_output(app, c, |s, d, n, o, ol| unsafe {
                p11!(self.backend, C_Decrypt(s, d, n, o, ol))
            }),
            // SAFETY: `data_output` passes `c.data` and `with_output`'s output arguments, valid for the call (see there).
            DecryptUpdate(c) => self.data_output(app, c, |s, d, n, o, ol| unsafe {
                p11!(self.backend, C_DecryptUpdate(s, d, n, o, ol))
            }),
            // SAFETY: `final_output` passes `with_output`'s output arguments, valid for the call (see there).
            DecryptFinal(c) => self.final_output(app, c, |s, o, ol| unsafe {
                p11!(self.backend, C_DecryptFinal(s, o, ol))
            }),
            // SAFETY: `operation_init` passes the request's OwnedMechanism, which owns its parameter buffers (see there).
            DigestInit(c) => self.operation_init(app, c, |s, m, _| unsafe { p11!(self.backend, C_DigestInit(s, m)) }),
            // SAFETY: `data_output` passes `c.data` and `with_output`'s output arguments, valid for the call (see there).
            Digest(c) => self.data_output(app, c, |s, d, n, o, ol| unsafe {
                p11!(self.backend, C_Digest(s, d, n, o, ol))
            }),
            // SAFETY: `data_in` passes `c.data` and its length, valid for the call (see there).
            DigestUpdate(c) => self.data_in(app, c, |s, d, n| unsafe { p11!(self.backend, C_DigestUpdate(s, d, n)) }),
            DigestKey(c) => {
                let key = self.key(app, c.object);
                self.session_call(app, c.session, |s| match key {
                    // SAFETY: only the app's session (checked by `session_call`) and key (by `self.key`); no pointers.
                    Ok(k) => unsafe { p11!(self.backend, C_DigestKey(s, k)) },
                    Err(rv) => rv,
                })
            }
            // SAFETY: `final_output` passes `with_output`'s output arguments, valid for the call (see there).
            DigestFinal(c) => self.final_output(app, c, |s, o, ol| unsafe {
                p11!(self.backend, C_DigestFinal(s, o, ol))
            }),
            // SAFETY: `operation_init` passes the request's OwnedMechanism, which owns its parameter buffers (see there).
            SignInit(c) => self.operation_init(app, c, |s, m, k| unsafe { p11!(self.backend, C_SignInit(s, m, k)) }),
            // SAFETY: `data_output` passes `c.data` and `with_output`'s output arguments, valid for the call (see there).
            Sign(c) => self.data_output(app, c, |s, d, n, o, ol| unsafe {
                p11!(self.backend, C_Sign(s, d, n, o, ol))
            }),
            // SAFETY: `data_in` passes `c.data` and its length, valid for the call (see there).
            SignUpdate(c) => self.data_in(app, c, |s, d, n| unsafe { p11!(self.backend, C_SignUpdate(s, d, n)) }),
            // SAFETY: `final_output` passes `with_output`'s output arguments, valid for the call (see there).
            SignFinal(c) => self.final_output(app, c, |s, o, ol| unsafe { p11!(self.backend, C_SignFinal(s, o, ol)) }),
            // SAFETY: `operation_init` passes the request's OwnedMechanism, which owns its parameter buffers (see there).
            SignRecoverInit(c) => self.operation_init(app, c, |s, m, k| unsafe {
                p11!(self.backend, C_SignRecoverInit(s, m, k))
            }),
            // SAFETY: `data_output` passes `c.data` and `with_output`'s output arguments, valid for the call (see there).
            SignRecover(c) => self.data_output(app, c, |s, d, n, o, ol| unsafe {
                p11!(self.backend, C_SignRecover(s, d, n, o, ol))
            }),
            VerifyInit(c) => {
                // SAFETY: `operation_init` passes the request's OwnedMechanism, which owns its parameter buffers (see there).
                self.operation_init(app, c, |s, m, k| unsafe { p11!(self.backend, C_VerifyInit(s, m, k)) })
            }
            Verify(c) => self.verify(app, c),
            // SAFETY: `data_in` passes `c.data` and its length, valid for the call (see there).
            VerifyUpdate(c) => self.data_in(app, c, |s, d, n| unsafe { p11!(self.backend, C_VerifyUpdate(s, d, n)) }),
            // SAFETY: `data_in` passes `c.data` and its length, valid for the call (see there).
            VerifyFinal(c) => self.data_in(app, c, |s, d, n| unsafe { p11!(self.backend, C_VerifyFinal(s, d, n)) }),
            VerifyRecoverInit(c) => {
                // SAFETY: `operation_init` passes the request's OwnedMechanism, which owns its parameter buffers (see there).
                self.operation_init(app, c, |s, m, k| unsafe {
                    p11!(self.backend, C_VerifyRecoverInit(s, m, k))
                })
            }
            VerifyRecover(c) => {
                // SAFETY: `data_output` passes `c.data` and `with_output`'s output arguments, valid for the call (see there).
                self.data_output(app, c, |s, d, n, o, ol| unsafe {
                    p11!(self.backend, C_VerifyRecover(s, d, n, o, ol))
                })
            }
            DigestEncryptUpdate(c) => {
                // SAFETY: `data_output` passes `c.data` and `with_output`'s output arguments, valid for the call (see there).
                self.data_output(app, c, |s, d, n, o, ol| unsafe {
                    p11!(self.backend, C_DigestEncryptUpdate(s, d, n, o, ol))
                })
            }
            DecryptDigestUpdate(c) => {
                // SAFETY: `data_output` passes `c.data` and `with_output`'s output arguments, valid for the call (see there).
                self.data_output(app, c, |s, d, n, o, ol| unsafe {
                    p11!(self.backend, C_DecryptDigestUpdate(s, d, n, o, ol))
                })
            }
            SignEncryptUpdate(c) => {
                // SAFETY: `data_output` passes `c.data` and `with_output`'s output arguments, valid for the call (see there).
                self.data_output(app, c, |s, d, n, o, ol| unsafe {
                    p11!(self.backend, C_SignEncryptUpdate(s, d, n, o, ol))
                })
            }
            DecryptVerifyUpdate(c) => {
                // SAFETY: `data_output` passes `c.data` and `with_output`'s output arguments, valid for the call (see there).
                self.data_output(app, c, |s, d, n, o, ol| unsafe {
                    p11!(self.backend, C_DecryptVerifyUpdate(s, d, n, o, ol))
                })
            }
            GenerateKey(c) => self.generate_key(app, c),
            GenerateKeyPair(c) => self.generate_key_pair(app, c),
            WrapKey(c) => self.wrap_key(app, c),
            UnwrapKey(c) => self.unwrap_key(app, c),
            DeriveKey(c) => self.derive_key(app, c),
            // SAFETY: `data_in` passes `c.data` and its length, valid for the call (see there).
            SeedRandom(c) => self.data_in(app, c, |s, d, n| unsafe { p11!(self.backend, C_SeedRandom(s, d, n)) }),
            GenerateRandom(c) => self.generate_random(app, c),
            // SAFETY: only the session handle (the app's, checked by `session_call`); no pointers.
            GetFunctionStatus(c) => self.session_call(app, c.session, |s| unsafe {
                p11!(self.backend, C_GetFunctionStatus(s))
            }),
            CancelFunction(c) => {
                // SAFETY: only the session handle (the app's, checked by `session_call`); no pointers.
                self.session_call(app, c.session, |s| unsafe { p11!(self.backend, C_CancelFunction(s)) })
            }
            WaitForSlotEvent(c) => Ok(self.wait_for_slot_event(c.flags)),
        };
        let response = answer.unwrap_or_else(reply::rv);
        if let Some(audited) = audited {
            self.audit_after(app, audited, &response, backend_login);
        }
        response
    }

    /// A call that takes only a session and returns only a CK_RV.
    pub fn session_call(&self, app: &App, session: u64, f: impl FnOnce(CK_SESSION_HANDLE) -> CK_RV) -> Answer {
        Ok(reply::rv(f(self.session(app, session)?)))
    }

    /// Forgets what a closed session had: its session objects and its search.
    pub fn session_gone(&self, session: u64) {
        self.objects.session_closed(session);
        self.searches.ended(session);
    }

    /// Ends an application whose last connection closed: its sessions are
    /// closed in the backend and its logins released.
    pub fn end_app(&self, app: &App) -> usize {
        let _inside = self.backend.enter();
        let sessions = app.take_all_sessions();
        let mut slots: Vec<CK_SLOT_ID> = Vec::new();
        for (session, slot) in &sessions {
            // SAFETY: only a session handle, one the application owned; no pointers.
            unsafe { p11!(self.backend, C_CloseSession(*session as CK_SESSION_HANDLE)) };
            self.session_gone(*session);
            if !slots.contains(slot) {
                slots.push(*slot);
            }
        }
        for slot in slots {
            self.logins.sessions_closed(&self.backend, &self.apps, app, slot);
        }
        sessions.len()
    }

    fn wait_for_slot_event(&self, flags: u64) -> Response {
        let mut slot: CK_SLOT_ID = 0;
        // SAFETY: `slot` is a live CK_SLOT_ID for the module to write; pReserved is NULL as required.
        let rv = unsafe {
            p11!(
                self.backend,
                C_WaitForSlotEvent(flags as CK_FLAGS, &mut slot, std::ptr::null_mut())
            )
        };
        reply::ulong(rv, slot)
    }
}
