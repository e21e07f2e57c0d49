//! What the injection tests share: the API server versions, a labelled pod, a Ready partition,
//! and `injected()`, which applies the patch the way the API server does.

pub use std::collections::BTreeMap;

pub use hsmbridge_contract::{APP_MODULE_PATH, SOCKET_PATH};
pub use json_patch::PatchOperation;
pub use k8s_openapi::api::core::v1::{Container, Pod, Volume};
pub use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
pub use serde_json::json;

pub use super::{inject, precheck, Denial, ServerCaps, Settings, ANNOTATION_DEFAULT_CONTAINER};
pub use crate::crd::HsmPartition;
pub use crate::webhook::annotations::{self, InjectRequest, Parsed, SidecarMode};

pub const NS: &str = "team-a";
pub const OLD: ServerCaps = ServerCaps {
    native_sidecars: false,
    grpc_probes: false,
    native_sidecars_forcible: false,
};
/// 1.28: the field exists behind a feature gate; native only when forced.
pub const GATED: ServerCaps = ServerCaps {
    native_sidecars: false,
    grpc_probes: true,
    native_sidecars_forcible: true,
};
pub const NEW: ServerCaps = ServerCaps {
    native_sidecars: true,
    grpc_probes: true,
    native_sidecars_forcible: true,
};

pub fn settings() -> Settings {
    Settings {
        shim_image: "registry.example/hsmbridge-shim:1.0".into(),
        health_port: 17310,
        metrics_port: 17320,
        run_as_user: 65532,
        resources: None,
    }
}

pub fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).expect("test pod")
}

/// A labelled pod with one app container `app`.
pub fn app_pod() -> Pod {
    pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "signer", "namespace": NS,
            "labels": {"hsmbridge.io/inject": "true"},
            "annotations": {"hsmbridge.io/partition": "payments"}},
        "spec": {"serviceAccountName": "payments-api",
            "containers": [{"name": "app", "image": "app:1"}]}
    }))
}

pub fn partition(name: &str, extra: serde_json::Value) -> HsmPartition {
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

pub fn partitions(list: Vec<HsmPartition>) -> BTreeMap<String, HsmPartition> {
    list.into_iter()
        .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
        .collect()
}

pub fn request_of(pod: &Pod) -> InjectRequest {
    match annotations::parse(&pod.metadata) {
        Ok(Parsed::Inject(r)) => r,
        other => panic!("not an injection request: {other:?}"),
    }
}

/// Injects and applies the patch the way the API server does; returns the stored pod.
pub fn injected(pod: &Pod, parts: &BTreeMap<String, HsmPartition>, caps: ServerCaps) -> Pod {
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

pub fn denial(pod: &Pod, parts: &BTreeMap<String, HsmPartition>, caps: ServerCaps) -> Denial {
    inject(pod, NS, &request_of(pod), parts, &settings(), caps).expect_err("denied")
}

pub fn container<'a>(list: &'a Option<Vec<Container>>, name: &str) -> &'a Container {
    list.iter()
        .flatten()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

pub fn regular<'a>(spec: &'a k8s_openapi::api::core::v1::PodSpec, name: &str) -> &'a Container {
    spec.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

pub fn volume<'a>(pod: &'a Pod, name: &str) -> &'a Volume {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

pub fn env(c: &Container) -> BTreeMap<String, String> {
    c.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

pub fn mounts(c: &Container) -> BTreeMap<String, (String, bool)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), (m.mount_path.clone(), m.read_only.unwrap_or(false))))
        .collect()
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}
