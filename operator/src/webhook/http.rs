//! The HTTPS server: `POST /mutate-pods` (AdmissionReview admission.k8s.io/v1) and `/healthz`.
//! A body that is not an AdmissionReview gets HTTP 400 with the reason; the decision itself is
//! `annotations` + `mutate`; this file only carries bytes and measures.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Bytes};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::annotations::{self, Parsed};
use super::metrics::{Outcome, WebhookMetrics};
use super::mutate::{self, ServerCaps, Settings};
use super::partitions::PartitionLookup;

/// The API server sends at most a few MiB (an object is at most 1.5 MiB in etcd).
const MAX_BODY: usize = 8 << 20;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The webhook's path.
pub const MUTATE_PATH: &str = "/mutate-pods";

/// Everything a review needs.
pub struct Handler<L> {
    pub lookup: L,
    pub settings: Settings,
    pub caps: ServerCaps,
    pub metrics: Arc<WebhookMetrics>,
}

impl<L: PartitionLookup> Handler<L> {
    /// Answers one HTTP request.
    pub async fn route<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        match (req.method(), req.uri().path()) {
            (&Method::POST, MUTATE_PATH) => {}
            (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n".into()),
            (_, MUTATE_PATH) => {
                return text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "POST an AdmissionReview\n".into(),
                )
            }
            _ => return text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
        let started = Instant::now();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                self.metrics.observe(Outcome::Invalid, started.elapsed());
                let too_large = e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                return if too_large {
                    text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("body over {MAX_BODY} bytes\n"),
                    )
                } else {
                    text(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the body: {e}\n"),
                    )
                };
            }
        };
        let (response, outcome) = match self.review(&body).await {
            Ok((json, outcome)) => {
                let mut response = Response::new(Full::new(Bytes::from(json)));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                (response, outcome)
            }
            Err(message) => (
                text(StatusCode::BAD_REQUEST, format!("{message}\n")),
                Outcome::Invalid,
            ),
        };
        self.metrics.observe(outcome, started.elapsed());
        response
    }

    /// An AdmissionReview in, an AdmissionReview out; `Err` for a body that is not one.
    pub async fn review(&self, body: &[u8]) -> Result<(Vec<u8>, Outcome), String> {
        let review: AdmissionReview<Pod> = serde_json::from_slice(body)
            .map_err(|e| format!("not an AdmissionReview of a Pod: {e}"))?;
        let request: AdmissionRequest<Pod> = review
            .try_into()
            .map_err(|_| "the AdmissionReview has no request".to_owned())?;
        let (response, outcome) = self.decide(&request).await;
        let json = serde_json::to_vec(&response.into_review())
            .map_err(|e| format!("cannot encode the response: {e}"))?;
        Ok((json, outcome))
    }

    async fn decide(&self, req: &AdmissionRequest<Pod>) -> (AdmissionResponse, Outcome) {
        let allow = AdmissionResponse::from(req);
        if req.operation != Operation::Create
            || req.kind.kind != "Pod"
            || req.sub_resource.as_deref().is_some_and(|s| !s.is_empty())
        {
            return (allow, Outcome::Skipped);
        }
        let Some(pod) = &req.object else {
            return deny(allow, "the AdmissionReview carries no pod");
        };
        let request = match annotations::parse(&pod.metadata) {
            Ok(Parsed::Inject(request)) => request,
            Ok(Parsed::NotOptedIn | Parsed::AlreadyInjected) => return (allow, Outcome::Skipped),
            Err(e) => return deny(allow, e),
        };
        let Some(namespace) = req
            .namespace
            .as_deref()
            .or(pod.metadata.namespace.as_deref())
            .filter(|ns| !ns.is_empty())
        else {
            return deny(allow, "the pod has no namespace");
        };
        let mut found = BTreeMap::new();
        for name in &request.partitions {
            match self.lookup.get(namespace, name).await {
                Ok(Some(partition)) => {
                    found.insert(name.clone(), partition);
                }
                Ok(None) => {}
                Err(e) => {
                    return deny(
                        allow,
                        format!("cannot read HsmPartition {namespace}/{name} (try again): {e}"),
                    )
                }
            }
        }
        match mutate::inject(pod, namespace, &request, &found, &self.settings, self.caps) {
            Ok(patch) => match allow.clone().with_patch(patch) {
                Ok(patched) => {
                    debug!(namespace, pod = pod_name(pod), partitions = ?request.partitions, "injected");
                    (patched, Outcome::Injected)
                }
                Err(e) => deny(
                    allow,
                    format!("internal error: cannot encode the patch: {e}"),
                ),
            },
            Err(denial) => {
                info!(namespace, pod = pod_name(pod), reason = %denial, "denied");
                deny(allow, denial)
            }
        }
    }
}

fn deny(allow: AdmissionResponse, reason: impl ToString) -> (AdmissionResponse, Outcome) {
    let mut response = allow.deny(reason);
    response.result.code = 403;
    response.result.reason = "Forbidden".to_owned();
    (response, Outcome::Denied)
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata
        .name
        .as_deref()
        .or(pod.metadata.generate_name.as_deref())
        .unwrap_or("")
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serves HTTPS on `listener` until `shutdown`, then lets open requests finish (10 s at most).
pub async fn run<L: PartitionLookup + 'static>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handler: Arc<Handler<L>>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that opens a connection and sends nothing does not hold it forever.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, handler, builder) = (acceptor.clone(), handler.clone(), builder.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler.route(req).await) }
            });
            let conn = builder
                .serve_connection(TokioIo::new(tls), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                debug!(%peer, error = %e, "webhook connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => warn!("webhook connections still open after {DRAIN_TIMEOUT:?}; closing"),
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
