use std::collections::BTreeMap;

use json_patch::PatchOperation;
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use serde_json::json;

use super::*;
use crate::crd::HsmPartition;
use crate::webhook::annotations::{self, InjectRequest, Parsed, SidecarMode};

const NS: &str = "team-a";
const OLD: ServerCaps = ServerCaps {
    native_sidecars: false,
    grpc_probes: false,
    native_sidecars_forcible: false,
};
/// 1.28: the field exists behind a feature gate; native only when forced.
const GATED: ServerCaps = ServerCaps {
    native_sidecars: false,
    grpc_probes: true,
    native_sidecars_forcible: true,
};
const NEW: ServerCaps = ServerCaps {
    native_sidecars: true,
    grpc_probes: true,
    native_sidecars_forcible: true,
};

fn settings() -> Settings {
    Settings {
        shim_image: "registry.example/hsmbridge-shim:1.0".into(),
        shim_source_path: "/usr/lib/hsmbridge/libhsmbridge_pkcs11.so".into(),
        health_port: 17310,
        run_as_user: 65532,
        resources: None,
    }
}

fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).expect("test pod")
}

/// A labelled pod with one app container `app`.
fn app_pod() -> Pod {
    pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "signer", "namespace": NS,
            "labels": {"hsmbridge.io/inject": "true"},
            "annotations": {"hsmbridge.io/partition": "payments"}},
        "spec": {"serviceAccountName": "payments-api",
            "containers": [{"name": "app", "image": "app:1"}]}
    }))
}

fn partition(name: &str, extra: serde_json::Value) -> HsmPartition {
    let mut value = json!({
        "apiVersion": "hsmbridge.io/v1alpha1", "kind": "HsmPartition",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "provider": "primus",
            "sidecar": {"image": "registry.example/hsm-sidecar-primus:1.0",
                        "modulePath": "/usr/local/primus/lib/libprimusP11.so"},
            "cluster": {"members": [{"host": "hsm1.example.net"}], "user": "PAYMENTS"},
            "enrollment": {"method": "ppin",
                           "setupPasswordSecretRef": {"name": "payments-setup", "key": "setup-password"}},
            "serviceAccounts": ["payments-api"]
        },
        "status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]}
    });
    json_patch::merge(&mut value, &extra);
    serde_json::from_value(value).expect("test partition")
}

fn partitions(list: Vec<HsmPartition>) -> BTreeMap<String, HsmPartition> {
    list.into_iter()
        .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
        .collect()
}

fn request_of(pod: &Pod) -> InjectRequest {
    match annotations::parse(&pod.metadata) {
        Ok(Parsed::Inject(r)) => r,
        other => panic!("not an injection request: {other:?}"),
    }
}

/// Injects and applies the patch the way the API server does; returns the stored pod.
fn injected(pod: &Pod, parts: &BTreeMap<String, HsmPartition>, caps: ServerCaps) -> Pod {
    let patch = inject(pod, NS, &request_of(pod), parts, &settings(), caps).expect("injection");
    assert!(
        patch.0.iter().all(|op| matches!(op, PatchOperation::Add(_))),
        "the patch only adds: {patch:?}"
    );
    // Through the wire format, as the API server receives it.
    let patch: json_patch::Patch =
        serde_json::from_slice(&serde_json::to_vec(&patch).expect("serialize")).expect("parse");
    let mut doc = serde_json::to_value(pod).expect("pod to json");
    json_patch::patch(&mut doc, &patch).expect("patch applies");
    serde_json::from_value(doc).expect("patched pod")
}

fn denial(pod: &Pod, parts: &BTreeMap<String, HsmPartition>, caps: ServerCaps) -> Denial {
    inject(pod, NS, &request_of(pod), parts, &settings(), caps).expect_err("denied")
}

fn container<'a>(list: &'a Option<Vec<Container>>, name: &str) -> &'a Container {
    list.iter()
        .flatten()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn regular<'a>(spec: &'a k8s_openapi::api::core::v1::PodSpec, name: &str) -> &'a Container {
    spec.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn volume<'a>(pod: &'a Pod, name: &str) -> &'a Volume {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn env(c: &Container) -> BTreeMap<String, String> {
    c.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

