//! Enrollment end to end on a real API server: the operator creates the Job, the test plays
//! the kubelet (runs `hsm-sidecar enroll` from the Job's pod spec against a SoftHSM token, with
//! the Job ServiceAccount's token), and the outcome is read back from the API server and the
//! token itself.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};
use support::softhsm::{SoftHsmToken, INITIAL_USER_PIN};
use support::{condition, conditions_summary, int_at, pkcs11_partition, sha256_hex, Fixture};

const SETUP_PASSWORD: &str = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE";
const WRONG_SETUP_PASSWORD: &str = "ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ";

/// Checks the Job of CONTRACT.md: name, backoffLimit 0, restartPolicy Never, its own
/// ServiceAccount, the `hsm-sidecar enroll` command line, the setup password only as a file.
fn check_job_shape(job: &Job, ns: &str, partition: &str, setup_password: &str) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let spec = job.spec.as_ref().unwrap_or_else(|| panic!("Job {name} has no spec"));
    assert_eq!(
        spec.backoff_limit,
        Some(0),
        "Job {name}: backoffLimit must be 0 (HSMs lock out after bad setup passwords)"
    );
    let pod = spec
        .template
        .spec
        .as_ref()
        .unwrap_or_else(|| panic!("Job {name} has no pod spec"));
    assert_eq!(
        pod.restart_policy.as_deref(),
        Some("Never"),
        "Job {name}: restartPolicy"
    );
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some(format!("{partition}-enroll").as_str()),
        "Job {name}: serviceAccountName"
    );
    let c = &pod.containers[0];
    let argv: Vec<String> = c
        .command
        .clone()
        .unwrap_or_default()
        .into_iter()
        .chain(c.args.clone().unwrap_or_default())
        .collect();
    let line = argv.join(" ");
    for want in [
        "hsm-sidecar enroll".to_owned(),
        "--method pkcs11-init-pin".to_owned(),
        format!("--module {}", support::paths::softhsm_module().display()),
        format!("--token {partition}"),
        "--setup-password-file /var/run/hsmbridge/setup/setup-password".to_owned(),
        format!("--secret {partition}-credentials"),
        format!("--namespace {ns}"),
    ] {
        assert!(
            line.contains(&want),
            "Job {name}: the command line lacks `{want}`: {line}"
        );
    }
    assert_eq!(
        c.image.as_deref(),
        Some(support::SIDECAR_IMAGE),
        "Job {name}: image must be spec.sidecar.image"
    );
    let whole = serde_json::to_string(job).expect("job JSON");
    assert!(
        !whole.contains(setup_password),
        "Job {name} carries the setup password in its spec: {whole}"
    );
    let setup_volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| {
            v.secret
                .as_ref()
                .is_some_and(|s| s.secret_name.as_deref() == Some(&format!("{partition}-setup")))
        })
        .unwrap_or_else(|| {
            panic!(
                "Job {name} mounts no volume of the setup Secret {partition}-setup: {:?}",
                pod.volumes
            )
        });
    let items = setup_volume
        .secret
        .as_ref()
        .and_then(|s| s.items.clone())
        .unwrap_or_default();
    assert!(
        items
            .iter()
            .any(|i| i.key == support::SETUP_KEY && i.path == "setup-password"),
        "Job {name}: the setup Secret volume must map key {} to setup-password: {items:?}",
        support::SETUP_KEY
    );
    let mode = items
        .iter()
        .find_map(|i| i.mode)
        .or(setup_volume.secret.as_ref().and_then(|s| s.default_mode));
    assert_eq!(
        mode,
        Some(0o400),
        "Job {name}: the setup password file must be mode 0400"
    );
    check_restricted(job);
}

