use serde_json::json;

use super::*;

/// The README's SoftHSM example: softhsm2.conf from a ConfigMap, the token store on a PVC.
fn softhsm() -> SidecarSpec {
    serde_json::from_value(json!({
        "image": "registry.example/hsm-sidecar-softhsm:1.0",
        "modulePath": "/usr/lib/softhsm/libsofthsm2.so",
        "env": [{"name": "SOFTHSM2_CONF", "value": "/etc/softhsm/softhsm2.conf"}],
        "volumes": [
            {"name": "softhsm-conf", "mountPath": "/etc/softhsm", "configMap": {"name": "softhsm-conf"}},
            {"name": "tokens", "mountPath": "/var/lib/softhsm/tokens", "readOnly": false,
             "persistentVolumeClaim": {"claimName": "softhsm-tokens"}},
            {"name": "vendor-secret", "mountPath": "/etc/vendor/secret.cfg", "subPath": "secret.cfg",
             "secret": {"secretName": "vendor"}}
        ]
    }))
    .expect("sidecar spec")
}

#[test]
fn env_volumes_and_mounts_from_the_spec() {
    let m = ModuleEnv::parse(&softhsm()).expect("valid");
    assert_eq!(
        serde_json::to_value(m.env_vars()).expect("json"),
        json!([{"name": "SOFTHSM2_CONF", "value": "/etc/softhsm/softhsm2.conf"}])
    );
    assert_eq!(
        serde_json::to_value(m.volumes(2)).expect("json"),
        json!([
            {"name": "hsmbridge-2-softhsm-conf", "configMap": {"name": "softhsm-conf"}},
            {"name": "hsmbridge-2-tokens", "persistentVolumeClaim": {"claimName": "softhsm-tokens", "readOnly": false}},
            {"name": "hsmbridge-2-vendor-secret", "secret": {"secretName": "vendor"}}
        ])
    );
    assert_eq!(
        serde_json::to_value(m.mounts(2)).expect("json"),
        json!([
            {"name": "hsmbridge-2-softhsm-conf", "mountPath": "/etc/softhsm", "readOnly": true},
            {"name": "hsmbridge-2-tokens", "mountPath": "/var/lib/softhsm/tokens", "readOnly": false},
            {"name": "hsmbridge-2-vendor-secret", "mountPath": "/etc/vendor/secret.cfg", "readOnly": true,
             "subPath": "secret.cfg"}
        ])
    );
    assert_eq!(
        m.volume_names(0),
        [
            "hsmbridge-0-softhsm-conf",
            "hsmbridge-0-tokens",
            "hsmbridge-0-vendor-secret"
        ]
    );
}

#[test]
fn nothing_declared_is_nothing_added() {
    let mut spec = softhsm();
    spec.env.clear();
    spec.volumes.clear();
    let m = ModuleEnv::parse(&spec).expect("valid");
    assert_eq!(m, ModuleEnv::default());
    assert!(m.env_vars().is_empty() && m.volumes(0).is_empty() && m.mounts(0).is_empty());
}

#[test]
fn every_hsmbridge_mount_is_in_a_reserved_directory() {
    for path in [
        hsmbridge_contract::APP_LIB_DIR,
        hsmbridge_contract::SOCKET_DIR,
        crate::names::CREDENTIALS_DIR,
        crate::names::PROVIDER_DIR,
        crate::names::SETUP_DIR,
        "/tmp",
    ] {
        let parts = components(path).expect("no ..");
        assert!(
            RESERVED_DIRS
                .iter()
                .any(|dir| parts.starts_with(&components(dir).expect("no .."))),
            "{path} is in no reserved directory"
        );
    }
}

#[test]
fn the_longest_volume_name_fits_a_pod_of_16_partitions() {
    let name = "a".repeat(MAX_SIDECAR_VOLUME_NAME);
    assert!(volume_name(15, &name).len() <= 63);
    assert!(is_dns_label(&volume_name(15, &name)));
}

