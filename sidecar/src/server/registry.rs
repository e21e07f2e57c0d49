//! Open connections: how many, in what state, and which one gives way when
//! the cap is reached (so that connections that never say hello, or idle
//! ones of applications without sessions, cannot lock real clients out).

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::apps::App;

const PRE_HELLO: u8 = 0;
const IDLE: u8 = 1;
const BUSY: u8 = 2;

/// One connection as the registry sees it; its thread updates the state.
pub struct Entry {
    /// The socket, shared with the connection's thread (one descriptor), to
    /// shut it down from another thread.
    stream: Arc<UnixStream>,
    state: AtomicU8,
    /// Milliseconds since the registry started, at the last state change.
    since: AtomicU64,
    app: OnceLock<Arc<App>>,
    started: Instant,
    /// Evicted or shut down: the thread ends at its next request (one coming through the ring
    /// never touches the socket that was shut down).
    closed: AtomicBool,
}

impl Entry {
    /// Ends the connection: marks it closed, then shuts its socket down (which wakes a thread
    /// asleep on it).
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// The registry ended this connection.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The connection joined `app` and waits for its first call.
    pub fn joined(&self, app: Arc<App>) {
        let _ = self.app.set(app);
        self.idle();
    }

    pub fn idle(&self) {
        self.since.store(self.now(), Ordering::Relaxed);
        self.state.store(IDLE, Ordering::Release);
    }

    pub fn busy(&self) {
        self.state.store(BUSY, Ordering::Release);
    }

    /// Whether it may be closed to make room: no hello yet, or idle in an
    /// application that has no sessions to lose.
    fn evictable(&self) -> bool {
        match self.state.load(Ordering::Acquire) {
            PRE_HELLO => true,
            IDLE => self.app.get().is_none_or(|a| !a.has_sessions()),
            _ => false,
        }
    }
}

pub struct Registry {
    open: Mutex<HashMap<u64, Arc<Entry>>>,
    next: AtomicU64,
    started: Instant,
    max: usize,
}

/// Why a connection was not admitted: the cap is reached and no connection
/// can give way.
#[derive(Debug)]
pub struct Full;

impl Registry {
    pub fn new(max: usize) -> Self {
        Registry {
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            started: Instant::now(),
            max,
        }
    }

    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<Entry>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection, closing the oldest evictable one if the cap
    /// is reached. Returns its id and entry, and whether one was evicted.
    pub fn admit(&self, stream: &Arc<UnixStream>) -> Result<(u64, Arc<Entry>, bool), Full> {
        let handle = stream.clone();
        let mut open = self.open();
        let mut evicted = false;
        if open.len() >= self.max {
            let victim = open
                .iter()
                .filter(|(_, e)| e.evictable())
                .min_by_key(|(_, e)| e.since.load(Ordering::Relaxed))
                .map(|(id, _)| *id)
                .ok_or(Full)?;
            if let Some(e) = open.remove(&victim) {
                e.close();
                evicted = true;
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            stream: handle,
            state: AtomicU8::new(PRE_HELLO),
            since: AtomicU64::new(self.started.elapsed().as_millis() as u64),
            app: OnceLock::new(),
            started: self.started,
            closed: AtomicBool::new(false),
        });
        open.insert(id, entry.clone());
        Ok((id, entry, evicted))
    }

    pub fn remove(&self, id: u64) {
        self.open().remove(&id);
    }

    /// Open connections.
    pub fn count(&self) -> usize {
        self.open().len()
    }

    /// Closes every connection (their threads end their applications).
    pub fn close_all(&self) {
        for e in self.open().values() {
            e.close();
        }
    }

    /// Closes every connection and waits (bounded) for their threads to end
    /// their applications.
    pub fn shutdown(&self, wait: Duration) {
        self.close_all();
        let deadline = Instant::now() + wait;
        while !self.open().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review finding: an evicted connection whose requests come through the ring never reads
    /// the socket that eviction shuts down; its thread must see it was closed.
    #[test]
    fn an_evicted_connection_is_marked_closed() {
        let registry = Registry::new(1);
        let (a, _peer_a) = UnixStream::pair().expect("pair");
        let (b, _peer_b) = UnixStream::pair().expect("pair");
        let (_, first, _) = registry.admit(&Arc::new(a)).expect("admitted");
        assert!(!first.is_closed());
        let (_, second, evicted) = registry.admit(&Arc::new(b)).expect("admitted");
        assert!(
            evicted && first.is_closed(),
            "the first connection gave way and knows it"
        );
        assert!(!second.is_closed());
        registry.close_all();
        assert!(second.is_closed());
    }
}