fn mounts(c: &Container) -> BTreeMap<String, (String, bool)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), (m.mount_path.clone(), m.read_only.unwrap_or(false))))
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn old_server_gets_a_regular_sidecar_container_first() {
    let out = injected(&app_pod(), &partitions(vec![partition("payments", json!({}))]), OLD);
    let spec = out.spec.as_ref().expect("spec");
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["hsm-sidecar", "app"]);
    let init: Vec<&str> = spec.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(init, ["hsmbridge-shim"]);

    let sidecar = &spec.containers[0];
    assert_eq!(
        sidecar.image.as_deref(),
        Some("registry.example/hsm-sidecar-primus:1.0")
    );
    assert_eq!(
        sidecar.command.as_deref(),
        Some(
            &strings(&[
                "hsm-sidecar",
                "serve",
                "--module",
                "/usr/local/primus/lib/libprimusP11.so",
                "--socket",
                "/var/run/hsmbridge/pkcs11.sock",
                "--pin-file",
                "/etc/hsmbridge/credentials/pin",
                "--health-addr",
                "0.0.0.0:17310",
            ])[..]
        )
    );
    assert_eq!(sidecar.restart_policy, None);
    assert_eq!(sidecar.startup_probe, None);
    let probe = sidecar.readiness_probe.as_ref().expect("readiness probe");
    assert_eq!(probe.grpc, None, "1.20 has no gRPC probes");
    assert_eq!(
        probe.tcp_socket.as_ref().map(|t| t.port.clone()),
        Some(IntOrString::Int(17310))
    );
    assert_eq!(
        env(sidecar),
        BTreeMap::from([
            (
                "SECUROSYS_PKCS11_CONF".into(),
                "/etc/hsmbridge/provider/primus.cfg".into()
            ),
            (
                "SECUROSYS_SECRETS_CONF".into(),
                "/etc/hsmbridge/credentials/secrets.cfg".into()
            ),
        ])
    );
    assert_eq!(
        mounts(sidecar),
        BTreeMap::from([
            ("hsmbridge-socket".into(), ("/var/run/hsmbridge".into(), false)),
            (
                "hsmbridge-credentials".into(),
                ("/etc/hsmbridge/credentials".into(), true)
            ),
            ("hsmbridge-provider".into(), ("/etc/hsmbridge/provider".into(), true)),
            ("hsmbridge-tmp".into(), ("/tmp".into(), false)),
        ])
    );
    let sc = sidecar.security_context.as_ref().expect("securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(strings(&["ALL"]))
    );
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );

    let shim = container(&spec.init_containers, "hsmbridge-shim");
    assert_eq!(shim.image.as_deref(), Some("registry.example/hsmbridge-shim:1.0"));
    assert_eq!(
        shim.command.as_deref(),
        Some(
            &strings(&[
                "cp",
                "/usr/lib/hsmbridge/libhsmbridge_pkcs11.so",
                "/opt/hsmbridge/lib/libhsmbridge_pkcs11.so",
            ])[..]
        )
    );
    assert_eq!(
        mounts(shim),
        BTreeMap::from([("hsmbridge-lib".into(), ("/opt/hsmbridge/lib".into(), false))])
    );
    assert!(shim.security_context.as_ref().and_then(|s| s.read_only_root_filesystem) == Some(true));

    let app = &spec.containers[1];
    assert_eq!(
        env(app),
        BTreeMap::from([
            ("HSMBRIDGE_SOCKET".into(), "/var/run/hsmbridge/pkcs11.sock".into()),
            (
                "PKCS11_MODULE_PATH".into(),
                "/opt/hsmbridge/lib/libhsmbridge_pkcs11.so".into()
            ),
        ])
    );
    assert_eq!(
        mounts(app),
        BTreeMap::from([
            ("hsmbridge-lib".into(), ("/opt/hsmbridge/lib".into(), true)),
            ("hsmbridge-socket".into(), ("/var/run/hsmbridge".into(), true)),
        ])
    );
    assert_eq!(app.security_context, None, "app containers keep their own settings");

    let secret = volume(&out, "hsmbridge-credentials")
        .secret
        .as_ref()
        .expect("secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("payments-credentials"));
    assert_eq!(secret.default_mode, Some(0o400));
    let cm = volume(&out, "hsmbridge-provider")
        .config_map
        .as_ref()
        .expect("configmap volume");
    assert_eq!(cm.name, "payments-provider");
    for v in ["hsmbridge-lib", "hsmbridge-socket", "hsmbridge-tmp"] {
        assert!(volume(&out, v).empty_dir.is_some(), "{v}");
    }
    assert_eq!(spec.security_context.as_ref().and_then(|s| s.fs_group), Some(65532));

    let annotations = out.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(
        annotations.get("hsmbridge.io/inject-status").map(String::as_str),
        Some("injected")
    );
    assert_eq!(
        annotations
            .get("kubectl.kubernetes.io/default-container")
            .map(String::as_str),
        Some("app"),
        "kubectl logs/exec keep defaulting to the app, not the sidecar"
    );
    assert_eq!(
        annotations.get("hsmbridge.io/partition").map(String::as_str),
        Some("payments")
    );
}

