//! Denials: every reason a pod is refused, with the text `kubectl create` prints.

use super::super::test_support::*;

#[test]
fn containers_annotation_limits_the_shim() {
    let mut p = pod(json!({
        "metadata": {"name": "x", "namespace": NS,
            "labels": {"hsmbridge.io/inject": "true"},
            "annotations": {"hsmbridge.io/partition": "payments", "hsmbridge.io/containers": "worker"}},
        "spec": {"serviceAccountName": "payments-api",
            "initContainers": [{"name": "fetch-cert", "image": "f:1"}],
            "containers": [{"name": "app", "image": "a:1"}, {"name": "worker", "image": "w:1"}]}
    }));
    let parts = partitions(vec![partition("payments", json!({}))]);
    let out = injected(&p, &parts, OLD);
    let spec = out.spec.as_ref().expect("spec");
    let app = regular(spec, "app");
    assert_eq!(app.env, None);
    assert_eq!(app.volume_mounts, None);
    let worker = regular(spec, "worker");
    assert_eq!(
        env(worker).len(),
        3,
        "HSMBRIDGE_SOCKET, PKCS11_MODULE_PATH, HSMBRIDGE_CONTAINER"
    );

    let set = |p: &mut Pod, v: &str| {
        p.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert("hsmbridge.io/containers".into(), v.into());
    };
    set(&mut p, "worker,nope");
    let d = denial(&p, &parts, OLD);
    assert_eq!(
        d.to_string(),
        "annotation hsmbridge.io/containers names \"nope\", which is not a container of this pod (containers: app, worker, fetch-cert)"
    );

    set(&mut p, "fetch-cert");
    let d = denial(&p, &parts, OLD);
    assert!(matches!(d, Denial::InitContainerNeedsNativeSidecar { .. }), "{d}");
    assert!(d.to_string().contains("native sidecars (Kubernetes 1.29+"), "{d}");

    // With native sidecars the sidecar runs before the app's init containers.
    let out = injected(&p, &parts, NEW);
    let spec = out.spec.as_ref().expect("spec");
    let init: Vec<&str> = spec.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(init, ["hsmbridge-shim", "hsm-sidecar", "fetch-cert"]);
    // An init container named by the annotation uses the shim like an app container.
    let fetch = env(container(&spec.init_containers, "fetch-cert"));
    assert_eq!(fetch.len(), 3, "{fetch:?}");
    assert_eq!(fetch["HSMBRIDGE_CONTAINER"], "fetch-cert");
    assert_eq!(regular(spec, "app").env, None);
}

#[test]
fn unknown_partition_is_denied() {
    let d = denial(&app_pod(), &BTreeMap::new(), OLD);
    assert_eq!(
        d.to_string(),
        "HsmPartition \"payments\" not found in namespace \"team-a\" (annotation hsmbridge.io/partition): create it, or fix the annotation; `kubectl -n team-a get hsmpartitions` lists the partitions"
    );
}

#[test]
fn partition_not_ready_is_denied_with_its_reason() {
    let part = partition(
        "payments",
        json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "NotEnrolled",
            "message": "setup password rejected by the HSM; put a new one in Secret payments-setup",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
    );
    let d = denial(&app_pod(), &partitions(vec![part]), OLD);
    assert_eq!(
        d.to_string(),
        "HsmPartition team-a/payments is not Ready (Ready=False, reason NotEnrolled: setup password rejected by the HSM; put a new one in Secret payments-setup); see `kubectl -n team-a describe hsmpartition payments`"
    );

    let part = partition("payments", json!({"status": null}));
    let d = denial(&app_pod(), &partitions(vec![part]), OLD);
    assert!(
        d.to_string()
            .contains("no Ready condition yet: is hsm-operator running?"),
        "{d}"
    );

    let part = partition(
        "payments",
        json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
    );
    let d = denial(&app_pod(), &partitions(vec![part]), OLD);
    assert_eq!(d.to_string(), "HsmPartition team-a/payments is being deleted");
}

