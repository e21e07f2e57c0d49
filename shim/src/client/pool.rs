//! Lending connections: an idle one if there is one, else a new one that
//! joins the application (or names it, for the first).

use super::*;

impl Client {
    /// A lease of `conn` in `epoch`.
    fn lend(self: &Arc<Self>, conn: Conn, epoch: u64) -> Lease {
        Lease {
            client: self.clone(),
            conn: Some(conn),
            epoch,
        }
    }

    /// Takes an idle connection or opens one; the lease returns it when dropped.
    pub fn lease(self: &Arc<Self>) -> Rv<Lease> {
        let mut pool = self.pool.lock().map_err(|_| CKR_GENERAL_ERROR)?;
        let cpu = caller_cpu();
        let stale = match take_idle(&mut pool, cpu) {
            Ok(conn) => return Ok(self.lend(conn, pool.epoch)),
            Err(stale) => stale,
        };
        self.lease_cold(pool, stale, cpu)
    }

    /// `lease` without a fresh idle connection: opens one, joining the
    /// application first if it has a name. `stale`, if any, is a connection of
    /// the pool's epoch that the sidecar may have closed: it is dropped only
    /// once the new connection joined, so that the application (and its
    /// sessions) outlives it.
    #[cold]
    #[inline(never)]
    fn lease_cold<'a>(
        self: &'a Arc<Self>,
        mut pool: MutexGuard<'a, Pool>,
        mut stale: Option<Conn>,
        cpu: u32,
    ) -> Rv<Lease> {
        let mut retried = false;
        loop {
            let epoch = pool.epoch;
            let Some(token) = pool.app_token.clone() else {
                // The first connection names the application; others wait for it.
                let (conn, token, stale_after) = self.connect(Vec::new(), cpu)?;
                pool.app_token = Some(token);
                pool.stale_after = stale_after;
                drop(pool);
                drop(stale);
                return Ok(self.lend(conn, epoch));
            };
            // Joining an existing application can happen outside the lock; the
            // pool is then checked again: another thread may have adopted a new
            // application or reset the epoch meanwhile.
            drop(pool);
            let joined = self.connect(token.clone(), cpu);
            pool = self.pool.lock().map_err(|_| CKR_GENERAL_ERROR)?;
            let unchanged = pool.epoch == epoch && pool.app_token.as_ref() == Some(&token);
            match joined {
                Ok((conn, got, stale_after)) if unchanged => {
                    if got != token {
                        // The application had ended in the sidecar: its handles are void.
                        pool.epoch = NEXT_EPOCH.fetch_add(1, Ordering::SeqCst);
                        pool.idle.clear();
                        pool.app_token = Some(got);
                    }
                    pool.stale_after = stale_after;
                    let epoch = pool.epoch;
                    drop(pool);
                    drop(stale);
                    return Ok(self.lend(conn, epoch));
                }
                Err(e) if unchanged => {
                    drop(pool);
                    // The join failed (e.g. the sidecar refuses connections). The
                    // stale connection is very likely still open (the sidecar
                    // keeps the last connection of an application with
                    // sessions) and closing it could end the application: this
                    // call tries it instead. If it was closed, the call fails
                    // as any lost connection does (`Lease::call`).
                    return match stale.take() {
                        Some(mut conn) => {
                            conn.cpu = cpu;
                            Ok(self.lend(conn, epoch))
                        }
                        None => Err(e),
                    };
                }
                // The epoch changed while we joined: whatever the new connection
                // reached (the epoch's old application or one created by the
                // join) is not the pool's application now, nor is the stale
                // connection of the current epoch. Both go; the lease is tried
                // once more.
                raced => {
                    drop(pool);
                    drop(raced);
                    drop(stale.take());
                    if retried {
                        return Err(CKR_DEVICE_ERROR);
                    }
                    retried = true;
                    pool = self.pool.lock().map_err(|_| CKR_GENERAL_ERROR)?;
                    stale = match take_idle(&mut pool, cpu) {
                        Ok(conn) => return Ok(self.lend(conn, pool.epoch)),
                        Err(stale) => stale,
                    };
                }
            }
        }
    }

    /// Opens a connection and says hello: the connection, the application's
    /// token, and after how long an idle connection counts as stale.
    pub(super) fn connect(&self, join_token: Vec<u8>, cpu: u32) -> Rv<(Conn, Vec<u8>, Option<Duration>)> {
        let stream = UnixStream::connect(&self.socket).map_err(|_| CKR_DEVICE_REMOVED)?;
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(|_| CKR_DEVICE_ERROR)?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(|_| CKR_DEVICE_ERROR)?;
        let mut conn = Conn {
            stream: BufReader::with_capacity(16 * 1024, stream),
            buf: Vec::with_capacity(256),
            last_used: Instant::now(),
            cpu,
            bound: Adaptive::new(self.spin.mode.cap().unwrap_or(Duration::ZERO)),
            peer_spins: false,
            ring: None,
        };
        let hello = Call::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            join_token,
            // For the sidecar's audit trail: who this process says it is.
            pid: std::process::id(),
            container: std::env::var(hsmbridge_contract::ENV_CONTAINER).unwrap_or_default(),
            // A ring only where calls may poll.
            ring: self.spin.mode != Mode::Off,
        });
        let reply = conn.hello(hello).map_err(|_| CKR_DEVICE_ERROR)?;
        match reply.result {
            Some(response::Result::Hello(h)) if reply.rv == CKR_OK as u64 => {
                Ok((conn, h.app_token, stale_after(h.idle_timeout_ms)))
            }
            _ => Err(CKR_DEVICE_ERROR),
        }
    }

    /// Forgets every connection of `epoch`: the sidecar went away or a call
    /// missed its deadline, so handles of that epoch are void from now on.
    pub(super) fn reset(&self, epoch: u64) {
        if let Ok(mut pool) = self.pool.lock() {
            if pool.epoch == epoch {
                pool.epoch = NEXT_EPOCH.fetch_add(1, Ordering::SeqCst);
                pool.app_token = None;
                pool.idle.clear();
            }
        }
    }
}

/// Takes an idle connection for a caller on `cpu`, preferring one last used
/// there: `Ok` if it may be reused, `Err(Some(_))` if it was idle so long that
/// the sidecar may have closed it, `Err(None)` if there is none.
#[inline(always)]
pub(super) fn take_idle(pool: &mut Pool, cpu: u32) -> Result<Conn, Option<Conn>> {
    let here = pool.idle.iter().rposition(|c| c.cpu == cpu);
    let mut conn = here
        .map(|i| pool.idle.swap_remove(i))
        .or_else(|| pool.idle.pop())
        .ok_or(None)?;
    if pool.stale_after.is_none_or(|t| conn.last_used.elapsed() < t) {
        conn.cpu = cpu;
        Ok(conn)
    } else {
        Err(Some(conn))
    }
}

/// A pooled connection idle for `idle_timeout_ms` less a margin (a quarter,
/// at most 5 s) is not reused.
pub(super) fn stale_after(idle_timeout_ms: u64) -> Option<Duration> {
    let t = Duration::from_millis(idle_timeout_ms);
    (idle_timeout_ms > 0).then(|| t - (t / 4).min(Duration::from_secs(5)))
}
