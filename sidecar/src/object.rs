//! Object management: templates are rebuilt in C memory (nested ones too).

use cryptoki_sys::*;
use hsmbridge_proto::template::OwnedTemplate;
use hsmbridge_proto::wire::{self, response::Result as Body};

use crate::apps::App;
use crate::backend::p11;
use crate::objects::token_attribute;
use crate::reply;
use crate::service::{Answer, Service};

/// Most handles one C_FindObjects call returns, whatever the app asks for.
const MAX_FIND: u64 = hsmbridge_proto::limits::MAX_LIST as u64;

/// The CK_RVs of C_GetAttributeValue that come with per-attribute results.
fn has_attribute_results(rv: CK_RV) -> bool {
    matches!(
        rv,
        CKR_OK | CKR_ATTRIBUTE_SENSITIVE | CKR_ATTRIBUTE_TYPE_INVALID | CKR_BUFFER_TOO_SMALL
    )
}

impl Service {
    pub(crate) fn create_object(&self, app: &App, c: wire::SessionTemplate) -> Answer {
        let s = self.session(app, c.session)?;
        let mut t = OwnedTemplate::values(c.template.as_ref())?;
        let token = token_attribute(c.template.as_ref()).unwrap_or(false);
        let mut room = self.objects.room(app, &[token])?;
        let mut h: CK_OBJECT_HANDLE = 0;
        // SAFETY: the template and every buffer it points into are owned by `t` (built by OwnedTemplate
        // from the request) and outlive the call; `h` is live; `s` is the app's (`self.session`).
        let rv = unsafe { p11!(self.backend, C_CreateObject(s, t.as_mut_ptr(), t.count(), &mut h)) };
        if rv == CKR_OK {
            room.created(c.session, h, token);
        }
        Ok(reply::ulong(rv, h))
    }

    pub(crate) fn copy_object(&self, app: &App, c: wire::ObjectTemplate) -> Answer {
        let s = self.session(app, c.session)?;
        let source = self.object(app, c.object)?;
        let mut t = OwnedTemplate::values(c.template.as_ref())?;
        // A copy is a token object if the template says so, else like its source.
        let token = token_attribute(c.template.as_ref()).unwrap_or(!self.objects.is_session_object(c.object));
        let mut room = self.objects.room(app, &[token])?;
        let mut h: CK_OBJECT_HANDLE = 0;
        // SAFETY: the template and every buffer it points into are owned by `t` (built by OwnedTemplate
        // from the request) and outlive the call; `h` is live; `s` and `source` are the app's.
        let rv = unsafe { p11!(self.backend, C_CopyObject(s, source, t.as_mut_ptr(), t.count(), &mut h)) };
        if rv == CKR_OK {
            room.created(c.session, h, token);
        }
        Ok(reply::ulong(rv, h))
    }

    pub(crate) fn destroy_object(&self, app: &App, c: wire::Object) -> Answer {
        let s = self.session(app, c.session)?;
        let o = self.object(app, c.object)?;
        // SAFETY: only the app's session and object handles (checked above); no pointers.
        let rv = unsafe { p11!(self.backend, C_DestroyObject(s, o)) };
        if rv == CKR_OK {
            self.objects.destroyed(c.object);
        }
        Ok(reply::rv(rv))
    }

    pub(crate) fn get_object_size(&self, app: &App, c: wire::Object) -> Answer {
        let s = self.session(app, c.session)?;
        let o = self.object(app, c.object)?;
        let mut size: CK_ULONG = 0;
        // SAFETY: `size` is a live CK_ULONG for the module to write.
        let rv = unsafe { p11!(self.backend, C_GetObjectSize(s, o, &mut size)) };
        Ok(reply::ulong(rv, size))
    }