/// The Job's pod meets the "restricted" Pod Security Standard, as stored by the API server: a
/// non-root user whose group (fsGroup) can read the 0400 setup-password file, no privilege
/// escalation, no capabilities, the runtime's seccomp profile, a read-only root filesystem;
/// and it is bounded in time and resources.
fn check_restricted(job: &Job) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let spec = job.spec.as_ref().unwrap_or_else(|| panic!("Job {name} has no spec"));
    assert!(
        spec.active_deadline_seconds.is_some_and(|s| s > 0 && s <= 3600),
        "Job {name}: activeDeadlineSeconds {:?}",
        spec.active_deadline_seconds
    );
    // ttlSecondsAfterFinished is asked for (owned_tests.rs), but kube-apiserver 1.20 drops it
    // unless the alpha TTLAfterFinished gate is on (beta, on by default, from 1.21).
    assert!(
        spec.ttl_seconds_after_finished.is_none_or(|s| s > 0),
        "Job {name}: ttlSecondsAfterFinished {:?}",
        spec.ttl_seconds_after_finished
    );
    let pod = spec
        .template
        .spec
        .as_ref()
        .unwrap_or_else(|| panic!("Job {name} has no pod spec"));
    let psc = pod
        .security_context
        .clone()
        .unwrap_or_else(|| panic!("Job {name}: no pod securityContext"));
    assert_eq!(psc.run_as_non_root, Some(true), "Job {name}: pod runAsNonRoot");
    let uid = psc.run_as_user.unwrap_or_else(|| panic!("Job {name}: pod runAsUser"));
    assert!(uid > 0, "Job {name}: runAsUser {uid}");
    assert_eq!(psc.run_as_group, Some(uid), "Job {name}: pod runAsGroup");
    assert_eq!(
        psc.fs_group,
        Some(uid),
        "Job {name}: fsGroup (the 0400 setup-password file is readable through it)"
    );
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault"),
        "Job {name}: pod seccompProfile"
    );
    assert!(!pod.host_network.unwrap_or(false) && !pod.host_pid.unwrap_or(false) && !pod.host_ipc.unwrap_or(false));
    for v in pod.volumes.iter().flatten() {
        assert!(
            v.secret.is_some() || v.config_map.is_some() || v.empty_dir.is_some(),
            "Job {name}: volume {} is not of a kind the restricted profile allows: {v:?}",
            v.name
        );
    }
    let c = &pod.containers[0];
    let sc = c
        .security_context
        .clone()
        .unwrap_or_else(|| panic!("Job {name}: no container securityContext"));
    assert_eq!(
        sc.allow_privilege_escalation,
        Some(false),
        "Job {name}: allowPrivilegeEscalation"
    );
    assert_eq!(sc.run_as_non_root, Some(true), "Job {name}: runAsNonRoot");
    assert_eq!(
        sc.read_only_root_filesystem,
        Some(true),
        "Job {name}: readOnlyRootFilesystem"
    );
    assert_ne!(sc.privileged, Some(true), "Job {name}: privileged");
    let caps = sc.capabilities.clone().unwrap_or_default();
    assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]), "Job {name}: capabilities.drop");
    assert!(caps.add.unwrap_or_default().is_empty(), "Job {name}: capabilities.add");
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault"),
        "Job {name}: container seccompProfile"
    );
    let resources = c
        .resources
        .clone()
        .unwrap_or_else(|| panic!("Job {name}: no resources"));
    for key in ["cpu", "memory"] {
        assert!(
            resources.requests.as_ref().is_some_and(|r| r.contains_key(key)),
            "Job {name}: requests.{key}"
        );
    }
    assert!(
        resources.limits.as_ref().is_some_and(|r| r.contains_key("memory")),
        "Job {name}: limits.memory"
    );
    let tmp = c.volume_mounts.iter().flatten().find(|m| m.mount_path == "/tmp");
    assert!(
        tmp.is_some(),
        "Job {name}: no writable /tmp under a read-only root filesystem"
    );
}

