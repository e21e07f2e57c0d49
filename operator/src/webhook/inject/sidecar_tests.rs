//! The sidecar container: its style (native or regular) by server version and annotation, its
//! probes, and the command and environment from the partition.

use super::super::test_support::*;

#[test]
fn grpc_probe_from_1_24_native_sidecar_from_1_29() {
    assert_eq!(ServerCaps::for_version("1", "20"), OLD);
    assert_eq!(
        ServerCaps::for_version("1", "24"),
        ServerCaps {
            native_sidecars: false,
            grpc_probes: true,
            native_sidecars_forcible: false
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
    let names: Vec<&str> = sidecar.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["HSMBRIDGE_POD_NAMESPACE", "HSMBRIDGE_POD_NAME", "HSMBRIDGE_PARTITION"],
        "no provider variables, only who the sidecar serves"
    );

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

/// `spec.sidecar.env` and `spec.sidecar.volumes` for SoftHSM (the README's example).
fn softhsm_module_env() -> serde_json::Value {
    json!({"spec": {"sidecar": {
        "env": [{"name": "SOFTHSM2_CONF", "value": "/etc/softhsm/softhsm2.conf"}],
        "volumes": [
            {"name": "softhsm-conf", "mountPath": "/etc/softhsm", "configMap": {"name": "softhsm-conf"}},
            {"name": "tokens", "mountPath": "/var/lib/softhsm/tokens", "readOnly": false,
             "persistentVolumeClaim": {"claimName": "softhsm-tokens"}}
        ]
    }}})
}

#[test]
fn sidecar_env_and_volumes_go_to_the_sidecar_only() {
    let parts = partitions(vec![partition("payments", softhsm_module_env())]);
    for caps in [OLD, NEW] {
        let out = injected(&app_pod(), &parts, caps);
        let spec = out.spec.as_ref().expect("spec");
        let sidecar = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == "hsm-sidecar")
            .expect("sidecar");
        assert_eq!(env(sidecar)["SOFTHSM2_CONF"], "/etc/softhsm/softhsm2.conf");
        assert_eq!(
            env(sidecar)["SECUROSYS_PKCS11_CONF"],
            "/etc/hsmbridge/provider/primus.cfg",
            "the operator's own provider env stays"
        );
        let m = mounts(sidecar);
        assert_eq!(m["hsmbridge-0-softhsm-conf"], ("/etc/softhsm".into(), true));
        assert_eq!(m["hsmbridge-0-tokens"], ("/var/lib/softhsm/tokens".into(), false));
        assert_eq!(m.len(), 6, "{m:?}");
        assert_eq!(
            volume(&out, "hsmbridge-0-softhsm-conf")
                .config_map
                .as_ref()
                .map(|c| c.name.as_str()),
            Some("softhsm-conf")
        );
        let claim = volume(&out, "hsmbridge-0-tokens")
            .persistent_volume_claim
            .as_ref()
            .expect("PVC volume");
        assert_eq!(claim.claim_name, "softhsm-tokens");

        for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            if c.name == "hsm-sidecar" {
                continue;
            }
            assert!(!env(c).contains_key("SOFTHSM2_CONF"), "{}: {:?}", c.name, c.env);
            assert!(
                !mounts(c).keys().any(|k| k.starts_with("hsmbridge-0-")),
                "{}: {:?}",
                c.name,
                c.volume_mounts
            );
        }
    }
}

#[test]
fn each_partition_names_its_volumes_by_its_place() {
    let mut p = app_pod();
    p.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("hsmbridge.io/partition".into(), "payments,audit".into());
    let parts = partitions(vec![
        partition("payments", softhsm_module_env()),
        partition("audit", softhsm_module_env()),
    ]);
    let out = injected(&p, &parts, OLD);
    let spec = out.spec.as_ref().expect("spec");
    assert_eq!(
        mounts(&spec.containers[0])["hsmbridge-0-tokens"].0,
        "/var/lib/softhsm/tokens"
    );
    assert_eq!(
        mounts(&spec.containers[1])["hsmbridge-1-tokens"].0,
        "/var/lib/softhsm/tokens"
    );
    assert!(!mounts(&spec.containers[1]).contains_key("hsmbridge-0-tokens"));
    volume(&out, "hsmbridge-1-softhsm-conf");

    // A pod volume with one of those names is refused like the other reserved names.
    p.spec.as_mut().expect("spec").volumes = Some(vec![Volume {
        name: "hsmbridge-1-tokens".into(),
        ..Volume::default()
    }]);
    let d = denial(&p, &parts, OLD);
    assert_eq!(
        d,
        Denial::NameTaken {
            kind: "volume",
            name: "hsmbridge-1-tokens".into()
        }
    );
}

#[test]
fn a_sidecar_spec_that_became_invalid_is_denied() {
    // validate.rs refuses it; a partition edited after it was Ready may still carry it.
    let part = partition(
        "payments",
        json!({"spec": {"sidecar": {"env": [{"name": "HSMBRIDGE_SOCKET", "value": "/x"}],
            "volumes": [{"name": "node", "mountPath": "/etc/hsmbridge/credentials"}]}}}),
    );
    let d = denial(&app_pod(), &partitions(vec![part]), OLD);
    assert!(matches!(d, Denial::InvalidSidecar { .. }), "{d}");
    let text = d.to_string();
    assert!(text.starts_with("HsmPartition team-a/payments has an invalid spec.sidecar (spec.sidecar.env[0].name \"HSMBRIDGE_SOCKET\" is reserved"), "{text}");
    assert!(
        text.contains("spec.sidecar.volumes[0] (\"node\") needs exactly one source"),
        "{text}"
    );
    assert!(text.contains("is in /etc/hsmbridge"), "{text}");
}

#[test]
fn the_sidecar_watches_the_provider_config_and_the_module_s_config_maps() {
    let mut extra = softhsm_module_env();
    // A Secret volume and a subPath ConfigMap mount (never updated by the kubelet) are not watched.
    if let Some(volumes) = extra["spec"]["sidecar"]["volumes"].as_array_mut() {
        volumes
            .push(json!({"name": "vendor-secret", "mountPath": "/etc/vendor/key", "secret": {"secretName": "vendor"}}));
        volumes.push(
            json!({"name": "one-file", "mountPath": "/etc/vendor/one.cfg", "subPath": "one.cfg",
                            "configMap": {"name": "vendor-cfg"}}),
        );
        volumes
            .push(json!({"name": "more-conf", "mountPath": "/etc/vendor/conf", "configMap": {"name": "vendor-cfg"}}));
    }
    let out = injected(&app_pod(), &partitions(vec![partition("payments", extra)]), OLD);
    let cmd = out.spec.as_ref().expect("spec").containers[0]
        .command
        .clone()
        .unwrap_or_default();
    let watched: Vec<&str> = cmd
        .windows(2)
        .filter(|w| w[0] == "--watch-config")
        .map(|w| w[1].as_str())
        .collect();
    assert_eq!(
        watched,
        ["/etc/hsmbridge/provider", "/etc/softhsm", "/etc/vendor/conf"],
        "{cmd:?}"
    );
}
