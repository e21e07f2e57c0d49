//! Objects the operator would create for a partition but that already exist and are someone
//! else's: it must not adopt, rewrite or delete them (a user who may only create HsmPartitions
//! could otherwise take over any Secret of the namespace by naming a partition after it). The
//! partition reports `OwnershipConflict` instead, starts no enrollment, and deleting it leaves
//! those objects exactly as they were.

mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use support::{condition, conditions_summary, pkcs11_partition, Fixture, WAIT};

const SETUP_PASSWORD: &str = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE";
const VICTIM_PIN: &str = "the-victims-own-secret-value";

/// The object as stored, minus nothing: any write by the operator changes its resourceVersion.
fn fingerprint<K: serde::Serialize>(object: &K) -> serde_json::Value {
    serde_json::to_value(object).expect("object to JSON")
}

/// resourceVersions of what the operator made in the first test.
async fn owned_versions(fx: &Fixture) -> Vec<Option<String>> {
    vec![
        fx.api::<Role>()
            .get("cache-enroll")
            .await
            .expect("Role cache-enroll")
            .metadata
            .resource_version,
        fx.api::<Secret>()
            .get("cache-credentials")
            .await
            .expect("cache-credentials")
            .metadata
            .resource_version,
        fx.api::<ConfigMap>()
            .get("cache-provider")
            .await
            .expect("cache-provider")
            .metadata
            .resource_version,
        fx.api::<ConfigMap>()
            .get("db-provider")
            .await
            .expect("db-provider")
            .metadata
            .resource_version,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_others_are_left_alone_and_reported() {
    let fx = Fixture::new("ownership").await;

    // Someone else's Secret named like partition "db"'s credential Secret, and someone else's
    // RoleBinding named like partition "cache"'s enrollment RoleBinding.
    let victim: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db-credentials", "labels": {"app": "db"}},
        "type": "Opaque",
        "stringData": {"pin": VICTIM_PIN, "password": "hunter2"}
    }))
    .expect("secret JSON");
    let victim = fx
        .api::<Secret>()
        .create(&PostParams::default(), &victim)
        .await
        .expect("creating db-credentials");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "cache-enroll"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "cache-enroll", "namespace": fx.ns}]
    }))
    .expect("rolebinding JSON");
    let binding = fx
        .api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("creating cache-enroll");

    for name in ["db", "cache"] {
        fx.create_setup_secret(&format!("{name}-setup"), SETUP_PASSWORD).await;
        fx.create_partition(&pkcs11_partition(name, name)).await;
    }

    // "db": its credential Secret is someone else's.
    let p = fx
        .wait_condition("db", "Enrolled", "False", Some("OwnershipConflict"))
        .await;
    let enrolled = condition(&p, "Enrolled").expect("Enrolled");
    eprintln!("db: {}", conditions_summary(&p));
    assert!(
        enrolled.message.contains("Secret db-credentials")
            && enrolled.message.contains("not owned by this HsmPartition"),
        "the message must name the object: {:?}",
        enrolled.message
    );
    let ready = condition(&p, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "OwnershipConflict"),
        "{}",
        conditions_summary(&p)
    );
    let status = serde_json::to_string(&p["status"]).expect("status JSON");
    assert!(
        !status.contains(VICTIM_PIN) && !status.contains("hunter2"),
        "the status shows secret data: {status}"
    );

    // "cache": its enrollment RoleBinding is someone else's.
    let p = fx
        .wait_condition("cache", "Enrolled", "False", Some("OwnershipConflict"))
        .await;
    eprintln!("cache: {}", conditions_summary(&p));
    let enrolled = condition(&p, "Enrolled").expect("Enrolled");
    assert!(
        enrolled.message.contains("RoleBinding cache-enroll"),
        "{:?}",
        enrolled.message
    );
    assert_eq!(
        condition(&p, "Ready").map(|c| c.reason),
        Some("OwnershipConflict".to_owned())
    );

    // Reconcile a few more times; still nothing of theirs is written, and no enrollment starts
    // (a Job of the partition's image could read the Secret or use the RoleBinding's rights).
    // What the operator made for "cache" is not rewritten either: an up-to-date object costs no write.
    let before = owned_versions(&fx).await;
    for n in 1..=3 {
        fx.touch("db", n).await;
        fx.touch("cache", n).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        owned_versions(&fx).await,
        before,
        "reconciles rewrote up-to-date objects (Role, Secret, ConfigMaps)"
    );
    let events = fx.events_for("db").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("OwnershipConflict") && e.type_.as_deref() == Some("Warning")),
        "no OwnershipConflict Warning Event for db: {:?}",
        events
            .iter()
            .map(|e| (e.reason.clone(), e.type_.clone()))
            .collect::<Vec<_>>()
    );
    for name in ["db", "cache"] {
        let jobs = fx.enrollment_jobs(name).await;
        assert!(
            jobs.is_empty(),
            "{name}: an enrollment Job was started despite the conflict: {:?}",
            jobs.len()
        );
    }
    assert!(
        fx.api::<ServiceAccount>()
            .get_opt("cache-enroll")
            .await
            .expect("get")
            .is_none(),
        "a ServiceAccount cache-enroll was created for the someone else's RoleBinding to bind"
    );
    let still = fx.api::<Secret>().get("db-credentials").await.expect("db-credentials");
    assert_eq!(
        fingerprint(&still),
        fingerprint(&victim),
        "db-credentials was written to"
    );
    let still = fx.api::<RoleBinding>().get("cache-enroll").await.expect("cache-enroll");
    assert_eq!(
        fingerprint(&still),
        fingerprint(&binding),
        "RoleBinding cache-enroll was written to"
    );
    // What the operator did make for "cache" is its own.
    let uid = fx.partition("cache").await.expect("cache")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let own = fx
        .api::<Secret>()
        .get("cache-credentials")
        .await
        .expect("cache-credentials");
    assert!(own
        .metadata
        .owner_references
        .unwrap_or_default()
        .iter()
        .any(|r| r.uid == uid && r.controller == Some(true)));

    // Deleting the partitions deletes what is theirs and nothing else.
    for name in ["db", "cache"] {
        fx.partitions()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting {name}: {e}"));
    }
    let fxr = &fx;
    for name in ["db", "cache"] {
        fx.eventually(&format!("HsmPartition {name} to be gone"), WAIT, || async move {
            match fxr.partition(name).await {
                None => Ok(()),
                Some(p) => Err(format!("still there: {}", p["metadata"])),
            }
        })
        .await;
    }
    let still = fx.api::<Secret>().get_opt("db-credentials").await.expect("get");
    let still = still.expect("deleting partition db deleted someone else's Secret db-credentials");
    assert_eq!(fingerprint(&still), fingerprint(&victim), "db-credentials changed");
    let still = fx.api::<RoleBinding>().get_opt("cache-enroll").await.expect("get");
    let still = still.expect("deleting partition cache deleted someone else's RoleBinding cache-enroll");
    assert_eq!(
        fingerprint(&still),
        fingerprint(&binding),
        "RoleBinding cache-enroll changed"
    );
    for (kind, left) in [
        (
            "Secret cache-credentials",
            fx.api::<Secret>()
                .get_opt("cache-credentials")
                .await
                .expect("get")
                .is_some(),
        ),
        (
            "Role cache-enroll",
            fx.api::<Role>().get_opt("cache-enroll").await.expect("get").is_some(),
        ),
        (
            "ConfigMap cache-provider",
            fx.api::<ConfigMap>()
                .get_opt("cache-provider")
                .await
                .expect("get")
                .is_some(),
        ),
        (
            "ConfigMap db-provider",
            fx.api::<ConfigMap>()
                .get_opt("db-provider")
                .await
                .expect("get")
                .is_some(),
        ),
    ] {
        assert!(
            !left,
            "{kind}, made for the partition, was not deleted with it\n{}",
            fx.diagnostics()
        );
    }
}

