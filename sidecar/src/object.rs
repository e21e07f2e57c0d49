//! Object management: templates are rebuilt in C memory (nested ones too).

use cryptoki_sys::*;
use hsmbridge_proto::template::OwnedTemplate;
use hsmbridge_proto::wire::{self, response::Result as Body};

use crate::apps::App;
use crate::backend::p11;
use crate::reply;
use crate::service::{Answer, Service};

/// Most handles one C_FindObjects call returns, whatever the app asks for.
const MAX_FIND: u64 = 4096;

impl Service {
    pub(crate) fn create_object(&self, app: &App, c: wire::SessionTemplate) -> Answer {
        let s = self.session(app, c.session)?;
        let mut t = OwnedTemplate::values(c.template.as_ref())?;
        let mut h: CK_OBJECT_HANDLE = 0;
        let rv = p11!(self.backend, C_CreateObject(s, t.as_mut_ptr(), t.count(), &mut h));
        Ok(reply::ulong(rv, h))
    }

    pub(crate) fn copy_object(&self, app: &App, c: wire::ObjectTemplate) -> Answer {
        let s = self.session(app, c.session)?;
        let mut t = OwnedTemplate::values(c.template.as_ref())?;
        let mut h: CK_OBJECT_HANDLE = 0;
        let rv = p11!(self.backend, C_CopyObject(s, c.object as CK_OBJECT_HANDLE, t.as_mut_ptr(), t.count(), &mut h));
        Ok(reply::ulong(rv, h))
    }

    pub(crate) fn destroy_object(&self, app: &App, c: wire::Object) -> Answer {
        let s = self.session(app, c.session)?;
        Ok(reply::rv(p11!(self.backend, C_DestroyObject(s, c.object as CK_OBJECT_HANDLE))))
    }

    pub(crate) fn get_object_size(&self, app: &App, c: wire::Object) -> Answer {
        let s = self.session(app, c.session)?;
        let mut size: CK_ULONG = 0;
        let rv = p11!(self.backend, C_GetObjectSize(s, c.object as CK_OBJECT_HANDLE, &mut size));
        Ok(reply::ulong(rv, size))
    }

    /// The template goes back whatever the CK_RV: the per-attribute lengths
    /// are the answer to size queries and to sensitive or invalid attributes.
    pub(crate) fn get_attribute_value(&self, app: &App, c: wire::ObjectTemplate) -> Answer {
        let s = self.session(app, c.session)?;
        let mut t = OwnedTemplate::buffers(c.template.as_ref())?;
        let rv = p11!(self.backend, C_GetAttributeValue(s, c.object as CK_OBJECT_HANDLE, t.as_mut_ptr(), t.count()));
        Ok(wire::Response { rv: rv as u64, result: Some(Body::Template(t.read_back())) })
    }

    pub(crate) fn set_attribute_value(&self, app: &App, c: wire::ObjectTemplate) -> Answer {
        let s = self.session(app, c.session)?;
        let mut t = OwnedTemplate::values(c.template.as_ref())?;
        Ok(reply::rv(p11!(self.backend, C_SetAttributeValue(s, c.object as CK_OBJECT_HANDLE, t.as_mut_ptr(), t.count()))))
    }

    pub(crate) fn find_objects_init(&self, app: &App, c: wire::SessionTemplate) -> Answer {
        let s = self.session(app, c.session)?;
        let mut t = OwnedTemplate::values(c.template.as_ref())?;
        Ok(reply::rv(p11!(self.backend, C_FindObjectsInit(s, t.as_mut_ptr(), t.count()))))
    }

    pub(crate) fn find_objects(&self, app: &App, c: wire::FindObjects) -> Answer {
        let s = self.session(app, c.session)?;
        let max = c.max_count.min(MAX_FIND);
        let mut found: Vec<CK_OBJECT_HANDLE> = vec![0; max as usize];
        let mut n: CK_ULONG = 0;
        let rv = p11!(self.backend, C_FindObjects(s, found.as_mut_ptr(), max as CK_ULONG, &mut n));
        found.truncate((n as usize).min(found.len()));
        Ok(reply::on_ok(rv, || {
            Body::Ulongs(wire::Ulongs { count: found.len() as u64, values: found.iter().map(|h| *h as u64).collect() })
        }))
    }
}
