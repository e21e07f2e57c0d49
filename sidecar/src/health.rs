//! The standard gRPC health service (`grpc.health.v1`) for kubelet gRPC
//! probes: SERVING while the backend module reaches an initialized token,
//! NOT_SERVING when it cannot (for Primus: every HSM of the cluster down)
//! or when the token rejected the PIN the sidecar holds (see `held_pin`).
//! What it reports is what the monitor (`monitor.rs`) last saw.

use std::net::SocketAddr;

use tokio::sync::watch;
use tonic_health::ServingStatus;
use tracing::{info, warn};

pub async fn serve(
    addr: SocketAddr,
    mut serving: watch::Receiver<bool>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let follow = tokio::spawn(async move {
        loop {
            let status = if *serving.borrow_and_update() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            if serving.changed().await.is_err() {
                return;
            }
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
    follow.abort();
}