#[test]
fn the_credentials_are_mounted_only_into_the_sidecar() {
    for caps in [OLD, NEW] {
        let out = injected(&app_pod(), &partitions(vec![partition("payments", json!({}))]), caps);
        let spec = out.spec.as_ref().expect("spec");
        for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            let m = mounts(c);
            let sees = m.contains_key("hsmbridge-credentials") || m.contains_key("hsmbridge-provider");
            assert_eq!(sees, c.name == "hsm-sidecar", "{}: {m:?}", c.name);
            assert!(c.env_from.is_none());
        }
    }
}

#[test]
fn new_server_gets_a_native_sidecar() {
    let out = injected(&app_pod(), &partitions(vec![partition("payments", json!({}))]), NEW);
    let spec = out.spec.as_ref().expect("spec");
    let init: Vec<&str> = spec.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(
        init,
        ["hsmbridge-shim", "hsm-sidecar"],
        "shim copied first, then the sidecar"
    );
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app"]);

    let sidecar = container(&spec.init_containers, "hsm-sidecar");
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    let readiness = sidecar.readiness_probe.as_ref().expect("readiness");
    assert_eq!(readiness.grpc.as_ref().map(|g| g.port), Some(17310));
    assert_eq!(readiness.tcp_socket, None);
    let startup = sidecar.startup_probe.as_ref().expect("startup probe");
    assert_eq!(
        startup.tcp_socket.as_ref().map(|t| t.port.clone()),
        Some(IntOrString::Int(17310))
    );
    assert!(!out
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubectl.kubernetes.io/default-container")));
}

#[test]
fn grpc_probe_from_1_24_native_sidecar_from_1_29() {
    assert_eq!(ServerCaps::for_version("1", "20"), OLD);
    assert_eq!(
        ServerCaps::for_version("1", "24"),
        ServerCaps {
            native_sidecars: false,
            grpc_probes: true,
            native_sidecars_forcible: false,
        }
    );
    assert_eq!(ServerCaps::for_version("1", "28+"), GATED);
    assert_eq!(ServerCaps::for_version("1", "29+"), NEW);
    assert_eq!(ServerCaps::for_version("1", "33"), NEW);
    assert_eq!(ServerCaps::for_version("2", "0"), NEW);
    assert_eq!(ServerCaps::for_version("", ""), OLD);
    assert_eq!(ServerCaps::for_version("one", "x"), OLD);
}

#[test]
fn the_annotation_forces_the_sidecar_style() {
    let parts = partitions(vec![partition("payments", json!({}))]);
    let mut p = app_pod();
    p.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("hsmbridge.io/sidecar-mode".into(), "container".into());
    let out = injected(&p, &parts, NEW);
    let spec = out.spec.as_ref().expect("spec");
    assert_eq!(spec.containers[0].name, "hsm-sidecar");
    assert_eq!(spec.containers[0].restart_policy, None);
    assert!(spec.containers[0]
        .readiness_probe
        .as_ref()
        .is_some_and(|p| p.grpc.is_some()));

    p.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("hsmbridge.io/sidecar-mode".into(), "native".into());
    let out = injected(&p, &parts, GATED);
    let spec = out.spec.as_ref().expect("spec");
    assert_eq!(
        container(&spec.init_containers, "hsm-sidecar")
            .restart_policy
            .as_deref(),
        Some("Always")
    );
    // Before 1.28 the field does not exist: the sidecar would be a blocking init container.
    let d = denial(&p, &parts, OLD);
    assert_eq!(d, Denial::NativeSidecarUnsupported);
    assert!(
        d.to_string().contains("use hsmbridge.io/sidecar-mode: container"),
        "{d}"
    );
}

#[test]
fn existing_lists_are_appended_to_and_user_settings_kept() {
    let p = pod(json!({
        "metadata": {"name": "x", "namespace": NS,
            "labels": {"hsmbridge.io/inject": "true"},
            "annotations": {"hsmbridge.io/partition": "payments",
                            "kubectl.kubernetes.io/default-container": "worker"}},
        "spec": {
            "serviceAccountName": "payments-api",
            "securityContext": {"fsGroup": 1000, "runAsNonRoot": true},
            "initContainers": [{"name": "migrate", "image": "m:1"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [
                {"name": "app", "image": "app:1",
                 "env": [{"name": "HSMBRIDGE_SOCKET", "value": "/custom.sock"}, {"name": "A", "value": "1"}],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "worker", "image": "w:1"}
            ]
        }
    }));
    for caps in [OLD, NEW] {
        let out = injected(&p, &partitions(vec![partition("payments", json!({}))]), caps);
        let spec = out.spec.as_ref().expect("spec");
        assert_eq!(spec.security_context.as_ref().and_then(|s| s.fs_group), Some(1000));
        assert_eq!(
            spec.security_context.as_ref().and_then(|s| s.run_as_non_root),
            Some(true)
        );
        let init: Vec<&str> = spec.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
        if caps.native_sidecars {
            assert_eq!(init, ["hsmbridge-shim", "hsm-sidecar", "migrate"]);
        } else {
            assert_eq!(init, ["hsmbridge-shim", "migrate"]);
        }
        assert_eq!(
            container(&spec.init_containers, "migrate").volume_mounts,
            None,
            "init containers get the shim only when named"
        );
        let vols: Vec<&str> = spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
        assert_eq!(vols[0], "data");
        assert_eq!(vols.len(), 6);

        let app = regular(spec, "app");
        let e = env(app);
        assert_eq!(e["HSMBRIDGE_SOCKET"], "/custom.sock", "the container's own value wins");
        assert_eq!(e["A"], "1");
        assert_eq!(e["PKCS11_MODULE_PATH"], APP_MODULE_PATH);
        assert_eq!(app.env.as_ref().map(Vec::len), Some(3), "no duplicate entries");
        let m = mounts(app);
        assert_eq!(m.len(), 3);
        assert_eq!(m["data"], ("/data".into(), false));

        let worker = regular(spec, "worker");
        assert_eq!(env(worker)["HSMBRIDGE_SOCKET"], SOCKET_PATH);
        assert_eq!(
            out.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_DEFAULT_CONTAINER))
                .map(String::as_str),
            Some("worker"),
            "an existing default-container annotation is kept"
        );
    }
}

#[test]
fn pod_without_annotations_map_or_security_context() {
    // Partition selected by an annotation means there are annotations; build the pod by hand
    // to check the other branch of the patch (no securityContext at all).
    let p = app_pod();
    assert!(p.spec.as_ref().is_some_and(|s| s.security_context.is_none()));
    let out = injected(&p, &partitions(vec![partition("payments", json!({}))]), OLD);
    assert_eq!(
        out.spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group),
        Some(65532)
    );

    let mut p = app_pod();
    p.spec.as_mut().expect("spec").security_context = Some(Default::default());
    let out = injected(&p, &partitions(vec![partition("payments", json!({}))]), OLD);
    assert_eq!(
        out.spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group),
        Some(65532)
    );
}

