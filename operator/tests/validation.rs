//! Invalid partitions: what the API server refuses at create time (the CRD's schema), and what
//! only the operator can judge (cross-field rules; kube-apiserver 1.20 has no CEL).

mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use serde_json::{json, Value};
use support::{condition, conditions_summary, int_at, pkcs11_partition, primus_partition, Fixture};

/// Applies `f` to a copy of `base`.
fn with(base: &Value, f: impl FnOnce(&mut Value)) -> Value {
    let mut v = base.clone();
    f(&mut v);
    v
}

fn remove(v: &mut Value, parent: &str, key: &str) {
    v.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {parent}"))
        .remove(key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_rejected_by_the_api_server() {
    // Schema validation is the API server's: no operator needed.
    let fx = Fixture::without_operator("validation").await;
    let pkcs11 = pkcs11_partition("bad", "t");
    let primus = primus_partition("bad");

    // Controls: the bases are valid, so each rejection below is due to its one change.
    for (i, base) in [&pkcs11, &primus].into_iter().enumerate() {
        let ok = with(base, |v| v["metadata"]["name"] = json!(format!("valid-{i}")));
        fx.create_partition(&ok).await;
    }
    // Vendor mechanisms from 0x80000000 on, beyond 32 bits too.
    let raw = with(&pkcs11, |v| {
        v["metadata"]["name"] = json!("valid-raw");
        v["spec"]["sidecar"]["rawParamMechanisms"] = json!([2147483648u64, 2147483649u64, 4294967296u64]);
    });
    let created = fx.create_partition(&raw).await;
    assert_eq!(
        created["spec"]["sidecar"]["rawParamMechanisms"],
        json!([2147483648u64, 2147483649u64, 4294967296u64])
    );

    // spec.sidecar.env and volumes: readOnly defaults to true; a hostPath is not in the schema and
    // is pruned (validate.rs then finds the volume without a source: see the test below).
    let module_env = with(&pkcs11, |v| {
        v["metadata"]["name"] = json!("valid-module-env");
        v["spec"]["sidecar"]["env"] = json!([{"name": "SOFTHSM2_CONF", "value": "/etc/softhsm/softhsm2.conf"}]);
        v["spec"]["sidecar"]["volumes"] = json!([
            {"name": "conf", "mountPath": "/etc/softhsm", "configMap": {"name": "softhsm-conf"},
             "hostPath": {"path": "/"}},
            {"name": "tokens", "mountPath": "/var/lib/softhsm/tokens", "readOnly": false,
             "persistentVolumeClaim": {"claimName": "softhsm-tokens"}}
        ]);
    });
    let created = fx.create_partition(&module_env).await;
    assert_eq!(
        created["spec"]["sidecar"]["volumes"],
        json!([
            {"name": "conf", "mountPath": "/etc/softhsm", "readOnly": true, "configMap": {"name": "softhsm-conf"}},
            {"name": "tokens", "mountPath": "/var/lib/softhsm/tokens", "readOnly": false,
             "persistentVolumeClaim": {"claimName": "softhsm-tokens"}}
        ])
    );

    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "sidecar env name with a dash",
            with(&pkcs11, |v| {
                v["spec"]["sidecar"]["env"] = json!([{"name": "A-B", "value": "1"}])
            }),
            vec!["spec.sidecar.env.name", "should match"],
        ),
        (
            "sidecar env without a value",
            with(&pkcs11, |v| v["spec"]["sidecar"]["env"] = json!([{"name": "A"}])),
            vec!["spec.sidecar.env.value", "Required value"],
        ),
        (
            "sidecar volume name in capitals",
            with(
                &pkcs11,
                |v| {
                    v["spec"]["sidecar"]["volumes"] =
                        json!([{"name": "Conf", "mountPath": "/etc/x", "configMap": {"name": "c"}}])
                },
            ),
            vec!["spec.sidecar.volumes.name", "should match"],
        ),
        (
            "sidecar volume at a relative path",
            with(
                &pkcs11,
                |v| {
                    v["spec"]["sidecar"]["volumes"] =
                        json!([{"name": "conf", "mountPath": "etc/x", "configMap": {"name": "c"}}])
                },
            ),
            vec!["spec.sidecar.volumes.mountPath", "should match"],
        ),
        (
            "unknown provider",
            with(&pkcs11, |v| v["spec"]["provider"] = json!("luna")),
            vec!["spec.provider", "Unsupported value", "luna"],
        ),
        (
            "unknown enrollment method",
            with(&pkcs11, |v| v["spec"]["enrollment"]["method"] = json!("magic")),
            vec!["spec.enrollment.method", "Unsupported value"],
        ),
        (
            "unknown pinMode",
            with(&pkcs11, |v| v["spec"]["pinMode"] = json!("sometimes")),
            vec!["spec.pinMode", "Unsupported value"],
        ),
        (
            "port 0",
            with(&primus, |v| v["spec"]["cluster"]["members"][0]["port"] = json!(0)),
            vec!["spec.cluster.members.port", "greater than or equal to 1"],
        ),
        (
            "port 65536",
            with(&primus, |v| v["spec"]["cluster"]["members"][1]["port"] = json!(65536)),
            vec!["spec.cluster.members.port", "less than or equal to 65535"],
        ),
        (
            "priority 200",
            with(&primus, |v| v["spec"]["cluster"]["members"][1]["priority"] = json!(200)),
            vec!["spec.cluster.members.priority", "less than or equal to 127"],
        ),
        (
            "negative slot id",
            with(&primus, |v| v["spec"]["cluster"]["slotId"] = json!(-1)),
            vec!["spec.cluster.slotId", "greater than or equal to 0"],
        ),
        (
            "no cluster members",
            with(&primus, |v| v["spec"]["cluster"]["members"] = json!([])),
            vec!["spec.cluster.members", "at least 1 items"],
        ),
        (
            "missing provider",
            with(&pkcs11, |v| remove(v, "/spec", "provider")),
            vec!["spec.provider", "Required value"],
        ),
        (
            "missing sidecar image",
            with(&pkcs11, |v| remove(v, "/spec/sidecar", "image")),
            vec!["spec.sidecar.image", "Required value"],
        ),
        (
            "missing module path",
            with(&pkcs11, |v| remove(v, "/spec/sidecar", "modulePath")),
            vec!["spec.sidecar.modulePath", "Required value"],
        ),
        (
            "missing enrollment",
            with(&pkcs11, |v| remove(v, "/spec", "enrollment")),
            vec!["spec.enrollment", "Required value"],
        ),
        (
            "missing setup password reference",
            with(&pkcs11, |v| remove(v, "/spec/enrollment", "setupPasswordSecretRef")),
            vec!["spec.enrollment.setupPasswordSecretRef", "Required value"],
        ),
        (
            "raw-parameter mechanism below CKM_VENDOR_DEFINED",
            with(&pkcs11, |v| {
                v["spec"]["sidecar"]["rawParamMechanisms"] = json!([2147483649u64, 4226])
            }),
            vec!["spec.sidecar.rawParamMechanisms", "greater than or equal to"],
        ),
        (
            "port as a word",
            with(&primus, |v| v["spec"]["cluster"]["members"][0]["port"] = json!("https")),
            vec!["spec.cluster.members.port", "Invalid value"],
        ),
    ];

    let api = fx.partitions();
    let mut failures = Vec::new();
    for (what, body, fragments) in &cases {
        // 1. Straight to the API server (what GitOps controllers do). kube-apiserver 1.20 names
        // fields inside list items without the index (spec.cluster.members.port).
        let obj: DynamicObject = serde_json::from_value(body.clone()).expect("partition JSON");
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {
                failures.push(format!("{what}: the API server ACCEPTED it"));
                let _ = api.delete("bad", &Default::default()).await;
                continue;
            }
            Err(kube::Error::Api(s)) => {
                let missing: Vec<&&str> = fragments.iter().filter(|f| !s.message.contains(**f)).collect();
                if s.code != 422 || !missing.is_empty() {
                    failures.push(format!(
                        "{what}: HTTP {} {:?}; message lacks {missing:?}: {}",
                        s.code, s.reason, s.message
                    ));
                } else {
                    eprintln!("{what}: rejected: {}", s.message);
                }
            }
            Err(e) => failures.push(format!("{what}: unexpected error {e}")),
        }
        // 2. `kubectl apply` (what a person does): refused, naming the field.
        let out = fx
            .api
            .kubectl(&["apply", "-n", &fx.ns, "-f", "-"], Some(&body.to_string()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let field = fragments[0]
            .rsplit('.')
            .next()
            .unwrap_or(fragments[0])
            .split('[')
            .next()
            .unwrap_or("");
        if out.status.success() || !stderr.contains(field) {
            failures.push(format!(
                "{what}: kubectl apply exited {} with stderr {stderr:?} (expected a refusal naming {field:?})",
                out.status
            ));
        }
    }
    let left = api.list(&ListParams::default()).await.expect("listing partitions");
    let names: Vec<String> = left.items.iter().filter_map(|o| o.metadata.name.clone()).collect();
    assert!(
        failures.is_empty(),
        "schema validation gaps:\n  {}",
        failures.join("\n  ")
    );
    assert_eq!(
        names,
        vec!["valid-0", "valid-1", "valid-module-env", "valid-raw"],
        "only the valid partitions may exist"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_field_errors_are_reported_as_invalid_spec() {
    let fx = Fixture::new("invalid-spec").await;
    fx.create_setup_secret("nocluster-setup", "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
        .await;
    fx.create_setup_secret("notoken-setup", "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
        .await;

    // provider primus without a cluster; pkcs11-init-pin without a token label. The API
    // server (no CEL in 1.20) accepts both; the operator must refuse them in status.
    let no_cluster = with(&primus_partition("nocluster"), |v| remove(v, "/spec", "cluster"));
    let no_token = pkcs11_partition("notoken", "x");
    let no_token = with(&no_token, |v| remove(v, "/spec", "token"));
    // A volume whose only source is a hostPath (pruned by the API server: not in the schema),
    // and an env name the operator sets itself.
    fx.create_setup_secret("hostpath-setup", "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
        .await;
    let host_path = with(&pkcs11_partition("hostpath", "t"), |v| {
        v["spec"]["sidecar"]["volumes"] = json!([{"name": "node", "mountPath": "/node", "hostPath": {"path": "/"}}]);
        v["spec"]["sidecar"]["env"] = json!([{"name": "HSMBRIDGE_SOCKET", "value": "/x"}]);
    });
    fx.create_partition(&no_cluster).await;
    fx.create_partition(&no_token).await;
    fx.create_partition(&host_path).await;

    for (name, field) in [
        ("nocluster", "cluster"),
        ("notoken", "token"),
        (
            "hostpath",
            "spec.sidecar.volumes[0] (\"node\") needs exactly one source",
        ),
        ("hostpath", "spec.sidecar.env[0].name \"HSMBRIDGE_SOCKET\" is reserved"),
    ] {
        let p = fx
            .wait_condition(name, "ConfigRendered", "False", Some("InvalidSpec"))
            .await;
        let c = condition(&p, "ConfigRendered").expect("ConfigRendered");
        eprintln!("{name}: ConfigRendered=False/InvalidSpec: {}", c.message);
        assert!(
            c.message.contains(field),
            "{name}: the InvalidSpec message must name `{field}`: {:?}",
            c.message
        );
        let ready =
            condition(&p, "Ready").unwrap_or_else(|| panic!("{name}: no Ready condition: {}", conditions_summary(&p)));
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ConfigNotRendered"),
            "{name}: {}",
            conditions_summary(&p)
        );
        assert_eq!(
            int_at(&p, "/status/observedGeneration"),
            int_at(&p, "/metadata/generation"),
            "{name}: observedGeneration"
        );
    }
    // An invalid partition never spends its setup password.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let jobs = fx.api::<Job>().list(&ListParams::default()).await.expect("jobs");
    let names: Vec<_> = jobs.items.iter().filter_map(|j| j.metadata.name.clone()).collect();
    assert!(
        names.is_empty(),
        "enrollment Jobs were created for invalid partitions: {names:?}"
    );

    // Fixing the spec is picked up (a new generation) and renders.
    let fix = json!({"spec": {"cluster": primus_partition("x")["spec"]["cluster"].clone()}});
    fx.partitions()
        .patch("nocluster", &PatchParams::default(), &Patch::Merge(&fix))
        .await
        .expect("patching the cluster in");
    let p = fx
        .wait_condition("nocluster", "ConfigRendered", "True", Some("Rendered"))
        .await;
    assert_eq!(
        int_at(&p, "/status/observedGeneration"),
        int_at(&p, "/metadata/generation"),
        "observedGeneration after the fix: {}",
        p["status"]
    );
    assert!(int_at(&p, "/metadata/generation") >= Some(2));
}
