//! The standard gRPC health service (`grpc.health.v1`) for kubelet gRPC
//! probes: SERVING while the backend module sees a token, NOT_SERVING when
//! it cannot reach one (for Primus: every HSM of the cluster down).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tonic_health::ServingStatus;
use tracing::{info, warn};

use crate::service::Service;

const CHECK_EVERY: Duration = Duration::from_secs(5);

pub async fn serve(addr: SocketAddr, service: Arc<Service>, shutdown: impl std::future::Future<Output = ()>) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let check = tokio::spawn(async move {
        let mut last = None;
        loop {
            let s = service.clone();
            let present = tokio::task::spawn_blocking(move || s.backend.present_slots()).await;
            let status = match present {
                Ok(Ok(slots)) if !slots.is_empty() => ServingStatus::Serving,
                _ => ServingStatus::NotServing,
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
    if let Err(e) = tonic::transport::Server::builder().add_service(health).serve_with_shutdown(addr, shutdown).await {
        warn!(error = %e, "health server stopped");
    }
    check.abort();
}
