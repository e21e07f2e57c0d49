//! Key management: generate, wrap, unwrap, derive.

use cryptoki_sys::*;
use hsmbridge_proto::template::OwnedTemplate;
use hsmbridge_proto::wire::{self, response::Result as Body};

use crate::apps::App;
use crate::backend::p11;
use crate::objects::token_attribute;
use crate::reply;
use crate::service::{Answer, Service};

impl Service {
    pub(crate) fn generate_key(&self, app: &App, c: wire::GenerateKey) -> Answer {
        let s = self.session(app, c.session)?;
        let mut m = self.mechanism(c.mechanism.as_ref())?;
        let mut t = OwnedTemplate::values(c.template.as_ref())?;
        let token = token_attribute(c.template.as_ref()).unwrap_or(false);
        let mut room = self.objects.room(app, &[token])?;
        let mut h: CK_OBJECT_HANDLE = 0;
        // SAFETY: `m` (OwnedMechanism) and `t` (OwnedTemplate) own the mechanism, the template and every
        // buffer they point into, and outlive the call; `h` is live.
        let rv = unsafe {
            p11!(
                self.backend,
                C_GenerateKey(s, m.as_ptr(), t.as_mut_ptr(), t.count(), &mut h)
            )
        };
        if rv == CKR_OK {
            room.created(c.session, h, token);
        }
        Ok(reply::ulong(rv, h))
    }

    pub(crate) fn generate_key_pair(&self, app: &App, c: wire::GenerateKeyPair) -> Answer {
        let s = self.session(app, c.session)?;
        let mut m = self.mechanism(c.mechanism.as_ref())?;
        let mut public = OwnedTemplate::values(c.public_template.as_ref())?;
        let mut private = OwnedTemplate::values(c.private_template.as_ref())?;
        let public_token = token_attribute(c.public_template.as_ref()).unwrap_or(false);
        let private_token = token_attribute(c.private_template.as_ref()).unwrap_or(false);
        let mut room = self.objects.room(app, &[public_token, private_token])?;
        let (mut pubh, mut privh): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) = (0, 0);
        // SAFETY: `m` (OwnedMechanism), `public` and `private` (OwnedTemplate) own the mechanism,
        // both templates and every buffer they point into, and outlive the call; `pubh` and
        // `privh` are live handles for the module to write.
        let rv = unsafe {
            p11!(
                self.backend,
                C_GenerateKeyPair(
                    s,
                    m.as_ptr(),
                    public.as_mut_ptr(),
                    public.count(),
                    private.as_mut_ptr(),
                    private.count(),
                    &mut pubh,
                    &mut privh,
                )
            )
        };
        if rv == CKR_OK {
            room.created(c.session, pubh, public_token);
            room.created(c.session, privh, private_token);
        }
        Ok(reply::on_ok(rv, || {
            Body::KeyPair(wire::KeyPair {
                public_key: pubh as u64,
                private_key: privh as u64,
            })
        }))
    }

    pub(crate) fn wrap_key(&self, app: &App, c: wire::WrapKey) -> Answer {
        let s = self.session(app, c.session)?;
        let mut m = self.mechanism(c.mechanism.as_ref())?;
        let (wrapping, key) = (self.key(app, c.wrapping_key)?, self.key(app, c.key)?);
        let (capacity, length_null) = (c.capacity, c.length_null);
        // SAFETY: `m` (OwnedMechanism) owns the mechanism and its parameter buffers and outlives the call;
        // `out`/`len` are `with_output`'s, valid for the call (see there).
        Ok(reply::with_output(capacity, length_null, |out, len| unsafe {
            p11!(self.backend, C_WrapKey(s, m.as_ptr(), wrapping, key, out, len))
        }))
    }

    pub(crate) fn unwrap_key(&self, app: &App, mut c: wire::UnwrapKey) -> Answer {
        let s = self.session(app, c.session)?;
        let unwrapping = self.key(app, c.unwrapping_key)?;
        let mut m = self.mechanism(c.mechanism.as_ref())?;
        let mut t = OwnedTemplate::values(c.template.as_ref())?;
        let token = token_attribute(c.template.as_ref()).unwrap_or(false);
        let mut room = self.objects.room(app, &[token])?;
        let mut h: CK_OBJECT_HANDLE = 0;
        // SAFETY: `m` (OwnedMechanism) and `t` (OwnedTemplate) own the mechanism, the template and
        // every buffer they point into, and outlive the call, as does `c.wrapped_key`, given with its
        // length; `h` is live.
        let rv = unsafe {
            p11!(
                self.backend,
                C_UnwrapKey(
                    s,
                    m.as_ptr(),
                    unwrapping,
                    c.wrapped_key.as_mut_ptr(),
                    c.wrapped_key.len() as CK_ULONG,
                    t.as_mut_ptr(),
                    t.count(),
                    &mut h,
                )
            )
        };
        if rv == CKR_OK {
            room.created(c.session, h, token);
        }
        Ok(reply::ulong(rv, h))
    }

    pub(crate) fn derive_key(&self, app: &App, c: wire::DeriveKey) -> Answer {
        let s = self.session(app, c.session)?;
        let mut m = self.mechanism(c.mechanism.as_ref())?;
        let mut t = OwnedTemplate::values(c.template.as_ref())?;
        let mut h: CK_OBJECT_HANDLE = 0;
        let base = self.key(app, c.base_key)?;
        let token = token_attribute(c.template.as_ref()).unwrap_or(false);
        let mut room = self.objects.room(app, &[token])?;
        // SAFETY: `m` (OwnedMechanism) and `t` (OwnedTemplate) own the mechanism, the template and every
        // buffer they point into, and outlive the call; `h` is live.
        let rv = unsafe {
            p11!(
                self.backend,
                C_DeriveKey(s, m.as_ptr(), base, t.as_mut_ptr(), t.count(), &mut h)
            )
        };
        if rv == CKR_OK {
            room.created(c.session, h, token);
        }
        Ok(reply::ulong(rv, h))
    }
}