/// A Job named like the partition's enrollment Job but not the partition's is neither read as
/// its outcome nor deleted; a ConfigMap named like its provider config is not rewritten (and
/// no Job would mount it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_provider_config_map_stops_enrollment() {
    let fx = Fixture::new("ownership-cm").await;
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "pay-provider"},
        "data": {"primus.cfg": "someone else's"}
    }))
    .expect("configmap JSON");
    let cm = fx
        .api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .expect("creating pay-provider");
    fx.create_setup_secret("pay-setup", SETUP_PASSWORD).await;
    fx.create_partition(&pkcs11_partition("pay", "pay")).await;
    let p = fx
        .wait_condition("pay", "ConfigRendered", "False", Some("OwnershipConflict"))
        .await;
    eprintln!("pay: {}", conditions_summary(&p));
    assert!(condition(&p, "ConfigRendered")
        .expect("ConfigRendered")
        .message
        .contains("ConfigMap pay-provider"));
    assert_eq!(
        condition(&p, "Ready").map(|c| c.reason),
        Some("OwnershipConflict".to_owned())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        fx.api::<Job>()
            .list(&Default::default())
            .await
            .expect("list Jobs")
            .items
            .is_empty(),
        "a Job was started"
    );
    assert_eq!(
        fingerprint(&fx.api::<ConfigMap>().get("pay-provider").await.expect("cm")),
        fingerprint(&cm)
    );

    // Removing it resolves the conflict: the operator makes its own, and enrollment starts.
    fx.api::<ConfigMap>()
        .delete("pay-provider", &DeleteParams::default())
        .await
        .expect("deleting pay-provider");
    fx.touch("pay", 1).await;
    fx.wait_for_new_job("pay", &[]).await;
    let p = fx
        .wait_condition("pay", "ConfigRendered", "True", Some("Rendered"))
        .await;
    assert_eq!(
        condition(&p, "Enrolled").map(|c| c.reason),
        Some("EnrollmentRunning".to_owned()),
        "{}",
        conditions_summary(&p)
    );
}
