//! The operator's HTTP endpoints (`/metrics`, `/healthz`, `/readyz`), and a partition whose
//! setup Secret does not exist yet (it must be picked up when the Secret appears).

mod support;

use support::operator::metric_sum;
use support::{condition, pkcs11_partition, Fixture, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_reconciles_and_health_endpoints_answer() {
    let fx = Fixture::new("metrics").await;
    let op = fx.operator();
    assert_eq!(op.http_get("/healthz").map(|r| r.0), Ok(200), "/healthz");
    fx.eventually("/readyz to answer 200", WAIT, || async move {
        match op.http_get("/readyz") {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // A partition whose setup Secret is missing: a condition a human can act on.
    fx.create_partition(&pkcs11_partition("payments", "payments")).await;
    let p = fx
        .wait_condition("payments", "Enrolled", "False", Some("SetupPasswordSecretMissing"))
        .await;
    let c = condition(&p, "Enrolled").expect("Enrolled");
    eprintln!("Enrolled=False/SetupPasswordSecretMissing: {}", c.message);
    assert!(
        c.message.contains("payments-setup"),
        "the message must name the missing Secret payments-setup: {:?}",
        c.message
    );

    let text = fx.metrics();
    let reconciles = metric_sum(&text, "hsm_operator_reconciles_total");
    assert!(
        reconciles.is_some_and(|n| n >= 1.0),
        "hsm_operator_reconciles_total after a reconcile: {reconciles:?}\n{text}"
    );
    let durations = metric_sum(&text, "hsm_operator_reconcile_duration_seconds_count")
        .or_else(|| metric_sum(&text, "hsm_operator_reconcile_duration_seconds"));
    assert!(
        durations.is_some_and(|n| n >= 1.0),
        "hsm_operator_reconcile_duration_seconds has no observations:\n{text}"
    );
    // OpenMetrics: a counter family is announced without `_total` (its samples carry it), also
    // before its first failure, and the page ends with `# EOF`.
    assert!(
        text.contains("# TYPE hsm_operator_reconcile_failures counter\n"),
        "hsm_operator_reconcile_failures_total is not exported (not even its TYPE):\n{text}"
    );
    assert!(
        text.contains("# TYPE hsm_operator_reconciles counter\n")
            && text.contains("# TYPE hsm_operator_leader gauge\n")
            && text.contains("# TYPE hsm_operator_partition_pods gauge\n"),
        "families not announced:\n{text}"
    );
    assert!(text.ends_with("# EOF\n"), "not OpenMetrics text (no # EOF):\n{text}");
    eprintln!(
        "failures by reason while the setup Secret is missing: {:?}",
        text.lines()
            .filter(|l| l.starts_with("hsm_operator_reconcile_failures_total"))
            .collect::<Vec<_>>()
    );

    // The Secret appears: the operator notices (watch or requeue) and starts enrolling.
    fx.create_setup_secret("payments-setup", "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
        .await;
    fx.wait_for_new_job("payments", &[]).await;
    let p = fx.wait_condition("payments", "Enrolled", "False", None).await;
    let reason = condition(&p, "Enrolled").map(|c| c.reason).unwrap_or_default();
    let fxr = &fx;
    fx.eventually("Enrolled to leave SetupPasswordSecretMissing", WAIT, || async move {
        let fx = fxr;
        let p = fx.partition("payments").await.ok_or("gone")?;
        let r = condition(&p, "Enrolled").map(|c| c.reason).unwrap_or_default();
        if r == "EnrollmentPending" || r == "EnrollmentRunning" {
            Ok(())
        } else {
            Err(format!("Enrolled reason {r}"))
        }
    })
    .await;
    eprintln!("Enrolled reason once the Secret exists: {reason}");

    let later = metric_sum(&fx.metrics(), "hsm_operator_reconciles_total");
    assert!(
        later > reconciles,
        "hsm_operator_reconciles_total did not grow: {reconciles:?} -> {later:?}"
    );
    let (code, _) = op.http_get("/no-such-path").expect("GET /no-such-path");
    assert_eq!(code, 404, "unknown paths should be 404");
}
