//! `GET /metrics` on `serve --metrics-addr` (the pod IP: Prometheus scrapes from elsewhere), over
//! hyper, the HTTP stack tonic already brings. Anyone who reaches the pod may connect, so the
//! server is bounded (README "Limits"): [`MAX_CONNECTIONS`] at once and [`MAX_PER_PEER`] of them
//! from one peer address (more are closed at once: one pod cannot hold the slots Prometheus
//! needs), request headers within [`HEADER_TIMEOUT`], each connection closed after
//! [`CONNECTION_TIME`], and nothing but `GET /metrics` answered with more than a status line.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// Scrapers served at once.
pub const MAX_CONNECTIONS: usize = 8;
/// Connections one peer address may hold at once (a scraper needs one).
pub const MAX_PER_PEER: usize = 2;
/// Time for a request's headers to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection stays open (keep-alive included).
pub const CONNECTION_TIME: Duration = Duration::from_secs(60);
/// The exposition is made at most this often.
pub const RENDER_EVERY: Duration = Duration::from_secs(1);

/// The content type of prometheus-client's text encoding.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves until `shutdown` resolves. `render` makes the exposition (it samples the sidecar's
/// state, so it runs on a blocking thread).
pub async fn serve<R>(addr: SocketAddr, render: R, shutdown: impl std::future::Future<Output = ()>)
where
    R: Fn() -> String + Send + Sync + 'static,
{
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            warn!(%addr, error = %e, "cannot serve /metrics");
            return;
        }
    };
    info!(%addr, "serving /metrics");
    let render = Arc::new(Cached {
        render,
        last: Mutex::new(None),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let peers = Arc::new(Peers::default());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!("metrics connection refused: {MAX_CONNECTIONS} open");
            continue;
        };
        let Some(peer_slot) = Peers::admit(&peers, peer.ip()) else {
            debug!(peer = %peer.ip(), "metrics connection refused: {MAX_PER_PEER} open from this peer");
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, render.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIME, conn).await;
            drop(peer_slot);
            drop(slot);
        });
    }
}

/// The connections open from each peer address. At most [`MAX_CONNECTIONS`] entries: a
/// connection is admitted here only once it holds one of the server's slots.
#[derive(Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its peer address while it lives.
struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    fn admit(peers: &Arc<Peers>, ip: IpAddr) -> Option<PeerSlot> {
        let mut open = peers.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= MAX_PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: peers.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The last exposition and when it was made; one render at a time.
struct Cached<R> {
    render: R,
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl<R: Fn() -> String> Cached<R> {
    fn get(&self) -> Bytes {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some((at, text)) if at.elapsed() < RENDER_EVERY => text.clone(),
            _ => {
                let text = Bytes::from((self.render)());
                *last = Some((Instant::now(), text.clone()));
                text
            }
        }
    }
}

async fn answer<R>(req: Request<Incoming>, render: Arc<Cached<R>>) -> Result<Response<Full<Bytes>>, Infallible>
where
    R: Fn() -> String + Send + Sync + 'static,
{
    let status = |code: StatusCode| {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = code;
        resp
    };
    if req.uri().path() != hsmbridge_contract::METRICS_PATH {
        return Ok(status(StatusCode::NOT_FOUND));
    }
    if req.method() != Method::GET {
        return Ok(status(StatusCode::METHOD_NOT_ALLOWED));
    }
    let Ok(text) = tokio::task::spawn_blocking(move || render.get()).await else {
        return Ok(status(StatusCode::INTERNAL_SERVER_ERROR));
    };
    let mut resp = Response::new(Full::new(text));
    if let Ok(value) = OPENMETRICS.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    Ok(resp)
}
