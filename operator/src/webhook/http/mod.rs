//! The HTTPS server: `POST /mutate-pods` (AdmissionReview admission.k8s.io/v1) and `/healthz`.
//! A body that is not an AdmissionReview gets HTTP 400 with the reason; the decision itself is
//! `annotations` + `mutate`; this module only carries bytes, measures, and bounds what a client
//! may hold (`limits.rs`): connections, HTTP/2 streams and idle time in `server.rs`; here, per
//! request, body bytes in memory and time. A review answers within its deadline (below the API
//! server's `?timeout=`), whatever the body or the partition lookups do; `/healthz` is answered
//! before any body is read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Buf, Bytes};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode, Version};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant as Deadline;
use tracing::{debug, info};

use super::annotations::{self, Parsed};
use super::inject::{self, Denial, ServerCaps, Settings};
use super::limits::{self, MAX_BODY};
use super::metrics::{Outcome, WebhookMetrics};
use super::partitions::PartitionLookup;

mod server;

pub use server::run;

/// The webhook's path.
pub const MUTATE_PATH: &str = "/mutate-pods";

/// The request body bytes all requests together may hold ([`limits::MAX_BUFFERED`]).
#[derive(Clone, Debug)]
pub struct BodyBudget(Arc<Semaphore>);

impl Default for BodyBudget {
    fn default() -> Self {
        BodyBudget(Arc::new(Semaphore::new(limits::MAX_BUFFERED)))
    }
}

impl BodyBudget {
    /// Bytes held by bodies being read or reviewed right now.
    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        limits::MAX_BUFFERED.saturating_sub(self.0.available_permits())
    }
}

/// Everything a review needs.
pub struct Handler<L> {
    pub lookup: L,
    pub settings: Settings,
    pub caps: ServerCaps,
    pub metrics: Arc<WebhookMetrics>,
    pub budget: BodyBudget,
}

/// Why a body was not read.
#[derive(Debug)]
enum BodyError {
    TooLarge,
    Timeout,
    Read(String),
}

