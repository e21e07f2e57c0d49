//! The Unix socket the shim connects to: one thread per connection, which
//! polls briefly and then blocks for the next request (`waiting`),
//! a Hello that names the application, then one response per request.
//! `connection` serves one connection, `frames` reads its requests within
//! the limits of `limits`, `answer` writes each answer within its deadline,
//! `waiting` decides how long to poll for the next one, `registry` admits
//! connections under the cap.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::service::Service;

mod answer;
mod connection;
mod frames;
pub mod limits;
mod rate_log;
mod registry;
mod ring;
mod waiting;

pub use registry::Registry;

use frames::InFlight;
pub(crate) use rate_log::RateLimited;
use registry::Full;

/// How connections are served.
#[derive(Clone, Copy)]
pub struct Config {
    /// Serve each call on its caller's CPU (see `cpu_follow`).
    pub follow_cpu: bool,
    /// Idle time after which a connection is closed (see `limits`); `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Whether a connection polls for its next request before blocking (see `waiting`).
    pub spin: hsmbridge_proto::spin::Mode,
    /// The CPUs the automatic mode checks.
    pub cpus: hsmbridge_proto::spin::Cpus,
}

/// Binds the socket with mode 0660, replacing a stale socket file (never
/// another kind of file).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

static REFUSED: RateLimited = RateLimited::new(Duration::from_secs(10));
static EVICTED: RateLimited = RateLimited::new(Duration::from_secs(10));

/// A connection's place in the registry, given up when its thread ends.
struct Registered<'a>(&'a Registry, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

/// Accepts connections until the process ends.
pub fn accept_loop(listener: UnixListener, service: Arc<Service>, registry: Arc<Registry>, config: Config) {
    let budget = Arc::new(InFlight::default());
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                REFUSED.log(|n| warn!(error = %e, suppressed = n, "accept failed"));
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let stream = Arc::new(stream);
        let (id, entry, evicted) = match registry.admit(&stream) {
            Ok(admitted) => admitted,
            Err(Full) => {
                service.metrics.refused(crate::metrics::Refused::Limit);
                REFUSED.log(|n| {
                    warn!(
                        limit = limits::MAX_CONNECTIONS,
                        suppressed = n,
                        "connection refused: too many connections"
                    )
                });
                continue;
            }
        };
        if evicted {
            EVICTED.log(|n| {
                warn!(
                    limit = limits::MAX_CONNECTIONS,
                    suppressed = n,
                    "connection limit reached: closed the oldest connection without hello or sessions"
                )
            });
        }
        let (service, owner, budget) = (service.clone(), registry.clone(), budget.clone());
        let spawned = std::thread::Builder::new().name(format!("conn-{id}")).spawn(move || {
            // Removed however the thread ends, a panic included.
            let _registered = Registered(&owner, id);
            connection::serve(&service, stream, &entry, budget, config);
        });
        if let Err(e) = spawned {
            registry.remove(id);
            REFUSED.log(|n| warn!(error = %e, suppressed = n, "cannot start a connection thread"));
        }
    }
}
