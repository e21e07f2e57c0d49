//! The standard gRPC health service (`grpc.health.v1`) for kubelet gRPC
//! probes: SERVING while the backend module reaches an initialized token,
//! NOT_SERVING when it cannot (for Primus: every HSM of the cluster down)
//! or when the token rejected the PIN the sidecar holds (see `held_pin`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tonic_health::ServingStatus;
use tracing::{info, warn};

use crate::service::Service;

/// Kubelet probes every 10 s by default; a fresher answer costs one
/// C_GetSlotList and a C_GetTokenInfo per slot.
const CHECK_EVERY: Duration = Duration::from_secs(2);

pub async fn serve(addr: SocketAddr, service: Arc<Service>, shutdown: impl std::future::Future<Output = ()>) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let check = tokio::spawn(async move {
        let mut last = None;
        loop {
            let s = service.clone();
            let usable =
                tokio::task::spawn_blocking(move || !s.logins.held_pin_rejected() && s.backend.token_reachable()).await;
            let status = if matches!(usable, Ok(true)) {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if last != Some(status) {
                info!(?status, "backend health changed");
                last = Some(status);
            }
            reporter.set_service_status("", status).await;
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