    /// The template goes back with the CK_RVs that come with per-attribute
    /// results (size queries, sensitive or invalid attributes, short
    /// buffers); with any other the module wrote nothing, and nothing goes
    /// back. Buffers that add up to more than `MAX_DATA` are first fitted to
    /// the lengths the module reports.
    pub(crate) fn get_attribute_value(&self, app: &App, c: wire::ObjectTemplate) -> Answer {
        let s = self.session(app, c.session)?;
        let o = self.object(app, c.object)?;
        let mut t = match OwnedTemplate::buffers(c.template.as_ref()) {
            Err(CKR_HOST_MEMORY) if c.template.is_some() => {
                let mut query = OwnedTemplate::lengths(c.template.as_ref())?;
                // SAFETY: `query` (OwnedTemplate::lengths) owns the attribute array, every value NULL, and
                // outlives the call: the module writes only the lengths.
                let rv = unsafe {
                    p11!(
                        self.backend,
                        C_GetAttributeValue(s, o, query.as_mut_ptr(), query.count())
                    )
                };
                if !has_attribute_results(rv) {
                    return Ok(reply::rv(rv));
                }
                let app_template = c.template.as_ref().ok_or(CKR_ARGUMENTS_BAD)?;
                OwnedTemplate::buffers_for_lengths(app_template, &query)?
            }
            other => other?,
        };
        // SAFETY: `t` (OwnedTemplate) owns the attribute array and a buffer of each attribute's
        // `ulValueLen` bytes (nested arrays likewise), and outlives the call.
        let rv = unsafe { p11!(self.backend, C_GetAttributeValue(s, o, t.as_mut_ptr(), t.count())) };
        if !has_attribute_results(rv) {
            return Ok(reply::rv(rv));
        }
        Ok(wire::Response {
            rv: rv as u64,
            result: Some(Body::Template(t.read_back())),
            peer_spins: false,
        })
    }

    pub(crate) fn set_attribute_value(&self, app: &App, c: wire::ObjectTemplate) -> Answer {
        let s = self.session(app, c.session)?;
        let o = self.object(app, c.object)?;
        let mut t = OwnedTemplate::values(c.template.as_ref())?;
        // SAFETY: the template and every buffer it points into are owned by `t` (built by OwnedTemplate
        // from the request) and outlive the call.
        Ok(reply::rv(unsafe {
            p11!(self.backend, C_SetAttributeValue(s, o, t.as_mut_ptr(), t.count()))
        }))
    }

    pub(crate) fn find_objects_init(&self, app: &App, c: wire::SessionTemplate) -> Answer {
        let s = self.session(app, c.session)?;
        let mut t = OwnedTemplate::values(c.template.as_ref())?;
        Ok(reply::rv(self.searches.start(c.session, || {
            // SAFETY: the template and every buffer it points into are owned by `t` (built by OwnedTemplate
            // from the request) and outlive the call.
            unsafe { p11!(self.backend, C_FindObjectsInit(s, t.as_mut_ptr(), t.count())) }
        })))
    }

    /// Other applications' session objects are skipped; the backend is asked
    /// again until `max_count` visible handles are found or it has no more,
    /// so a short answer still means the search is done.
    pub(crate) fn find_objects(&self, app: &App, c: wire::FindObjects) -> Answer {
        let s = self.session(app, c.session)?;
        let max = c.max_count.min(MAX_FIND) as usize;
        let mut found: Vec<u64> = Vec::with_capacity(max);
        let mut batch: Vec<CK_OBJECT_HANDLE> = vec![0; max.max(1)];
        while found.len() < max {
            let mut n: CK_ULONG = 0;
            let want = (max - found.len()) as CK_ULONG;
            // SAFETY: `batch` holds `max.max(1)` handles and `want` is at most `max`; `n` is live.
            let rv = unsafe { p11!(self.backend, C_FindObjects(s, batch.as_mut_ptr(), want, &mut n)) };
            if rv != CKR_OK {
                return Ok(reply::rv(rv));
            }
            let got = &batch[..(n as usize).min(batch.len())];
            found.extend(
                got.iter()
                    .map(|h| *h as u64)
                    .filter(|h| self.objects.visible(app.id, *h)),
            );
            if got.is_empty() {
                break;
            }
        }
        if max == 0 {
            // Still let the backend judge the session and the search state.
            let mut n: CK_ULONG = 0;
            // SAFETY: `batch` holds one handle and the module may write none (max 0); `n` is live.
            let rv = unsafe { p11!(self.backend, C_FindObjects(s, batch.as_mut_ptr(), 0, &mut n)) };
            return Ok(reply::on_ok(rv, || Body::Ulongs(wire::Ulongs::default())));
        }
        Ok(reply::on_ok(CKR_OK, || {
            Body::Ulongs(wire::Ulongs {
                count: found.len() as u64,
                values: found,
            })
        }))
    }
}
