//! One shim connection: a Hello within its deadline names the application,
//! then each request frame is checked, decoded, run and answered in turn.

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmbridge_proto::ring::RING_BYTES;
use hsmbridge_proto::shape::{check_request, Refusal};
use hsmbridge_proto::spin::Mode;
use hsmbridge_proto::wire::{request::Call, response, HelloReply, Request, Response};
use hsmbridge_proto::PROTOCOL_VERSION;
use prost::Message;
use tracing::{debug, info, warn};

use super::answer::{reply, write_answer};
use super::frames::{End, FrameReader, InFlight, Next};
use super::limits::{BASE_BUFFER, FRAME_TIMEOUT, HELLO_TIMEOUT};
use super::rate_log::RateLimited;
use super::registry::Entry;
use super::waiting::Waiting;
use super::Config;
use crate::apps::App;
use crate::audit::Caller;
use crate::cpu_follow::CpuFollower;
use crate::metrics::{Closed, Refused};
use crate::service::Service;

static BAD_FRAMES: RateLimited = RateLimited::new(Duration::from_secs(10));

pub(super) fn answer(rv: CK_RV) -> Response {
    Response {
        rv: rv as u64,
        result: None,
        peer_spins: false,
    }
}

/// Whether a call carries a PIN, whose bytes are wiped from the frame buffer
/// once it is handled.
fn carries_pin(call: &Call) -> bool {
    matches!(
        call,
        Call::Login(_) | Call::InitPin(_) | Call::SetPin(_) | Call::InitToken(_)
    )
}

pub fn serve(service: &Service, stream: Arc<UnixStream>, entry: &Entry, budget: Arc<InFlight>, config: Config) {
    if let Err(e) = stream.set_write_timeout(Some(FRAME_TIMEOUT)) {
        debug!(error = %e, "connection unusable");
        return;
    }
    let writer = stream.clone();
    let mut reader = FrameReader::new(stream, budget);
    let mut wbuf = Vec::with_capacity(256);
    let app = match hello(service, &mut reader, &writer, &mut wbuf, config) {
        Ok(app) => app,
        Err(e) => {
            service.metrics.refused(Refused::Hello);
            debug!(error = %e, "connection closed before it joined an application");
            return;
        }
    };
    entry.joined(app.clone());
    // A panic outside `run` (a bug) still ends the connection cleanly: the
    // application loses this connection and, if it was its last, its sessions.
    let left = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        serve_calls(service, &app, &mut reader, &writer, &mut wbuf, entry, config)
    }))
    .unwrap_or(None);
    crate::answer_budget::release();
    if left.unwrap_or_else(|| service.apps.leave(&app)) {
        let closed = service.end_app(&app);
        info!(app = app.id, sessions_closed = closed, "application ended");
    }
}

/// Serves requests until the connection ends. Returns `Some(last)` when the
/// connection already left its application (idle timeout), else `None`.
fn serve_calls(
    service: &Service,
    app: &App,
    reader: &mut FrameReader,
    writer: &UnixStream,
    wbuf: &mut Vec<u8>,
    entry: &Entry,
    config: Config,
) -> Option<bool> {
    let mut cpu = CpuFollower::new(config.follow_cpu);
    let mut waiting = Waiting::new(config.spin, config.cpus);
    loop {
        let next = reader.next(config.idle_timeout, FRAME_TIMEOUT);
        if !matches!(next, Err(End::Idle)) {
            waiting.request_arrived();
        }
        let frame = match next {
            Ok(Next::Frame(f)) => f,
            Ok(Next::OverBudget) => {
                BAD_FRAMES.log(|n| {
                    warn!(
                        app = app.id,
                        suppressed = n,
                        "request refused: too many bytes in flight"
                    )
                });
                service.metrics.call_refused(CKR_HOST_MEMORY);
                service.audit_refused(app, CKR_HOST_MEMORY, "too many request bytes in flight");
                let mut refused = answer(CKR_HOST_MEMORY);
                refused.peer_spins = waiting.decide();
                if reply(reader, writer, &refused, wbuf).is_err() {
                    return None;
                }
                waiting.before_next(reader);
                continue;
            }
            Err(End::Idle) => match service.apps.leave_idle(app) {
                Some(last) => {
                    service.metrics.closed(Closed::Idle);
                    debug!(app = app.id, "closing an idle connection");
                    return Some(last);
                }
                None => {
                    waiting.still_idle(reader);
                    continue;
                }
            },
            Err(End::Closed) => return None,
            Err(End::Slow) => {
                service.metrics.closed(Closed::SlowFrame);
                service.audit_refused(app, CKR_OK, "frame not complete in time: connection closed");
                BAD_FRAMES.log(|n| {
                    warn!(
                        app = app.id,
                        suppressed = n,
                        "closing connection: frame not complete in time"
                    )
                });
                return None;
            }
            Err(End::Broken(e)) => {
                bad_frame(service, app, "bad frame");
                BAD_FRAMES.log(|n| warn!(app = app.id, error = %e, suppressed = n, "closing connection: bad frame"));
                return None;
            }
        };
        if entry.is_closed() {
            // Evicted or shut down while a request came through the ring.
            return None;
        }
        entry.busy();
        let received = frame.len() + 4;
        let mut resp = match check_request(frame) {
            Ok(()) => match Request::decode(frame) {
                Ok(req) => {
                    if req.caller_polls {
                        cpu.release();
                    } else {
                        cpu.follow(req.caller_cpu);
                    }
                    let Some(call) = req.call else {
                        bad_frame(service, app, "empty request");
                        BAD_FRAMES.log(|n| warn!(app = app.id, suppressed = n, "closing connection: empty request"));
                        return None;
                    };
                    let wipe = carries_pin(&call);
                    if matches!(call, Call::WaitForSlotEvent(_)) {
                        waiting.blocking_call();
                    }
                    let resp = run(service, app, call);
                    if wipe {
                        reader.wipe_last();
                    }
                    resp
                }
                Err(e) => {
                    bad_frame(service, app, "not a request");
                    BAD_FRAMES
                        .log(|n| warn!(app = app.id, error = %e, suppressed = n, "closing connection: not a request"));
                    return None;
                }
            },
            Err(Refusal::Limit(rv)) => {
                service.metrics.call_refused(rv);
                service.audit_refused(app, rv, "a count or length past the limits");
                answer(rv)
            }
            Err(Refusal::Malformed) => {
                bad_frame(service, app, "malformed request");
                BAD_FRAMES.log(|n| warn!(app = app.id, suppressed = n, "closing connection: malformed request"));
                return None;
            }
        };
        resp.peer_spins = waiting.decide();
        let written = reply(reader, writer, &resp, wbuf);
        drop(resp);
        crate::answer_budget::release();
        match written {
            Ok(sent) => service.metrics.frame_bytes(received, sent),
            Err(_) => return None,
        }
        entry.idle();
        waiting.before_next(reader);
    }
}