/// The Role may only get/update/patch the one credential Secret; the binding gives it to the
/// Job's ServiceAccount and nothing else.
async fn check_enroll_rbac(fx: &Fixture, partition: &str) {
    let role_name = format!("{partition}-enroll");
    let role = fx
        .api::<Role>()
        .get(&role_name)
        .await
        .unwrap_or_else(|e| panic!("Role {role_name}: {e}"));
    let rules = role.rules.clone().unwrap_or_default();
    assert_eq!(rules.len(), 1, "Role {role_name} must have exactly one rule: {rules:?}");
    let r = &rules[0];
    assert_eq!(
        r.api_groups.clone().unwrap_or_default(),
        vec![String::new()],
        "Role {role_name}: apiGroups"
    );
    assert_eq!(
        r.resources.clone().unwrap_or_default(),
        vec!["secrets".to_owned()],
        "Role {role_name}: resources"
    );
    assert_eq!(
        r.resource_names.clone().unwrap_or_default(),
        vec![format!("{partition}-credentials")],
        "Role {role_name}: resourceNames must be the credential Secret only"
    );
    let verbs: BTreeSet<String> = r.verbs.iter().cloned().collect();
    let allowed: BTreeSet<String> = ["get", "update", "patch"].iter().map(|s| s.to_string()).collect();
    assert!(
        verbs.is_subset(&allowed) && !verbs.is_empty(),
        "Role {role_name}: verbs {verbs:?} must be within {allowed:?}"
    );

    let rb = fx
        .api::<RoleBinding>()
        .get(&role_name)
        .await
        .unwrap_or_else(|e| panic!("RoleBinding {role_name}: {e}"));
    assert_eq!(
        (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
        ("Role", role_name.as_str()),
        "RoleBinding roleRef"
    );
    let subjects = rb.subjects.clone().unwrap_or_default();
    assert!(
        subjects.len() == 1
            && subjects[0].kind == "ServiceAccount"
            && subjects[0].name == role_name
            && subjects[0].namespace.as_deref() == Some(fx.ns.as_str()),
        "RoleBinding {role_name} must bind only ServiceAccount {}/{role_name}: {subjects:?}",
        fx.ns
    );
    // What the API server's authorizer says (the real check, beyond the object's text).
    let sa = format!("{partition}-enroll");
    assert!(
        fx.can_i(&sa, "update", &format!("secrets/{partition}-credentials")),
        "{sa} cannot update its credential Secret"
    );
    assert!(
        !fx.can_i(&sa, "get", &format!("secrets/{partition}-setup")),
        "{sa} can read the setup Secret (it gets it as a volume only)"
    );
    assert!(!fx.can_i(&sa, "list", "secrets"), "{sa} can list Secrets");
    assert!(!fx.can_i(&sa, "create", "secrets"), "{sa} can create Secrets");
    assert!(
        !fx.can_i(&sa, "update", "secrets/someone-elses"),
        "{sa} can update other Secrets"
    );
}

/// Every object the operator made for the partition carries an ownerReference to it.
async fn check_owner_references(fx: &Fixture, partition: &str, uid: &str, job: &str) {
    let owned =
        |kind: &str, name: &str, refs: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>| {
            let refs = refs.unwrap_or_default();
            assert!(
                refs.iter()
                    .any(|r| r.uid == uid && r.kind == "HsmPartition" && r.name == partition),
                "{kind} {name} has no ownerReference to HsmPartition {partition} (uid {uid}): {refs:?}"
            );
        };
    let n = format!("{partition}-enroll");
    let c = format!("{partition}-credentials");
    owned(
        "Secret",
        &c,
        fx.api::<Secret>()
            .get(&c)
            .await
            .expect("credential Secret")
            .metadata
            .owner_references,
    );
    owned(
        "ServiceAccount",
        &n,
        fx.api::<ServiceAccount>()
            .get(&n)
            .await
            .expect("ServiceAccount")
            .metadata
            .owner_references,
    );
    owned(
        "Role",
        &n,
        fx.api::<Role>().get(&n).await.expect("Role").metadata.owner_references,
    );
    owned(
        "RoleBinding",
        &n,
        fx.api::<RoleBinding>()
            .get(&n)
            .await
            .expect("RoleBinding")
            .metadata
            .owner_references,
    );
    owned(
        "Job",
        job,
        fx.api::<Job>().get(job).await.expect("Job").metadata.owner_references,
    );
}

fn expected_job_name(partition: &str, setup_version: &str) -> String {
    format!("{partition}-enroll-{}", &sha256_hex(setup_version)[..8])
}

fn pin_of(v: Option<Vec<u8>>) -> String {
    String::from_utf8(v.expect("the credential Secret has no `pin`")).expect("the PIN is UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_writes_a_pin_that_logs_in() {
    let fx = Fixture::new("enroll-ok").await;
    let token = SoftHsmToken::new("payments", SETUP_PASSWORD);
    let setup_version = fx.create_setup_secret("payments-setup", SETUP_PASSWORD).await;
    let created = fx.create_partition(&pkcs11_partition("payments", "payments")).await;
    let uid = created["metadata"]["uid"].as_str().expect("uid").to_owned();

    let job_name = fx.wait_for_new_job("payments", &[]).await;
    assert_eq!(
        job_name,
        expected_job_name("payments", &setup_version),
        "Job name must be <name>-enroll-<8 hex of sha256(setup Secret resourceVersion)>"
    );
    let job = fx.api::<Job>().get(&job_name).await.expect("the Job");
    check_job_shape(&job, &fx.ns, "payments", SETUP_PASSWORD);

    // While the Job has not run: not enrolled, not ready, the credential Secret exists and is empty.
    let p = fx.wait_condition("payments", "Enrolled", "False", None).await;
    let enrolled = condition(&p, "Enrolled").expect("Enrolled condition");
    assert!(
        ["EnrollmentPending", "EnrollmentRunning"].contains(&enrolled.reason.as_str()),
        "Enrolled reason while the Job is pending: {}",
        conditions_summary(&p)
    );
    let ready = condition(&p, "Ready").expect("Ready condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NotEnrolled"),
        "{}",
        conditions_summary(&p)
    );
    let empty = fx
        .api::<Secret>()
        .get("payments-credentials")
        .await
        .expect("the operator creates the credential Secret (empty) before the Job runs");
    assert!(
        !empty.data.unwrap_or_default().contains_key("pin"),
        "the credential Secret has a pin before enrollment ran"
    );
    // Generations before enrollment: no credential yet (0), the provider ConfigMap rendered once.
    fx.eventually("status generations before enrollment", support::WAIT, || {
        let fx = &fx;
        async move {
            let p = fx.partition("payments").await.ok_or("gone")?;
            match (
                int_at(&p, "/status/credentialGeneration"),
                int_at(&p, "/status/configGeneration"),
            ) {
                (Some(0), Some(1)) => Ok(()),
                other => Err(format!(
                    "(credentialGeneration, configGeneration) {other:?}: {}",
                    p["status"]
                )),
            }
        }
    })
    .await;
    check_enroll_rbac(&fx, "payments").await;
    check_owner_references(&fx, "payments", &uid, &job_name).await;

    let run = fx.play_enrollment(&job_name, &token).await;
    assert_eq!(run.code(), Some(0), "enrollment failed:\n{}", run.describe());

    let p = fx.wait_condition("payments", "Ready", "True", Some("Ready")).await;
    let generation = int_at(&p, "/metadata/generation").expect("generation");
    for (t, reason) in [
        ("ConfigRendered", "Rendered"),
        ("Enrolled", "Enrolled"),
        ("Ready", "Ready"),
    ] {
        let c = condition(&p, t).unwrap_or_else(|| panic!("no {t} condition: {}", conditions_summary(&p)));
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", reason),
            "{t}: {}",
            conditions_summary(&p)
        );
    }
    assert_eq!(
        int_at(&p, "/status/observedGeneration"),
        Some(generation),
        "status.observedGeneration: {}",
        p["status"]
    );
    assert_eq!(
        p.pointer("/status/credentialSecret").and_then(Value::as_str),
        Some("payments-credentials"),
        "status.credentialSecret"
    );
    assert_eq!(
        int_at(&p, "/status/enrollment/attempts"),
        Some(1),
        "status.enrollment.attempts: {}",
        p["status"]
    );
    assert_eq!(
        p.pointer("/status/enrollment/setupPasswordVersion")
            .and_then(Value::as_str),
        Some(setup_version.as_str()),
        "status.enrollment.setupPasswordVersion"
    );
    assert_eq!(
        p.pointer("/status/enrollment/job").and_then(Value::as_str),
        Some(job_name.as_str()),
        "status.enrollment.job"
    );
    // The enrollment wrote generation 1 with the pin; the status shows it.
    assert_eq!(
        fx.secret_value("payments-credentials", "generation").await.as_deref(),
        Some(&b"1"[..]),
        "the credential Secret's generation after the first enrollment"
    );
    assert_eq!(
        int_at(&p, "/status/credentialGeneration"),
        Some(1),
        "status.credentialGeneration: {}",
        p["status"]
    );
    assert_eq!(int_at(&p, "/status/configGeneration"), Some(1), "{}", p["status"]);

    // The PIN in the Secret is the token's user PIN now; the initial one is gone.
    let pin = pin_of(fx.secret_value("payments-credentials", "pin").await);
    assert!(pin.len() >= 16, "the permanent secret is short ({} chars)", pin.len());
    token
        .login("user", &pin)
        .unwrap_or_else(|e| panic!("the enrolled PIN does not log in: {e}"));
    assert!(
        token.login("user", INITIAL_USER_PIN).is_err(),
        "the token's initial user PIN still works after enrollment"
    );
    let secret = fx
        .api::<Secret>()
        .get("payments-credentials")
        .await
        .expect("credential Secret");
    let annotations = secret.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key("hsmbridge.io/enrollment-error"),
        "enrollment-error annotation after success: {annotations:?}"
    );

    let fxr = &fx;
    let events = fx
        .eventually("Events about HsmPartition payments", support::WAIT, || async {
            let ev = fxr.events_for("payments").await;
            if ev.is_empty() {
                Err("none".to_owned())
            } else {
                Ok(ev)
            }
        })
        .await;
    eprintln!(
        "events: {:?}",
        events
            .iter()
            .map(|e| (e.reason.clone(), e.message.clone()))
            .collect::<Vec<_>>()
    );

    // Never enrolls twice: more reconciles leave the one Job and the PIN alone.
    for n in 1..=3 {
        fx.touch("payments", n).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let jobs = fx.enrollment_jobs("payments").await;
    assert_eq!(
        jobs.len(),
        1,
        "Jobs after more reconciles: {:?}",
        jobs.iter().map(|j| j.metadata.name.clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        pin_of(fx.secret_value("payments-credentials", "pin").await),
        pin,
        "the PIN changed after more reconciles"
    );
    let p = fx.partition("payments").await.expect("partition");
    assert_eq!(
        int_at(&p, "/status/enrollment/attempts"),
        Some(1),
        "attempts after more reconciles: {}",
        p["status"]
    );
    assert_eq!(
        condition(&p, "Ready").map(|c| c.status),
        Some("True".to_owned()),
        "{}",
        conditions_summary(&p)
    );
    assert_eq!(
        (
            int_at(&p, "/status/credentialGeneration"),
            int_at(&p, "/status/configGeneration")
        ),
        (Some(1), Some(1)),
        "generations after more reconciles: {}",
        p["status"]
    );

    // An administrator who rotates the Secret by hand bumps data.generation: the status follows.
    fx.api::<Secret>()
        .patch(
            "payments-credentials",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"generation": "2"}})),
        )
        .await
        .expect("bumping the credential Secret's generation");
    fx.eventually("status.credentialGeneration 2", support::WAIT, || {
        let fx = &fx;
        async move {
            let p = fx.partition("payments").await.ok_or("gone")?;
            match int_at(&p, "/status/credentialGeneration") {
                Some(2) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;

    // Someone deletes the credential Secret: the setup password is spent, so the operator must
    // not enroll again on its own (that would fail and count towards the HSM's lockout); it
    // reports the partition as not enrolled instead.
    fx.api::<Secret>()
        .delete("payments-credentials", &kube::api::DeleteParams::default())
        .await
        .expect("deleting the credential Secret");
    let p = fx.wait_condition("payments", "Enrolled", "False", None).await;
    eprintln!("after the credential Secret was deleted: {}", conditions_summary(&p));
    assert_eq!(
        condition(&p, "Ready").map(|c| c.status),
        Some("False".to_owned()),
        "{}",
        conditions_summary(&p)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let jobs = fx.enrollment_jobs("payments").await;
    assert_eq!(
        jobs.len(),
        1,
        "losing the credential Secret started another enrollment: {:?}",
        jobs.iter().map(|j| j.metadata.name.clone()).collect::<Vec<_>>()
    );
    let p = fx.partition("payments").await.expect("partition");
    assert_eq!(
        int_at(&p, "/status/enrollment/attempts"),
        Some(1),
        "attempts after the Secret was deleted: {}",
        p["status"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_setup_password_is_not_retried_until_the_secret_changes() {
    let mut fx = Fixture::new("enroll-rejected").await;
    let token = SoftHsmToken::new("payments", SETUP_PASSWORD);
    let v1 = fx.create_setup_secret("payments-setup", WRONG_SETUP_PASSWORD).await;
    fx.create_partition(&pkcs11_partition("payments", "payments")).await;

    let job1 = fx.wait_for_new_job("payments", &[]).await;
    assert_eq!(job1, expected_job_name("payments", &v1));
    let run = fx.play_enrollment(&job1, &token).await;
    assert_eq!(
        run.code(),
        Some(3),
        "a wrong setup password must exit 3 (CONTRACT.md):\n{}",
        run.describe()
    );
    let secret = fx
        .api::<Secret>()
        .get("payments-credentials")
        .await
        .expect("credential Secret");
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("hsmbridge.io/enrollment-error").map(String::as_str),
        Some("SetupPasswordRejected"),
        "the Job must annotate the credential Secret with the failure: {annotations:?}\n{}",
        run.describe()
    );
    assert!(
        !secret.data.unwrap_or_default().contains_key("pin"),
        "a pin was written although enrollment failed"
    );

    let p = fx
        .wait_condition("payments", "Enrolled", "False", Some("SetupPasswordRejected"))
        .await;
    let c = condition(&p, "Enrolled").expect("Enrolled");
    eprintln!("Enrolled=False/SetupPasswordRejected: {}", c.message);
    assert!(
        c.message.contains("payments-setup"),
        "the SetupPasswordRejected message must say which Secret to update (payments-setup): {:?}",
        c.message
    );
    assert!(
        !c.message.contains(WRONG_SETUP_PASSWORD),
        "the message leaks the setup password: {:?}",
        c.message
    );
    let ready = condition(&p, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NotEnrolled"),
        "{}",
        conditions_summary(&p)
    );
    assert_eq!(
        int_at(&p, "/status/enrollment/attempts"),
        Some(1),
        "attempts: {}",
        p["status"]
    );

    // Force reconciles: label changes, then an operator restart (a fresh process re-lists all).
    let before = support::operator::metric_sum(&fx.metrics(), "hsm_operator_reconciles_total");
    for n in 1..=3 {
        fx.touch("payments", n).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let after_touch = support::operator::metric_sum(&fx.metrics(), "hsm_operator_reconciles_total");
    eprintln!("reconciles before touching: {before:?}, after: {after_touch:?}");
    fx.kill_operator();
    fx.start_operator();
    // The restarted operator has reconciled the partition (it lists everything on start); give
    // it a moment more in case a retry were (wrongly) scheduled.
    let fxr = &fx;
    let restarted = fx
        .eventually("the restarted operator to reconcile", support::WAIT, || async move {
            match support::operator::metric_sum(&fxr.metrics(), "hsm_operator_reconciles_total") {
                Some(n) if n >= 1.0 => Ok(n),
                other => Err(format!("hsm_operator_reconciles_total {other:?}")),
            }
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!("reconciles by the restarted operator: {restarted}");

    let jobs: Vec<String> = fx
        .enrollment_jobs("payments")
        .await
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    assert_eq!(
        jobs,
        vec![job1.clone()],
        "a rejected setup password was retried (Jobs: {jobs:?})\n{}",
        fx.diagnostics()
    );
    let p = fx.partition("payments").await.expect("partition");
    assert_eq!(
        int_at(&p, "/status/enrollment/attempts"),
        Some(1),
        "attempts after forced reconciles: {}",
        p["status"]
    );
    let c = condition(&p, "Enrolled").expect("Enrolled");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "SetupPasswordRejected"),
        "{}",
        conditions_summary(&p)
    );

    // A TTL controller (or a person) deletes the failed Job: still no retry.
    fx.api::<Job>()
        .delete(&job1, &kube::api::DeleteParams::background())
        .await
        .expect("deleting the failed Job");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let jobs: Vec<String> = fx
        .enrollment_jobs("payments")
        .await
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    assert!(
        jobs.is_empty(),
        "deleting the failed Job made the operator retry the rejected setup password: {jobs:?}"
    );
    let p = fx.partition("payments").await.expect("partition");
    assert_eq!(
        int_at(&p, "/status/enrollment/attempts"),
        Some(1),
        "attempts after the Job was deleted: {}",
        p["status"]
    );
    assert_eq!(
        condition(&p, "Enrolled").map(|c| c.reason),
        Some("SetupPasswordRejected".to_owned()),
        "{}",
        conditions_summary(&p)
    );

    // A new setup password (the Secret changes): one new Job, and it enrolls.
    let v2 = fx.update_setup_secret("payments-setup", SETUP_PASSWORD).await;
    assert_ne!(v1, v2);
    let job2 = fx.wait_for_new_job("payments", std::slice::from_ref(&job1)).await;
    assert_eq!(job2, expected_job_name("payments", &v2));
    let run = fx.play_enrollment(&job2, &token).await;
    assert_eq!(
        run.code(),
        Some(0),
        "enrollment with the new setup password failed:\n{}",
        run.describe()
    );
    let p = fx.wait_condition("payments", "Ready", "True", Some("Ready")).await;
    assert_eq!(
        condition(&p, "Enrolled").map(|c| c.reason),
        Some("Enrolled".to_owned()),
        "{}",
        conditions_summary(&p)
    );
    eprintln!("status after the second setup password: {}", p["status"]);
    let pin = pin_of(fx.secret_value("payments-credentials", "pin").await);
    token
        .login("user", &pin)
        .unwrap_or_else(|e| panic!("the enrolled PIN does not log in: {e}"));
    let secret = fx
        .api::<Secret>()
        .get("payments-credentials")
        .await
        .expect("credential Secret");
    let annotations = secret.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key("hsmbridge.io/enrollment-error"),
        "the failure annotation survived a successful enrollment: {annotations:?}"
    );
    let jobs: Vec<String> = fx
        .enrollment_jobs("payments")
        .await
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    assert_eq!(jobs, vec![job2], "Jobs after the second enrollment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_restart_mid_enrollment_loses_nothing() {
    let mut fx = Fixture::new("enroll-restart").await;
    let token = SoftHsmToken::new("payments", SETUP_PASSWORD);
    fx.create_setup_secret("payments-setup", SETUP_PASSWORD).await;
    fx.create_partition(&pkcs11_partition("payments", "payments")).await;

    // The operator dies as soon as the Job exists; the Job runs while no operator is up.
    let job = fx.wait_for_new_job("payments", &[]).await;
    fx.kill_operator();
    let run = fx.play_enrollment(&job, &token).await;
    assert_eq!(run.code(), Some(0), "enrollment failed:\n{}", run.describe());

    fx.start_operator();
    let p = fx.wait_condition("payments", "Ready", "True", Some("Ready")).await;
    let jobs: Vec<String> = fx
        .enrollment_jobs("payments")
        .await
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    assert_eq!(jobs, vec![job.clone()], "the restarted operator created another Job");
    assert_eq!(
        int_at(&p, "/status/enrollment/attempts"),
        Some(1),
        "attempts: {}",
        p["status"]
    );
    let pin = pin_of(fx.secret_value("payments-credentials", "pin").await);
    token
        .login("user", &pin)
        .unwrap_or_else(|e| panic!("the enrolled PIN does not log in: {e}"));
}
