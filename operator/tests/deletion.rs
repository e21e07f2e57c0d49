//! Deleting a partition: the finalizer removes everything the operator made (the test API
//! server has no garbage collector, so ownerReferences alone would remove nothing), keeps the
//! credential Secret only with `retainCredentialsOnDelete: true`, and then lets the partition go.

mod support;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams};
use serde_json::json;
use support::softhsm::SoftHsmToken;
use support::{pkcs11_partition, primus_partition, Fixture, WAIT};

const SETUP_PASSWORD: &str = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE";

/// `kind/name` of what still exists among the objects the operator makes for `partition`
/// (with deletionTimestamp/finalizers when set, to tell "stuck deleting" from "never deleted").
async fn leftovers(fx: &Fixture, partition: &str, include_secret: bool) -> Vec<String> {
    fn describe(kind: &str, m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
        let mut s = format!("{kind}/{}", m.name.clone().unwrap_or_default());
        if m.deletion_timestamp.is_some() {
            s.push_str(&format!(
                " (deleting; finalizers {:?})",
                m.finalizers.clone().unwrap_or_default()
            ));
        }
        s
    }
    let mut out = Vec::new();
    let enroll = format!("{partition}-enroll");
    if let Some(o) = fx
        .api::<ConfigMap>()
        .get_opt(&format!("{partition}-provider"))
        .await
        .expect("get ConfigMap")
    {
        out.push(describe("ConfigMap", &o.metadata));
    }
    if include_secret {
        if let Some(o) = fx
            .api::<Secret>()
            .get_opt(&format!("{partition}-credentials"))
            .await
            .expect("get Secret")
        {
            out.push(describe("Secret", &o.metadata));
        }
    }
    if let Some(o) = fx
        .api::<ServiceAccount>()
        .get_opt(&enroll)
        .await
        .expect("get ServiceAccount")
    {
        out.push(describe("ServiceAccount", &o.metadata));
    }
    if let Some(o) = fx.api::<Role>().get_opt(&enroll).await.expect("get Role") {
        out.push(describe("Role", &o.metadata));
    }
    if let Some(o) = fx.api::<RoleBinding>().get_opt(&enroll).await.expect("get RoleBinding") {
        out.push(describe("RoleBinding", &o.metadata));
    }
    let prefix = format!("{partition}-enroll-");
    for j in fx
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .expect("list Jobs")
        .items
    {
        if j.metadata.name.as_deref().is_some_and(|n| n.starts_with(&prefix)) {
            out.push(describe("Job", &j.metadata));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_removes_what_the_operator_made() {
    let fx = Fixture::new("deletion").await;
    let mut tokens = Vec::new();
    let mut uids = Vec::new();
    for (name, retain) in [("drop", false), ("keep", true)] {
        let token = SoftHsmToken::new(name, SETUP_PASSWORD);
        fx.create_setup_secret(&format!("{name}-setup"), SETUP_PASSWORD).await;
        let mut body = pkcs11_partition(name, name);
        body["spec"]["retainCredentialsOnDelete"] = json!(retain);
        let created = fx.create_partition(&body).await;
        uids.push(created["metadata"]["uid"].as_str().expect("uid").to_owned());
        let job = fx.wait_for_new_job(name, &[]).await;
        let run = fx.play_enrollment(&job, &token).await;
        assert_eq!(run.code(), Some(0), "enrollment of {name} failed:\n{}", run.describe());
        fx.wait_condition(name, "Ready", "True", Some("Ready")).await;
        tokens.push(token);
    }
    // A primus partition too: it has a provider ConfigMap (no enrollment needed to delete it).
    fx.create_setup_secret("cfg-setup", SETUP_PASSWORD).await;
    fx.create_partition(&primus_partition("cfg")).await;
    fx.wait_condition("cfg", "ConfigRendered", "True", Some("Rendered"))
        .await;
    fx.api::<ConfigMap>()
        .get("cfg-provider")
        .await
        .expect("the primus partition's ConfigMap");

    let kept_pin = fx.secret_value("keep-credentials", "pin").await.expect("keep's pin");
    let finalizers = fx.partition("drop").await.expect("drop")["metadata"]["finalizers"].clone();
    assert!(
        finalizers
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "hsmbridge.io/cleanup")),
        "the partition must carry the finalizer hsmbridge.io/cleanup: {finalizers}"
    );

    for name in ["drop", "keep", "cfg"] {
        fx.partitions()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting {name}: {e}"));
    }
    let fxr = &fx;
    for name in ["drop", "keep", "cfg"] {
        fx.eventually(
            &format!("HsmPartition {name} to be gone (finalizer removed)"),
            WAIT,
            || async move {
                match fxr.partition(name).await {
                    None => Ok(()),
                    Some(p) => Err(format!(
                        "still there: deletionTimestamp {}, finalizers {}, status {}",
                        p["metadata"]["deletionTimestamp"], p["metadata"]["finalizers"], p["status"]
                    )),
                }
            },
        )
        .await;
    }

    // Everything the operator made is gone by the time the partition is (nothing else deletes
    // it here: no garbage collector).
    let drop_left = leftovers(&fx, "drop", true).await;
    let keep_left = leftovers(&fx, "keep", false).await;
    let cfg_left = leftovers(&fx, "cfg", true).await;
    assert!(
        drop_left.is_empty() && keep_left.is_empty() && cfg_left.is_empty(),
        "left behind after deletion: drop {drop_left:?}, keep {keep_left:?}, cfg {cfg_left:?}\n{}",
        fx.diagnostics()
    );

    // retainCredentialsOnDelete: the Secret stays, with its PIN, and no longer points at the
    // deleted partition (a real cluster's garbage collector would delete it otherwise).
    let kept = fx
        .api::<Secret>()
        .get_opt("keep-credentials")
        .await
        .expect("get Secret");
    let kept = kept.expect("keep-credentials was deleted although retainCredentialsOnDelete: true");
    assert_eq!(
        kept.data
            .clone()
            .unwrap_or_default()
            .get("pin")
            .map(|b| b.0.clone())
            .as_ref(),
        Some(&kept_pin),
        "the retained PIN changed"
    );
    let refs = kept.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        !refs.iter().any(|r| r.uid == uids[1]),
        "the retained Secret still has an ownerReference to the deleted partition, so a garbage collector would delete it: {refs:?}"
    );
    tokens[1]
        .login(
            "user",
            &String::from_utf8_lossy(&kept.data.unwrap_or_default()["pin"].0),
        )
        .expect("the retained PIN still logs in");

    // Re-creating the partition adopts the retained credential: Ready without a new enrollment
    // (the setup password was spent; asking for another would be the loss the option avoids).
    let mut body = pkcs11_partition("keep", "keep");
    body["spec"]["retainCredentialsOnDelete"] = json!(true);
    fx.create_partition(&body).await;
    let p = fx.wait_condition("keep", "Ready", "True", Some("Ready")).await;
    let jobs = fx.enrollment_jobs("keep").await;
    assert!(
        jobs.is_empty(),
        "re-creating the partition started an enrollment although its credential was retained: {:?}",
        jobs.iter().map(|j| j.metadata.name.clone()).collect::<Vec<_>>()
    );
    let again = fx
        .secret_value("keep-credentials", "pin")
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    assert_eq!(
        again.as_deref(),
        Some(String::from_utf8_lossy(&kept_pin).as_ref()),
        "the adopted Secret's PIN changed: {}",
        p["status"]
    );

    // The user's own objects are not the operator's to delete.
    for s in ["drop-setup", "keep-setup", "cfg-setup"] {
        assert!(
            fx.api::<Secret>().get_opt(s).await.expect("get").is_some(),
            "the setup Secret {s} was deleted"
        );
    }
}