#[test]
fn service_account_must_be_allowed() {
    let mut p = app_pod();
    p.spec.as_mut().expect("spec").service_account_name = None;
    let d = denial(&p, &partitions(vec![partition("payments", json!({}))]), OLD);
    assert_eq!(
        d.to_string(),
        "ServiceAccount \"default\" may not use HsmPartition team-a/payments: its spec.serviceAccounts allows \"payments-api\"; run the pod as one of them, or add \"default\" to the partition"
    );
    // The deprecated field still names the ServiceAccount.
    p.spec.as_mut().expect("spec").service_account = Some("payments-api".into());
    injected(&p, &partitions(vec![partition("payments", json!({}))]), OLD);
    // An empty list allows every ServiceAccount.
    p.spec.as_mut().expect("spec").service_account = Some("other".into());
    let open = partition("payments", json!({"spec": {"serviceAccounts": null}}));
    injected(&p, &partitions(vec![open]), OLD);
}

#[test]
fn reserved_names_and_mount_paths_are_denied() {
    let parts = partitions(vec![partition("payments", json!({}))]);
    let mut p = app_pod();
    p.spec.as_mut().expect("spec").containers.push(Container {
        name: "hsm-sidecar".into(),
        ..Container::default()
    });
    let d = denial(&p, &parts, OLD);
    assert!(matches!(d, Denial::NameTaken { kind: "container", .. }), "{d}");

    let mut p = app_pod();
    p.spec.as_mut().expect("spec").volumes = Some(vec![Volume {
        name: "hsmbridge-socket".into(),
        ..Volume::default()
    }]);
    let d = denial(&p, &parts, OLD);
    assert!(
        d.to_string()
            .starts_with("the pod already has a volume named \"hsmbridge-socket\""),
        "{d}"
    );

    let mut p = app_pod();
    p.spec.as_mut().expect("spec").containers[0].volume_mounts = Some(vec![k8s_openapi::api::core::v1::VolumeMount {
        name: "x".into(),
        mount_path: "/var/run/hsmbridge/".into(),
        ..Default::default()
    }]);
    let d = denial(&p, &parts, OLD);
    assert_eq!(
        d.to_string(),
        "container \"app\" already mounts a volume at /var/run/hsmbridge, where hsmbridge mounts the sidecar's socket"
    );
}

#[test]
fn long_second_partition_name_is_denied() {
    let long = "a".repeat(60);
    let mut p = app_pod();
    p.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("hsmbridge.io/partition".into(), format!("payments,{long}"));
    let parts = partitions(vec![partition("payments", json!({})), partition(&long, json!({}))]);
    assert!(matches!(denial(&p, &parts, OLD), Denial::NameTooLong { .. }));
}

#[test]
fn pod_without_spec_is_denied_not_patched() {
    let mut p = app_pod();
    p.spec = None;
    assert_eq!(
        denial(&p, &partitions(vec![partition("payments", json!({}))]), OLD),
        Denial::NoSpec
    );
}

#[test]
fn a_shared_process_namespace_is_denied() {
    let parts = partitions(vec![partition("payments", json!({}))]);
    let mut p = app_pod();
    p.spec.as_mut().expect("spec").share_process_namespace = Some(true);
    let d = denial(&p, &parts, NEW);
    assert_eq!(d, Denial::SharedProcessNamespace);
    let text = d.to_string();
    assert!(
        text.starts_with("the pod sets spec.shareProcessNamespace: true"),
        "{text}"
    );
    assert!(text.contains("credential"), "{text}");
    assert_eq!(precheck(&p), Err(Denial::SharedProcessNamespace));
    // false or unset is fine.
    p.spec.as_mut().expect("spec").share_process_namespace = Some(false);
    injected(&p, &parts, NEW);
}

#[test]
fn pods_with_too_many_containers_are_denied() {
    let parts = partitions(vec![partition("payments", json!({}))]);
    let mut p = app_pod();
    let spec = p.spec.as_mut().expect("spec");
    spec.containers = (0..40)
        .map(|i| Container {
            name: format!("c{i}"),
            image: Some("app:1".into()),
            ..Container::default()
        })
        .collect();
    spec.init_containers = Some(
        (0..25)
            .map(|i| Container {
                name: format!("i{i}"),
                image: Some("app:1".into()),
                ..Container::default()
            })
            .collect(),
    );
    assert_eq!(denial(&p, &parts, OLD), Denial::TooManyContainers { count: 65 });
    p.spec.as_mut().expect("spec").init_containers = None;
    injected(&p, &parts, OLD);
}
