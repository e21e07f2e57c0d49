//! The standard gRPC health service (`grpc.health.v1`) for kubelet gRPC
//! probes: SERVING while the backend module reaches an initialized token,
//! NOT_SERVING when it cannot (for Primus: every HSM of the cluster down)
//! or when the token rejected the PIN the sidecar holds (see `held_pin`).
//! While the token stays unreachable it also re-initializes the module when
//! that is safe (see `recovery`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic_health::ServingStatus;
use tracing::{debug, info, warn};

use crate::backend::Reinit;
use crate::recovery::Recovery;
use crate::service::Service;

/// Kubelet probes every 10 s by default; a fresher answer costs one
/// C_GetSlotList and a C_GetTokenInfo per slot.
const CHECK_EVERY: Duration = Duration::from_secs(2);

pub async fn serve(addr: SocketAddr, service: Arc<Service>, shutdown: impl std::future::Future<Output = ()>) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let check = tokio::spawn(async move {
        let mut last = None;
        let mut recovery = Recovery::default();
        loop {
            let s = service.clone();
            let seen =
                tokio::task::spawn_blocking(move || (s.backend.token_reachable(), s.logins.held_pin_rejected())).await;
            let (reachable, rejected) = seen.unwrap_or((false, false));
            let status = if reachable && !rejected {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if last != Some(status) {
                info!(
                    ?status,
                    reachable,
                    held_pin_rejected = rejected,
                    "backend health changed"
                );
                last = Some(status);
            }
            reporter.set_service_status("", status).await;
            if recovery.due(reachable, Instant::now()) {
                let s = service.clone();
                let done =
                    tokio::task::spawn_blocking(move || s.backend.reinitialize_if(|| s.apps.session_count() == 0))
                        .await;
                // The rest between attempts counts from the end of this one (a
                // C_Initialize that waits for an unreachable HSM may take long).
                recovery.attempted(Instant::now());
                match done {
                    Ok(Reinit::Done(rv)) if rv == cryptoki_sys::CKR_OK => {
                        info!("token unreachable and no session open: module re-initialized")
                    }
                    Ok(Reinit::Done(rv)) => warn!(
                        c_initialize = %crate::rv::Rv(rv),
                        "token unreachable and no session open: module re-initialization failed"
                    ),
                    Ok(Reinit::Skipped) => {
                        debug!("token unreachable, but a call or a session is open: module left alone")
                    }
                    Err(e) => warn!(error = %e, "re-initialization task failed"),
                }
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    });
    info!(%addr, "serving grpc.health.v1");
    if let Err(e) = tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_shutdown(addr, shutdown)
        .await
    {
        warn!(error = %e, "health server stopped");
    }
    check.abort();
}
