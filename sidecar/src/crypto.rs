//! Cryptographic operations, by shape: init with a mechanism, data in with
//! output, final output, data in only.

use cryptoki_sys::*;
use hsmbridge_proto::limits::MAX_DATA;
use hsmbridge_proto::wire::{self, response::Result as Body};

use crate::apps::App;
use crate::backend::p11;
use crate::reply;
use crate::service::{Answer, Service};

impl Service {
    /// Runs `f` with the app's session (checked by `self.session`), its key
    /// (checked by `self.key`) and a pointer to the request's mechanism rebuilt
    /// in C memory: an [`hsmbridge_proto::mechanism::OwnedMechanism`] that owns
    /// the parameter and every buffer it points into, and lives until `f` returns.
    pub(crate) fn operation_init(
        &self,
        app: &App,
        c: wire::OperationInit,
        f: impl FnOnce(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE) -> CK_RV,
    ) -> Answer {
        let s = self.session(app, c.session)?;
        let key = self.key(app, c.key)?;
        let mut m = self.mechanism(c.mechanism.as_ref())?;
        Ok(reply::rv(f(s, m.as_ptr(), key)))
    }

    /// Runs `f` with the app's session, the request's data (`c.data`'s pointer
    /// and length; `c` lives until `f` returns) and the output arguments of
    /// [`reply::with_output`].
    pub(crate) fn data_output(
        &self,
        app: &App,
        mut c: wire::DataOutput,
        f: impl FnOnce(CK_SESSION_HANDLE, *mut u8, CK_ULONG, *mut u8, *mut CK_ULONG) -> CK_RV,
    ) -> Answer {
        let s = self.session(app, c.session)?;
        let (data, len) = (c.data.as_mut_ptr(), c.data.len() as CK_ULONG);
        Ok(reply::with_output(c.capacity, c.length_null, |out, out_len| {
            f(s, data, len, out, out_len)
        }))
    }

    /// Runs `f` with the app's session and the output arguments of
    /// [`reply::with_output`].
    pub(crate) fn final_output(
        &self,
        app: &App,
        c: wire::SessionOutput,
        f: impl FnOnce(CK_SESSION_HANDLE, *mut u8, *mut CK_ULONG) -> CK_RV,
    ) -> Answer {
        let s = self.session(app, c.session)?;
        Ok(reply::with_output(c.capacity, c.length_null, |out, out_len| {
            f(s, out, out_len)
        }))
    }

    /// Runs `f` with the app's session and the request's bytes (`c.data`'s
    /// pointer and length; `c` lives until `f` returns).
    pub(crate) fn data_in(
        &self,
        app: &App,
        mut c: wire::SessionBytes,
        f: impl FnOnce(CK_SESSION_HANDLE, *mut u8, CK_ULONG) -> CK_RV,
    ) -> Answer {
        let s = self.session(app, c.session)?;
        Ok(reply::rv(f(s, c.data.as_mut_ptr(), c.data.len() as CK_ULONG)))
    }

    pub(crate) fn verify(&self, app: &App, mut c: wire::Verify) -> Answer {
        let s = self.session(app, c.session)?;
        let (d, dl) = (c.data.as_mut_ptr(), c.data.len() as CK_ULONG);
        let (g, gl) = (c.signature.as_mut_ptr(), c.signature.len() as CK_ULONG);
        // SAFETY: `d`/`dl` and `g`/`gl` are `c.data` and `c.signature` with their lengths; `c` outlives the call.
        Ok(reply::rv(unsafe { p11!(self.backend, C_Verify(s, d, dl, g, gl)) }))
    }

    pub(crate) fn generate_random(&self, app: &App, c: wire::GenerateRandom) -> Answer {
        let s = self.session(app, c.session)?;
        if c.length > MAX_DATA as u64 {
            return Err(CKR_HOST_MEMORY);
        }
        crate::answer_budget::reserve(c.length as usize)?;
        let mut buf = vec![0u8; c.length as usize];
        // SAFETY: `buf` holds `c.length` bytes (at most MAX_DATA, checked above), the length given; it outlives the call.
        let rv = unsafe {
            p11!(
                self.backend,
                C_GenerateRandom(s, buf.as_mut_ptr(), c.length as CK_ULONG)
            )
        };
        Ok(reply::on_ok(rv, || {
            Body::Output(wire::Output {
                length: buf.len() as u64,
                data: buf,
            })
        }))
    }
}
