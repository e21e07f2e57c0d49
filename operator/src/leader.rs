//! Leader election over a Lease (`hsm-operator-leader` by default; kube-lease-manager: server-side apply
//! on a `coordination.k8s.io/v1` Lease). Publishes this replica's role on a watch channel:
//! `None` until the Lease was read once, then `Some(true)` while leader.
//!
//! kube-lease-manager reports API errors while renewing but keeps its own idea of leadership;
//! this module treats any error as "not leader" (the controller stops), drops the manager and
//! starts over with a fresh one, which re-reads the Lease. Stepping down on an error can cost a
//! few seconds of leadership; keeping the controller running on a Lease it could not renew could
//! run two leaders at once.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tracing::{info, warn};

/// Lease duration: a follower takes over this long after the leader's last renewal.
const LEASE_DURATION_SECS: u64 = 15;
/// The leader renews this long before the Lease expires.
const LEASE_GRACE_SECS: u64 = 5;
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(15);

/// This replica's role: `None` unknown, `Some(true)` leader, `Some(false)` follower.
pub type Role = Option<bool>;

/// Runs the election until `shutdown` turns true, then releases the Lease if held.
pub async fn run(
    client: Client,
    namespace: String,
    lease: String,
    identity: String,
    role: watch::Sender<Role>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut retry = RETRY_MIN;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let manager = tokio::select! {
            _ = stopped(&mut shutdown) => return,
            m = build(&client, &namespace, &lease, &identity) => m,
        };
        let manager = match manager {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, %lease, %namespace, "cannot read the leader Lease; retrying");
                role.send_replace(Some(false));
                if sleep_or_shutdown(retry, &mut shutdown).await {
                    return;
                }
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        // The Lease was read: until the manager says otherwise, this replica follows.
        if role.borrow().is_none() {
            role.send_replace(Some(false));
        }
        loop {
            tokio::select! {
                _ = stopped(&mut shutdown) => {
                    role.send_replace(Some(false));
                    if let Err(e) = manager.release().await {
                        warn!(error = %e, "could not release the leader Lease");
                    }
                    return;
                }
                changed = manager.changed() => match changed {
                    Ok(leader) => {
                        retry = RETRY_MIN;
                        info!(%identity, leader, "leadership changed");
                        role.send_replace(Some(leader));
                    }
                    Err(e) => {
                        warn!(error = %e, "leader election failed; stepping down and starting over");
                        role.send_replace(Some(false));
                        let _ = manager.release().await;
                        break;
                    }
                }
            }
        }
        if sleep_or_shutdown(retry, &mut shutdown).await {
            return;
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

async fn build(
    client: &Client,
    namespace: &str,
    lease: &str,
    identity: &str,
) -> kube_lease_manager::Result<LeaseManager> {
    LeaseManagerBuilder::new(client.clone(), lease)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_DURATION_SECS)
        .with_grace(LEASE_GRACE_SECS)
        .build()
        .await
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// True when shutdown was requested while sleeping.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = stopped(shutdown) => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// A Lease holder identity unique per process: the pod (host) name, the pid and the start time,
/// so two replicas on one host never share it.
pub fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "hsm-operator".to_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}-{}-{nanos:08x}", std::process::id())
}