#[test]
fn app_pin_mode_and_other_providers() {
    let part = partition(
        "payments",
        json!({"spec": {"pinMode": "app", "provider": "pkcs11", "cluster": null,
                        "enrollment": {"method": "pkcs11-init-pin"},
                        "sidecar": {"modulePath": "/usr/lib/softhsm/libsofthsm2.so"}}}),
    );
    let out = injected(&app_pod(), &partitions(vec![part]), OLD);
    let sidecar = &out.spec.as_ref().expect("spec").containers[0];
    let cmd = sidecar.command.clone().unwrap_or_default();
    assert!(!cmd.contains(&"--pin-file".to_owned()), "{cmd:?}");
    assert!(cmd.contains(&"/usr/lib/softhsm/libsofthsm2.so".to_owned()));
    assert_eq!(sidecar.env, None);

    // primus enrolled with pkcs11-init-pin has no secrets file to point at.
    let part = partition(
        "payments",
        json!({"spec": {"enrollment": {"method": "pkcs11-init-pin"}}}),
    );
    let out = injected(&app_pod(), &partitions(vec![part]), OLD);
    let e = env(&out.spec.as_ref().expect("spec").containers[0]);
    assert!(e.contains_key("SECUROSYS_PKCS11_CONF"));
    assert!(!e.contains_key("SECUROSYS_SECRETS_CONF"));
}

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
    assert_eq!(env(worker).len(), 2);

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
    assert_eq!(env(container(&spec.init_containers, "fetch-cert")).len(), 2);
    assert_eq!(regular(spec, "app").env, None);
}