#[test]
fn names() {
    for ok in ["A", "_x", "SOFTHSM2_CONF", "a1"] {
        assert!(is_env_name(ok), "{ok}");
    }
    for bad in ["", "1A", "A-B", "A B", "A=B", "É"] {
        assert!(!is_env_name(bad), "{bad}");
    }
    assert!(is_dns_label("tokens-1") && !is_dns_label("-x") && !is_dns_label("x-") && !is_dns_label("A"));
    assert!(is_dns_subdomain("a.b-c") && !is_dns_subdomain("a..b") && !is_dns_subdomain("a_b"));
    assert_eq!(components("//etc/./hsmbridge/"), Some(vec!["etc", "hsmbridge"]));
    assert_eq!(components("/etc/x/../hsmbridge"), None);
}

/// The problems `parse` reports for the SoftHSM spec changed by `edit`.
fn problems_with(edit: impl FnOnce(&mut SidecarSpec)) -> Vec<String> {
    let mut spec = softhsm();
    edit(&mut spec);
    ModuleEnv::parse(&spec).err().unwrap_or_default()
}

#[test]
fn variables_that_redirect_the_credential_or_the_loader_are_refused() {
    for name in [
        "KUBECONFIG",
        "KUBERNETES_SERVICE_HOST",
        "LD_PRELOAD",
        "ld_library_path",
        "https_proxy",
        "HTTP_PROXY",
        "RUST_LOG",
        "SSL_CERT_FILE",
        "GLIBC_TUNABLES",
        "PATH",
    ] {
        let problems = problems_with(|s| {
            s.env
                .push(serde_json::from_value(json!({"name": name, "value": "x"})).expect("env"))
        });
        assert_eq!(problems.len(), 1, "{name}: {problems:?}");
        assert!(
            problems[0].contains("is refused") && problems[0].contains(name),
            "{name}: {problems:?}"
        );
    }
    for fine in ["SOFTHSM2_CONF2", "PRIMUS_LOG", "LDAP_HOST", "KUBE_X"] {
        assert!(
            problems_with(|s| s
                .env
                .push(serde_json::from_value(json!({"name": fine, "value": "x"})).expect("env")))
            .is_empty(),
            "{fine}"
        );
    }
}

#[test]
fn hsmbridge_variables_are_reserved_so_a_partition_cannot_forge_the_sidecar_s_identity() {
    use hsmbridge_contract::{ENV_CONTAINER, ENV_PARTITION, ENV_POD_NAME, ENV_POD_NAMESPACE, ENV_SOCKET};
    for name in [
        ENV_POD_NAMESPACE,
        ENV_POD_NAME,
        ENV_PARTITION,
        ENV_CONTAINER,
        ENV_SOCKET,
        "hsmbridge_pod_name",
        "HSMBRIDGE_ANYTHING",
    ] {
        let problems = problems_with(|s| {
            s.env
                .push(serde_json::from_value(json!({"name": name, "value": "forged"})).expect("env"))
        });
        assert_eq!(problems.len(), 1, "{name}: {problems:?}");
        assert!(
            problems[0].contains("is reserved") && problems[0].contains(name),
            "{name}: {problems:?}"
        );
    }
    for fine in ["HSMBRIDGE", "MY_HSMBRIDGE_X"] {
        assert!(
            problems_with(|s| s
                .env
                .push(serde_json::from_value(json!({"name": fine, "value": "x"})).expect("env")))
            .is_empty(),
            "{fine}"
        );
    }
}

#[test]
fn mounts_over_the_token_or_over_a_parent_of_hsmbridge_s_directories_are_refused() {
    for (path, says) in [
        (
            "/var/run/secrets/kubernetes.io/serviceaccount",
            "is in /var/run/secrets",
        ),
        ("/etc", "would hide /etc/hsmbridge"),
        ("/var/run", "would hide /var/run/hsmbridge"),
        ("/opt", "would hide /opt/hsmbridge"),
        ("/etc/hsmbridge/credentials/pin", "is in /etc/hsmbridge"),
    ] {
        let problems = problems_with(|s| s.volumes[0].mount_path = path.to_owned());
        assert!(problems.iter().any(|p| p.contains(says)), "{path}: {problems:?}");
    }
    assert!(problems_with(|s| s.volumes[0].mount_path = "/etc/vendor".to_owned()).is_empty());
}
