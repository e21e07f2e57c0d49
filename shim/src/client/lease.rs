//! A connection lent to one call, and the handles of its epoch.

use super::*;

/// One connection, lent to one call.
pub struct Lease {
    pub(super) client: Arc<Client>,
    pub(super) conn: Option<Conn>,
    pub epoch: u64,
}

impl Lease {
    /// Sends one call and waits (up to the deadline) for its answer. A
    /// transport failure is CKR_DEVICE_ERROR and voids the epoch; the call is
    /// never replayed, as it may have run.
    pub fn call(&mut self, call: Call) -> Rv<Response> {
        self.call_with(call, true)
    }

    /// Like `call` but without a deadline and without polling (C_WaitForSlotEvent may block).
    pub fn call_unbounded(&mut self, call: Call) -> Rv<Response> {
        if let Some(c) = self.conn.as_ref() {
            let _ = c.stream.get_ref().set_read_timeout(None);
        }
        let r = self.call_with(call, false);
        if let Some(c) = self.conn.as_ref() {
            let _ = c.stream.get_ref().set_read_timeout(Some(self.client.timeout));
        }
        r
    }

    fn call_with(&mut self, call: Call, bounded: bool) -> Rv<Response> {
        let conn = self.conn.as_mut().ok_or(CKR_DEVICE_ERROR)?;
        match conn.round_trip(call, bounded.then_some((&self.client.spin, self.client.timeout))) {
            Ok(r) => Ok(r),
            Err(Failed::TooLarge) => Err(CKR_HOST_MEMORY),
            Err(Failed::Transport) => {
                self.conn = None;
                self.client.reset(self.epoch);
                Err(CKR_DEVICE_ERROR)
            }
        }
    }

    pub fn session(&self, app: CK_SESSION_HANDLE) -> Rv<u64> {
        handles::untag(app, self.epoch).ok_or(CKR_SESSION_HANDLE_INVALID)
    }

    pub fn object(&self, app: CK_OBJECT_HANDLE) -> Rv<u64> {
        handles::untag(app, self.epoch).ok_or(CKR_OBJECT_HANDLE_INVALID)
    }

    pub fn key(&self, app: CK_OBJECT_HANDLE) -> Rv<u64> {
        handles::untag(app, self.epoch).ok_or(CKR_KEY_HANDLE_INVALID)
    }

    pub fn tag(&self, backend: u64) -> CK_ULONG {
        handles::tag(backend, self.epoch)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if let Ok(mut pool) = self.client.pool.lock() {
                if pool.epoch == self.epoch {
                    pool.idle.push(conn);
                }
            }
        }
    }
}

/// Leases a connection of the initialized client.
pub fn lease() -> Rv<Lease> {
    current()?.lease()
}
