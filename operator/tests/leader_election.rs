//! Two replicas with leader election (the Lease `hsm-operator-leader` in `hsmbridge-system`,
//! under the least-privilege RBAC): one leads and reconciles, the other waits; when the leader
//! dies the other takes over; a replica that shuts down cleanly releases the Lease.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use support::apiserver::OPERATOR_NAMESPACE;
use support::operator::{metric_sum, Operator};
use support::{pkcs11_partition, Fixture, WAIT};

const LEASE: &str = "hsm-operator-leader";

async fn holder(fx: &Fixture) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(fx.client.clone(), OPERATOR_NAMESPACE);
    let lease = leases
        .get_opt(LEASE)
        .await
        .unwrap_or_else(|e| panic!("reading Lease {LEASE}: {e}"))?;
    lease.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty())
}

/// Identities are `<host>-<pid>-<nanos>` (operator/src/leader.rs): is `identity` this process?
fn held_by(identity: &Option<String>, op: &Operator) -> bool {
    identity
        .as_deref()
        .is_some_and(|h| h.contains(&format!("-{}-", op.pid())))
}

fn reconciles(op: &Operator) -> f64 {
    match op.http_get("/metrics") {
        Ok((200, text)) => metric_sum(&text, "hsm_operator_reconciles_total").unwrap_or(0.0),
        other => panic!("GET /metrics of pid {}: {other:?}\n{}", op.pid(), op.log_tail(40)),
    }
}

fn logs(a: &Operator, b: &Operator) -> String {
    format!(
        "--- replica A (pid {}) ---\n{}\n--- replica B (pid {}) ---\n{}",
        a.pid(),
        a.log_tail(25),
        b.pid(),
        b.log_tail(25)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_and_fail_over() {
    let fx = Fixture::without_operator("leader").await;
    fx.create_setup_secret("first-setup", "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
        .await;
    fx.create_setup_secret("second-setup", "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
        .await;

    let a = Operator::start_replica(&fx.api);
    a.wait_healthy(Duration::from_secs(30));
    let b = Operator::start_replica(&fx.api);
    b.wait_healthy(Duration::from_secs(30));
    let (ar, br) = (&a, &b);
    let fxr = &fx;
    // The first replica up takes the Lease (B may race it: whichever holds it is "the leader").
    let first = fx
        .eventually("one replica to hold the Lease", WAIT, || async move {
            let h = holder(fxr).await;
            if held_by(&h, ar) || held_by(&h, br) {
                Ok(h)
            } else {
                Err(format!("holder {h:?}\n{}", logs(ar, br)))
            }
        })
        .await;
    let (leader, follower) = if held_by(&first, &a) { (&a, &b) } else { (&b, &a) };

    // Only the leader reconciles.
    fx.create_partition(&pkcs11_partition("first", "first")).await;
    fx.wait_for_new_job("first", &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        held_by(&holder(&fx).await, leader),
        "the Lease changed hands without a reason\n{}",
        logs(&a, &b)
    );
    assert!(
        reconciles(leader) >= 1.0,
        "the leader did not reconcile\n{}",
        logs(&a, &b)
    );
    assert_eq!(
        reconciles(follower),
        0.0,
        "the follower reconciled too (two active controllers)\n{}",
        logs(&a, &b)
    );

    // The leader dies without releasing the Lease: the follower takes over once it expires.
    leader.kill();
    let t = Instant::now();
    let (lr, fr) = (leader, follower);
    fx.eventually("the follower to take the Lease over", WAIT, || async move {
        let h = holder(fxr).await;
        if held_by(&h, fr) {
            Ok(())
        } else {
            Err(format!("holder {h:?}\n{}", logs(lr, fr)))
        }
    })
    .await;
    eprintln!("fail-over after the leader's death: {:.1} s", t.elapsed().as_secs_f64());
    fx.create_partition(&pkcs11_partition("second", "second")).await;
    fx.wait_for_new_job("second", &[]).await;
    assert!(
        reconciles(follower) >= 1.0,
        "the new leader does not reconcile\n{}",
        logs(&a, &b)
    );

    // A clean shutdown (SIGTERM) releases the Lease, so a successor need not wait it out.
    let status = follower.terminate(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: the operator exited with {status:?} (or had to be killed)\n{}",
        follower.log_tail(30)
    );
    let h = holder(&fx).await;
    assert!(
        h.is_none(),
        "the Lease is still held after a clean shutdown: {h:?}\n{}",
        follower.log_tail(30)
    );
}
