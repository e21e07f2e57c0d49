//! The Unix socket the shim connects to: one thread per connection with
//! blocking I/O (the lowest latency per call; see DESIGN.md "Transport"),
//! a Hello that names the application, then one response per request.

use std::collections::HashMap;
use std::io::{self, BufReader};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmbridge_proto::frame::{read_frame, write_frame};
use hsmbridge_proto::wire::{request::Call, response, HelloReply, Request, Response};
use hsmbridge_proto::PROTOCOL_VERSION;
use tracing::{debug, info, warn};

use crate::apps::App;
use crate::cpu_follow::CpuFollower;
use crate::service::Service;

/// More connections than any pod's apps need; beyond it new ones are refused.
const MAX_CONNECTIONS: usize = 1024;

/// Binds the socket with mode 0660, replacing a stale socket file (never
/// another kind of file).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists and is not a socket", path.display())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Open connections, so that shutdown can close them.
#[derive(Default)]
pub struct Connections {
    open: Mutex<HashMap<u64, UnixStream>>,
    next: AtomicU64,
}

impl Connections {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, UnixStream>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes every connection and waits (bounded) for their threads to end
    /// their applications.
    pub fn shutdown(&self, wait: Duration) {
        for s in self.open().values() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let deadline = Instant::now() + wait;
        while !self.open().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Accepts connections until the process ends.
/// `follow_cpu`: serve each call on its caller's CPU (see `cpu_follow`).
pub fn accept_loop(listener: UnixListener, service: Arc<Service>, conns: Arc<Connections>, follow_cpu: bool) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let id = conns.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut open = conns.open();
            if open.len() >= MAX_CONNECTIONS {
                warn!(limit = MAX_CONNECTIONS, "connection refused: too many connections");
                continue;
            }
            match stream.try_clone() {
                Ok(s) => open.insert(id, s),
                Err(e) => {
                    warn!(error = %e, "connection refused");
                    continue;
                }
            };
        }
        let (service, conns) = (service.clone(), conns.clone());
        let spawned = std::thread::Builder::new().name(format!("conn-{id}")).spawn(move || {
            serve_connection(&service, stream, follow_cpu);
            conns.open().remove(&id);
        });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start a connection thread");
        }
    }
}

fn serve_connection(service: &Service, stream: UnixStream, follow_cpu: bool) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut rbuf = Vec::with_capacity(256);
    let mut wbuf = Vec::with_capacity(256);
    let app = match hello(service, &mut reader, &mut rbuf, &mut wbuf) {
        Ok(app) => app,
        Err(e) => {
            debug!(error = %e, "connection closed before it joined an application");
            return;
        }
    };
    let mut cpu = CpuFollower::new(follow_cpu);
    loop {
        let req: Request = match read_frame(&mut reader, &mut rbuf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                warn!(app = app.id, error = %e, "closing connection: not a valid request");
                break;
            }
        };
        cpu.follow(req.caller_cpu);
        let Some(call) = req.call else {
            warn!(app = app.id, "closing connection: empty request");
            break;
        };
        let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| service.handle(&app, call)))
            .unwrap_or_else(|_| Response { rv: CKR_GENERAL_ERROR as u64, result: None });
        if write_frame(&mut reader.get_ref(), &resp, &mut wbuf).is_err() {
            break;
        }
    }
    if service.apps.leave(&app) {
        let closed = service.end_app(&app);
        info!(app = app.id, sessions_closed = closed, "application ended");
    }
}

/// The first message names the application: a new one, or one this
/// process's other connections already belong to.
fn hello(
    service: &Service,
    reader: &mut BufReader<UnixStream>,
    rbuf: &mut Vec<u8>,
    wbuf: &mut Vec<u8>,
) -> io::Result<Arc<App>> {
    let bad = |msg: &str| io::Error::new(io::ErrorKind::InvalidData, msg.to_string());
    let req: Request = read_frame(reader, rbuf)?;
    let Some(Call::Hello(h)) = req.call else { return Err(bad("first message is not Hello")) };
    if h.protocol_version != PROTOCOL_VERSION {
        let resp = Response { rv: CKR_DEVICE_ERROR as u64, result: None };
        let _ = write_frame(&mut reader.get_ref(), &resp, wbuf);
        return Err(bad("protocol version mismatch"));
    }
    let app = if h.join_token.is_empty() {
        let app = service.apps.create()?;
        info!(app = app.id, "application started");
        app
    } else {
        service.apps.join(&h.join_token).ok_or_else(|| bad("unknown application token"))?
    };
    let reply = HelloReply { protocol_version: PROTOCOL_VERSION, app_token: app.token().to_vec() };
    let resp = Response { rv: CKR_OK as u64, result: Some(response::Result::Hello(reply)) };
    if let Err(e) = write_frame(&mut reader.get_ref(), &resp, wbuf) {
        if service.apps.leave(&app) {
            service.end_app(&app);
        }
        return Err(e);
    }
    Ok(app)
}
