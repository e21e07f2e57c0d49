use super::*;
use crate::crd::{
    ClaimRef, ClusterMember, ClusterSpec, ConfigMapRef, EnrollmentSpec, PinMode, SecretRef, SidecarEnvVar, SidecarSpec,
    SidecarVolume, TokenSpec,
};

fn primus_spec() -> HsmPartitionSpec {
    HsmPartitionSpec {
        provider: Provider::Primus,
        sidecar: SidecarSpec {
            image: "registry.example/hsm-sidecar-primus:1.0".to_owned(),
            module_path: "/usr/local/primus/lib/libprimusP11.so".to_owned(),
            raw_param_mechanisms: vec![],
            env: vec![],
            volumes: vec![],
        },
        cluster: Some(ClusterSpec {
            members: vec![ClusterMember {
                host: "hsm1.example.net".to_owned(),
                port: 2310,
                priority: 0,
            }],
            user: "PAYMENTS".to_owned(),
            slot_id: 0,
            timeouts: None,
        }),
        token: None,
        enrollment: EnrollmentSpec {
            method: EnrollmentMethod::Ppin,
            setup_password_secret_ref: SecretKeyRef {
                name: "payments-setup".to_owned(),
                key: "setup-password".to_owned(),
            },
            ppin_path: Some("/usr/local/primus/bin/ppin".to_owned()),
        },
        pin_mode: PinMode::Managed,
        service_accounts: vec![],
        retain_credentials_on_delete: false,
    }
}

fn softhsm_spec() -> HsmPartitionSpec {
    HsmPartitionSpec {
        provider: Provider::Pkcs11,
        sidecar: SidecarSpec {
            image: "hsm-sidecar:dev".to_owned(),
            module_path: "/usr/lib/softhsm/libsofthsm2.so".to_owned(),
            raw_param_mechanisms: vec![],
            env: vec![],
            volumes: vec![],
        },
        cluster: None,
        token: Some(TokenSpec {
            label: "payments".to_owned(),
        }),
        enrollment: EnrollmentSpec {
            method: EnrollmentMethod::Pkcs11InitPin,
            setup_password_secret_ref: SecretKeyRef {
                name: "s".to_owned(),
                key: "k".to_owned(),
            },
            ppin_path: None,
        },
        ..primus_spec()
    }
}