/// A body read under the budget; the bytes stay accounted for until this is dropped.
struct HeldBody {
    bytes: Vec<u8>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<L: PartitionLookup> Handler<L> {
    /// Answers one HTTP request.
    pub async fn route<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: std::fmt::Display,
    {
        match (req.method(), req.uri().path()) {
            (&Method::POST, MUTATE_PATH) => {}
            (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n".into()),
            (_, MUTATE_PATH) => return text(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview\n".into()),
            _ => return text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
        let started = Instant::now();
        let budget = limits::review_deadline(req.uri().query());
        let now = Deadline::now();
        let (deadline, body_deadline) = (now + budget, now + limits::body_deadline(budget));
        let http1 = req.version() < Version::HTTP_2;
        let body = match self.read_body(req.into_body(), body_deadline).await {
            Ok(body) => body,
            Err(e) => {
                self.metrics.observe(Outcome::Invalid, started.elapsed());
                let mut response = match e {
                    BodyError::TooLarge => text(StatusCode::PAYLOAD_TOO_LARGE, format!("body over {MAX_BODY} bytes\n")),
                    BodyError::Timeout => text(
                        StatusCode::REQUEST_TIMEOUT,
                        format!("the body did not arrive within {:?}\n", limits::body_deadline(budget)),
                    ),
                    BodyError::Read(e) => text(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}\n")),
                };
                if http1 {
                    // The rest of the body is not read: the connection cannot be reused.
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                return response;
            }
        };
        let (response, outcome) = match self.review(&body.bytes, deadline).await {
            Ok((json, outcome)) => {
                let mut response = Response::new(Full::new(Bytes::from(json)));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                (response, outcome)
            }
            Err(message) => (text(StatusCode::BAD_REQUEST, format!("{message}\n")), Outcome::Invalid),
        };
        drop(body);
        self.metrics.observe(outcome, started.elapsed());
        response
    }

    /// Reads `body` by `deadline`, holding budget for the memory it takes (a body that would
    /// go past the budget waits for it, which stops reading from its connection).
    async fn read_body<B>(&self, body: B, deadline: Deadline) -> Result<HeldBody, BodyError>
    where
        B: Body,
        B::Error: std::fmt::Display,
    {
        if body.size_hint().lower() > MAX_BODY as u64 {
            return Err(BodyError::TooLarge);
        }
        let mut body = std::pin::pin!(body);
        let mut bytes: Vec<u8> = Vec::new();
        let mut permit: Option<OwnedSemaphorePermit> = None;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => return Err(BodyError::Timeout),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(BodyError::Read(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(mut data) = frame.into_data() else {
                continue; // trailers
            };
            let needed = bytes.len() + data.remaining();
            if needed > MAX_BODY {
                return Err(BodyError::TooLarge);
            }
            let held = permit.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
            if needed > held {
                // Grow by doubling (at least 64 KiB, at most MAX_BODY), holding what is reserved.
                let target = needed.max(held * 2).clamp(64 << 10, MAX_BODY).max(needed);
                let more = u32::try_from(target - held).map_err(|_| BodyError::TooLarge)?;
                let acquired = tokio::time::timeout_at(deadline, self.budget.0.clone().acquire_many_owned(more))
                    .await
                    .map_err(|_| BodyError::Timeout)?
                    .map_err(|_| BodyError::Read("the webhook is shutting down".to_owned()))?;
                match permit.as_mut() {
                    Some(p) => p.merge(acquired),
                    None => permit = Some(acquired),
                }
                bytes.reserve_exact(target - bytes.len());
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                bytes.extend_from_slice(chunk);
                let n = chunk.len();
                data.advance(n);
            }
        }
        Ok(HeldBody { bytes, _permit: permit })
    }

    /// An AdmissionReview in, an AdmissionReview out; `Err` for a body that is not one. The
    /// decision is a denial when it is not made by `deadline`.
    pub async fn review(&self, body: &[u8], deadline: Deadline) -> Result<(Vec<u8>, Outcome), String> {
        let review: AdmissionReview<Pod> =
            serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview of a Pod: {e}"))?;
        let request: AdmissionRequest<Pod> = review
            .try_into()
            .map_err(|_| "the AdmissionReview has no request".to_owned())?;
        let (response, outcome) = match tokio::time::timeout_at(deadline, self.decide(&request)).await {
            Ok(decided) => decided,
            Err(_) => deny(
                AdmissionResponse::from(&request),
                "hsmbridge could not decide in time (reading the HsmPartitions took too long); try again",
            ),
        };
        let json =
            serde_json::to_vec(&response.into_review()).map_err(|e| format!("cannot encode the response: {e}"))?;
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
        // Bounded first: the annotation lists are counted before anything else reads them.
        let request = match annotations::parse(&pod.metadata) {
            Ok(Parsed::Inject(request)) => request,
            Ok(Parsed::NotOptedIn | Parsed::AlreadyInjected) => return (allow, Outcome::Skipped),
            Err(e) => return deny(allow, e),
        };
        if let Err(denial) = inject::precheck(pod) {
            return self.denied(allow, pod, denial);
        }
        let Some(namespace) = req
            .namespace
            .as_deref()
            .or(pod.metadata.namespace.as_deref())
            .filter(|ns| !ns.is_empty())
        else {
            return deny(allow, "the pod has no namespace");
        };
        // One lookup per partition, stopping at the first one the pod cannot use.
        let service_account = inject::service_account(pod);
        let mut found = BTreeMap::new();
        for name in &request.partitions {
            match self.lookup.get(namespace, name).await {
                Ok(Some(partition)) => {
                    if let Err(denial) = inject::check_usable(&partition, namespace, name, &service_account) {
                        return self.denied(allow, pod, denial);
                    }
                    found.insert(name.clone(), partition);
                }
                Ok(None) => {
                    let denial = Denial::UnknownPartition {
                        namespace: namespace.to_owned(),
                        name: name.clone(),
                    };
                    return self.denied(allow, pod, denial);
                }
                Err(e) => {
                    return deny(
                        allow,
                        format!("cannot read HsmPartition {namespace}/{name} (try again): {e}"),
                    )
                }
            }
        }
        match inject::inject(pod, namespace, &request, &found, &self.settings, self.caps) {
            Ok(patch) => match allow.clone().with_patch(patch) {
                Ok(patched) => {
                    debug!(namespace, pod = pod_name(pod), partitions = ?request.partitions, "injected");
                    (patched, Outcome::Injected)
                }
                Err(e) => deny(allow, format!("internal error: cannot encode the patch: {e}")),
            },
            Err(denial) => self.denied(allow, pod, denial),
        }
    }

    fn denied(&self, allow: AdmissionResponse, pod: &Pod, denial: Denial) -> (AdmissionResponse, Outcome) {
        info!(namespace = pod.metadata.namespace.as_deref().unwrap_or(""), pod = pod_name(pod), reason = %denial, "denied");
        deny(allow, denial)
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
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests;