/// A frame that closes the connection: counted, and a line in the audit trail.
fn bad_frame(service: &Service, app: &App, what: &str) {
    service.metrics.closed(Closed::BadFrame);
    service.audit_refused(app, CKR_OK, &format!("{what}: connection closed"));
}

/// Runs one call; a panic (a bug) answers CKR_GENERAL_ERROR.
fn run(service: &Service, app: &App, call: Call) -> Response {
    let metrics = &service.metrics;
    let started = metrics.is_on().then(|| {
        metrics.call_started();
        (crate::names::function(&call), Instant::now())
    });
    let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| service.handle(app, call)))
        .unwrap_or_else(|_| answer(CKR_GENERAL_ERROR));
    if let Some((function, t0)) = started {
        metrics.call_done(function, resp.rv as CK_RV, t0.elapsed());
    }
    resp
}

/// The peer's UID, GID and PID as the kernel gives them (`SO_PEERCRED`; the PID is 0 when the
/// peer is in a PID namespace the sidecar cannot see, as another container is).
fn peer_credentials(stream: &UnixStream) -> Option<libc::ucred> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a live, writable ucred and `len` says its size, as SO_PEERCRED requires;
    // the descriptor is the stream's own, open for the call.
    let rv = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rv == 0 && len as usize == std::mem::size_of::<libc::ucred>()).then_some(cred)
}

/// The first message names the application: a new one, or one this
/// process's other connections already belong to. All of it must arrive
/// within `HELLO_TIMEOUT` of the connection.
fn hello(
    service: &Service,
    reader: &mut FrameReader,
    writer: &UnixStream,
    wbuf: &mut Vec<u8>,
    config: Config,
) -> io::Result<Arc<App>> {
    let bad = |msg: &str| io::Error::new(io::ErrorKind::InvalidData, msg.to_string());
    let deadline = Instant::now() + HELLO_TIMEOUT;
    // A Hello is a few dozen bytes: a larger first frame is not one, and
    // must not draw on the budget the applications' calls share.
    let frame = match reader.next_up_to(Some(HELLO_TIMEOUT), HELLO_TIMEOUT, BASE_BUFFER - 4) {
        Ok(Next::Frame(f)) => f,
        Ok(Next::OverBudget) => return Err(bad("hello too large")),
        Err(End::Broken(e)) => return Err(e),
        Err(_) => return Err(bad("no hello in time")),
    };
    if Instant::now() > deadline {
        return Err(bad("hello too late"));
    }
    let req = Request::decode(frame).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let Some(Call::Hello(h)) = req.call else {
        return Err(bad("first message is not Hello"));
    };
    if h.protocol_version != PROTOCOL_VERSION {
        let _ = write_answer(writer, &answer(CKR_DEVICE_ERROR), wbuf);
        return Err(bad("protocol version mismatch"));
    }
    let peer = peer_credentials(writer);
    let caller = Caller {
        uid: peer.map_or(u32::MAX, |c| c.uid),
        gid: peer.map_or(u32::MAX, |c| c.gid),
        peer_pid: peer.map_or(0, |c| u32::try_from(c.pid).unwrap_or(0)),
        claimed_pid: h.pid,
        claimed_container: Caller::container_claim(&h.container),
    };
    let app = if h.join_token.is_empty() {
        let app = service.apps.create(caller)?;
        info!(app = app.id, "application started");
        app
    } else {
        service.apps.join_or_create(&h.join_token, caller)?
    };
    let ring = (h.ring && config.spin != Mode::Off)
        .then(|| super::ring::make(reader, app.id))
        .flatten();
    let reply = HelloReply {
        protocol_version: PROTOCOL_VERSION,
        app_token: app.token().to_vec(),
        idle_timeout_ms: config.idle_timeout.map_or(0, |t| t.as_millis() as u64),
        ring_bytes: ring.as_ref().map_or(0, |_| RING_BYTES as u32),
    };
    let resp = Response {
        rv: CKR_OK as u64,
        result: Some(response::Result::Hello(reply)),
        peer_spins: false,
    };
    let sent = match &ring {
        Some(fd) => super::ring::send_reply_with(writer, &resp, fd, wbuf),
        None => write_answer(writer, &resp, wbuf),
    };
    if let Err(e) = sent {
        if service.apps.leave(&app) {
            service.end_app(&app);
        }
        return Err(e);
    }
    Ok(app)
}