fn problems(spec: &HsmPartitionSpec) -> String {
    match validate("ns", "p", spec) {
        Ok(_) => panic!("expected InvalidSpec"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn primus_ppin_is_valid() {
    let valid = validate("team-a", "payments", &primus_spec()).expect("valid");
    assert!(valid.provider_config.contains_key("primus.cfg"));
    assert_eq!(
        valid.enrollment.method,
        EnrollMethodArgs::Ppin {
            ppin_path: Some("/usr/local/primus/bin/ppin".to_owned()),
            user: "PAYMENTS".to_owned()
        }
    );
}

#[test]
fn pkcs11_init_pin_is_valid_without_cluster() {
    let valid = validate("ns", "p", &softhsm_spec()).expect("valid");
    assert!(valid.provider_config.is_empty());
    assert_eq!(
        valid.enrollment.method,
        EnrollMethodArgs::Pkcs11InitPin {
            module_path: "/usr/lib/softhsm/libsofthsm2.so".to_owned(),
            token_label: "payments".to_owned()
        }
    );
}

#[test]
fn primus_needs_cluster() {
    let mut spec = primus_spec();
    spec.cluster = None;
    assert!(problems(&spec).contains("spec.cluster is required for provider primus"));
}

#[test]
fn pkcs11_init_pin_needs_token_label() {
    let mut spec = softhsm_spec();
    spec.token = None;
    assert!(problems(&spec).contains("spec.token.label is required for enrollment method pkcs11-init-pin"));
}

#[test]
fn ppin_needs_primus() {
    let mut spec = softhsm_spec();
    spec.enrollment.method = EnrollmentMethod::Ppin;
    assert!(problems(&spec).contains("needs provider primus"));
}

#[test]
fn schema_rules_are_rechecked() {
    let mut spec = primus_spec();
    if let Some(c) = spec.cluster.as_mut() {
        c.members.push(ClusterMember {
            host: "HSM1.example.net".to_owned(),
            port: 2310,
            priority: 200,
        });
        c.members.push(ClusterMember {
            host: "bad host".to_owned(),
            port: 0,
            priority: 0,
        });
    }
    spec.sidecar.module_path = "lib.so".to_owned();
    let p = problems(&spec);
    assert!(p.contains("members[1] repeats"), "{p}");
    assert!(p.contains("members[1].priority must be in 0..127"), "{p}");
    assert!(p.contains("members[2].host"), "{p}");
    assert!(p.contains("members[2].port must be in 1..65535"), "{p}");
    assert!(p.contains("modulePath must be an absolute path"), "{p}");
}

#[test]
fn long_names_are_rejected() {
    let name = "n".repeat(48);
    match validate("ns", &name, &softhsm_spec()) {
        Err(e) => assert!(e.to_string().contains("at most 47")),
        Ok(_) => panic!("expected InvalidSpec"),
    }
}

#[test]
fn control_characters_in_user_are_rejected() {
    let mut spec = primus_spec();
    if let Some(c) = spec.cluster.as_mut() {
        c.user = "A\nB".to_owned();
    }
    assert!(problems(&spec).contains("spec.cluster.user"));
}

#[test]
fn raw_param_mechanisms_must_be_vendor_defined() {
    let mut spec = softhsm_spec();
    spec.sidecar.raw_param_mechanisms = vec![0x8000_0000, 0x8000_0001, u64::from(u32::MAX) + 1];
    assert!(validate("ns", "p", &spec).is_ok(), "{}", problems(&spec));

    spec.sidecar.raw_param_mechanisms = vec![0x8000_0001, 0x1082, 0x7fff_ffff];
    let text = problems(&spec);
    assert!(
        text.contains("spec.sidecar.rawParamMechanisms[1] is 0x1082")
            && text.contains("spec.sidecar.rawParamMechanisms[2] is 0x7fffffff")
            && !text.contains("[0]"),
        "{text}"
    );

    spec.sidecar.raw_param_mechanisms = vec![0x8000_0000; 65];
    assert!(problems(&spec).contains("at most 64"), "{}", problems(&spec));
}

fn env(name: &str, value: &str) -> SidecarEnvVar {
    SidecarEnvVar {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// A read-only ConfigMap volume.
fn volume(name: &str, mount_path: &str) -> SidecarVolume {
    SidecarVolume {
        name: name.to_owned(),
        mount_path: mount_path.to_owned(),
        read_only: true,
        sub_path: None,
        config_map: Some(ConfigMapRef { name: name.to_owned() }),
        secret: None,
        persistent_volume_claim: None,
    }
}

#[test]
fn sidecar_env_and_volumes_reach_the_enrollment_plan() {
    let mut spec = softhsm_spec();
    spec.sidecar.env = vec![env("SOFTHSM2_CONF", "/etc/softhsm/softhsm2.conf")];
    let mut tokens = volume("tokens", "/var/lib/softhsm/tokens");
    tokens.read_only = false;
    tokens.config_map = None;
    tokens.persistent_volume_claim = Some(ClaimRef {
        claim_name: "softhsm-tokens".to_owned(),
    });
    spec.sidecar.volumes = vec![volume("softhsm-conf", "/etc/softhsm"), tokens];
    let valid = validate("team-a", "payments", &spec).expect("valid");
    let m = &valid.enrollment.module_env;
    assert_eq!(m.env_vars()[0].name, "SOFTHSM2_CONF");
    assert_eq!(m.volume_names(0), ["hsmbridge-0-softhsm-conf", "hsmbridge-0-tokens"]);
    assert_eq!(m.mounts(0)[1].read_only, Some(false));
}

#[test]
fn refused_sidecar_env_says_why() {
    let many: Vec<SidecarEnvVar> = (0..65).map(|i| env(&format!("V{i}"), "x")).collect();
    let cases: Vec<(Vec<SidecarEnvVar>, &str)> = vec![
        (
            vec![env("1X", "")],
            "spec.sidecar.env[0].name \"1X\" is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
        ),
        (vec![env("A", ""), env("A-B", "")], "spec.sidecar.env[1].name \"A-B\" is not an environment variable name"),
        (
            vec![env("HSMBRIDGE_SOCKET", "/x")],
            "spec.sidecar.env[0].name \"HSMBRIDGE_SOCKET\" is reserved: the operator sets HSMBRIDGE_* and the provider's SECUROSYS_PKCS11_CONF and SECUROSYS_SECRETS_CONF itself",
        ),
        (vec![env("SECUROSYS_PKCS11_CONF", "/x")], "\"SECUROSYS_PKCS11_CONF\" is reserved"),
        (vec![env("SECUROSYS_SECRETS_CONF", "/x")], "\"SECUROSYS_SECRETS_CONF\" is reserved"),
        (
            vec![env("A", "1"), env("B", "2"), env("A", "3")],
            "spec.sidecar.env[2] repeats \"A\" of spec.sidecar.env[0]: set each variable once",
        ),
        (many, "spec.sidecar.env lists 65 variables; at most 64"),
        (
            vec![env("A", &"x".repeat(4097))],
            "spec.sidecar.env[0].value is 4097 bytes long; at most 4096",
        ),
    ];
    for (list, want) in cases {
        let mut spec = softhsm_spec();
        spec.sidecar.env = list;
        let text = problems(&spec);
        assert!(text.contains(want), "want {want:?} in: {text}");
    }
}

#[test]
fn refused_sidecar_volumes_say_why() {
    let with = |f: &dyn Fn(&mut SidecarVolume)| {
        let mut v = volume("conf", "/etc/vendor");
        f(&mut v);
        vec![v]
    };
    let at = |path: &str| with(&|v: &mut SidecarVolume| v.mount_path = path.to_owned());
    let many: Vec<SidecarVolume> = (0..17)
        .map(|i| volume(&format!("v{i}"), &format!("/etc/v{i}")))
        .collect();
    let cases: Vec<(Vec<SidecarVolume>, &str)> = vec![
        (
            with(&|v| v.config_map = None),
            "spec.sidecar.volumes[0] (\"conf\") needs exactly one source, configMap {name}, secret {secretName} or persistentVolumeClaim {claimName}; it has none (hostPath and other sources are not supported)",
        ),
        (
            with(&|v| {
                v.secret = Some(SecretRef {
                    secret_name: "s".to_owned(),
                })
            }),
            "it has configMap and secret",
        ),
        (at("etc/vendor"), "spec.sidecar.volumes[0].mountPath \"etc/vendor\" must be an absolute path"),
        (
            at("/var/run/hsmbridge/x"),
            "spec.sidecar.volumes[0].mountPath /var/run/hsmbridge/x is in /var/run/hsmbridge, where hsmbridge or the kubelet mount their own volumes; choose another path",
        ),
        (at("/run/hsmbridge"), "is in /run/hsmbridge"),
        (at("/etc/hsmbridge/provider"), "is in /etc/hsmbridge"),
        (at("//etc//hsmbridge/"), "is in /etc/hsmbridge"),
        (at("/opt/hsmbridge/lib"), "is in /opt/hsmbridge"),
        (at("/tmp"), "is in /tmp"),
        (at("/etc/x/../hsmbridge"), "spec.sidecar.volumes[0].mountPath \"/etc/x/../hsmbridge\" must not contain '..'"),
        (at("/"), "spec.sidecar.volumes[0].mountPath must not be /"),
        (
            with(&|v| v.name = "Conf".to_owned()),
            "spec.sidecar.volumes[0].name \"Conf\" must be a DNS-1123 label (lowercase letters, digits and '-') of at most 40 characters",
        ),
        (with(&|v| v.name = "a".repeat(41)), "must be a DNS-1123 label"),
        (
            vec![volume("conf", "/etc/a"), volume("conf", "/etc/b")],
            "spec.sidecar.volumes[1].name \"conf\" repeats spec.sidecar.volumes[0].name: volume names must be unique",
        ),
        (
            vec![volume("a", "/etc/vendor"), volume("b", "/etc/vendor/")],
            "spec.sidecar.volumes[1].mountPath /etc/vendor/ is also spec.sidecar.volumes[0].mountPath: mount paths must be unique",
        ),
        (
            with(&|v| v.sub_path = Some("/abs".to_owned())),
            "spec.sidecar.volumes[0].subPath \"/abs\" must be a relative path inside the volume, without '..'",
        ),
        (with(&|v| v.sub_path = Some("a/../../b".to_owned())), "subPath \"a/../../b\" must be a relative path"),
        (
            with(&|v| v.config_map = Some(ConfigMapRef { name: "Bad_Name".to_owned() })),
            "spec.sidecar.volumes[0].configMap.name \"Bad_Name\" is not an object name (a DNS-1123 subdomain)",
        ),
        (many, "spec.sidecar.volumes lists 17 volumes; at most 16"),
    ];
    for (list, want) in cases {
        let mut spec = softhsm_spec();
        spec.sidecar.volumes = list;
        let text = problems(&spec);
        assert!(text.contains(want), "want {want:?} in: {text}");
    }
}