#[test]
fn several_partitions_get_one_sidecar_each() {
    let mut p = app_pod();
    p.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("hsmbridge.io/partition".into(), "payments,audit".into());
    let parts = partitions(vec![partition("payments", json!({})), partition("audit", json!({}))]);
    let out = injected(&p, &parts, OLD);
    let spec = out.spec.as_ref().expect("spec");
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["hsm-sidecar", "hsm-sidecar-audit", "app"]);
    let second = &spec.containers[1];
    let cmd = second.command.clone().unwrap_or_default().join(" ");
    assert!(cmd.contains("--socket /var/run/hsmbridge/pkcs11-audit.sock"), "{cmd}");
    assert!(cmd.contains("--health-addr 0.0.0.0:17311"), "{cmd}");
    assert_eq!(
        mounts(second)["hsmbridge-credentials-1"],
        ("/etc/hsmbridge/credentials".into(), true)
    );
    assert_eq!(
        volume(&out, "hsmbridge-credentials-1")
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.clone()),
        Some("audit-credentials".into())
    );
    assert_eq!(
        volume(&out, "hsmbridge-provider-1")
            .config_map
            .as_ref()
            .map(|c| c.name.clone()),
        Some("audit-provider".into())
    );
    // The app talks to the first partition by default.
    assert_eq!(env(&spec.containers[2])["HSMBRIDGE_SOCKET"], SOCKET_PATH);
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
fn the_injected_pod_is_left_alone_afterwards() {
    let out = injected(&app_pod(), &partitions(vec![partition("payments", json!({}))]), NEW);
    assert_eq!(annotations::parse(&out.metadata), Ok(Parsed::AlreadyInjected));
}

#[test]
fn forced_native_sidecar_on_a_server_with_the_gate() {
    let r = InjectRequest {
        partitions: vec!["payments".into()],
        containers: None,
        sidecar_mode: Some(SidecarMode::Native),
    };
    let patch = inject(
        &app_pod(),
        NS,
        &r,
        &partitions(vec![partition("payments", json!({}))]),
        &settings(),
        GATED,
    )
    .expect("patch");
    let text = serde_json::to_string(&patch).expect("json");
    assert!(text.contains("\"restartPolicy\":\"Always\""), "{text}");
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

#[test]
fn raw_param_mechanisms_become_repeated_sidecar_flags() {
    let part = partition(
        "payments",
        json!({"spec": {"sidecar": {"rawParamMechanisms": [2147483649u64, 2147549185u64]}}}),
    );
    let out = injected(&app_pod(), &partitions(vec![part]), OLD);
    let cmd = out.spec.as_ref().expect("spec").containers[0]
        .command
        .clone()
        .unwrap_or_default();
    let flags: Vec<&str> = cmd
        .windows(2)
        .filter(|w| w[0] == "--raw-param-mechanism")
        .map(|w| w[1].as_str())
        .collect();
    assert_eq!(flags, ["0x80000001", "0x80010001"], "{cmd:?}");
    assert_eq!(&cmd[..2], ["hsm-sidecar", "serve"]);

    // None listed: no flag.
    let out = injected(&app_pod(), &partitions(vec![partition("payments", json!({}))]), OLD);
    let cmd = out.spec.as_ref().expect("spec").containers[0]
        .command
        .clone()
        .unwrap_or_default();
    assert!(!cmd.iter().any(|a| a == "--raw-param-mechanism"), "{cmd:?}");
}
