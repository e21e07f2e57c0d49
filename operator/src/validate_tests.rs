use super::*;
use crate::crd::{ClusterMember, ClusterSpec, EnrollmentSpec, PinMode, SidecarSpec, TokenSpec};

fn primus_spec() -> HsmPartitionSpec {
    HsmPartitionSpec {
        provider: Provider::Primus,
        sidecar: SidecarSpec {
            image: "registry.example/hsm-sidecar-primus:1.0".to_owned(),
            module_path: "/usr/local/primus/lib/libprimusP11.so".to_owned(),
            raw_param_mechanisms: vec![],
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
