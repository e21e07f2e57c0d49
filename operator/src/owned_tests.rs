use super::*;
use crate::crd::SecretKeyRef;
use crate::module_env::ModuleEnv;

fn owner() -> Owner {
    Owner {
        name: "payments".to_owned(),
        namespace: "team-a".to_owned(),
        reference: OwnerReference {
            api_version: "hsmbridge.io/v1alpha1".to_owned(),
            kind: "HsmPartition".to_owned(),
            name: "payments".to_owned(),
            uid: "uid-1".to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    }
}

fn setup() -> SecretKeyRef {
    SecretKeyRef {
        name: "payments-setup".to_owned(),
        key: "setup-password".to_owned(),
    }
}

fn init_pin_plan() -> EnrollmentPlan {
    EnrollmentPlan {
        image: "hsm-sidecar:dev".to_owned(),
        provider: Provider::Pkcs11,
        method: EnrollMethodArgs::Pkcs11InitPin {
            module_path: "/usr/lib/softhsm/libsofthsm2.so".to_owned(),
            token_label: "payments".to_owned(),
        },
        setup_password: setup(),
        module_env: ModuleEnv::default(),
    }
}

fn ppin_plan() -> EnrollmentPlan {
    EnrollmentPlan {
        image: "registry.example/hsm-sidecar-primus:1.0".to_owned(),
        provider: Provider::Primus,
        method: EnrollMethodArgs::Ppin {
            ppin_path: Some("/usr/local/primus/bin/ppin".to_owned()),
            user: "PAYMENTS".to_owned(),
        },
        setup_password: setup(),
        module_env: ModuleEnv::default(),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn role_allows_only_the_credential_secret() {
    let role = enroll_role(&owner());
    assert_eq!(role.metadata.name.as_deref(), Some("payments-enroll"));
    let rules = role.rules.unwrap_or_default();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].api_groups, Some(vec![String::new()]));
    assert_eq!(rules[0].resources, Some(strings(&["secrets"])));
    assert_eq!(rules[0].resource_names, Some(strings(&["payments-credentials"])));
    assert_eq!(rules[0].verbs, strings(&["get", "update", "patch"]));
}

#[test]
fn role_binding_binds_the_enroll_service_account() {
    let rb = enroll_role_binding(&owner());
    assert_eq!(rb.role_ref.kind, "Role");
    assert_eq!(rb.role_ref.name, "payments-enroll");
    let subjects = rb.subjects.unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, "payments-enroll");
    assert_eq!(subjects[0].namespace.as_deref(), Some("team-a"));
    assert_eq!(
        enroll_service_account(&owner()).metadata.name.as_deref(),
        Some("payments-enroll")
    );
}

#[test]
fn init_pin_job_runs_once_with_the_contract_command() {
    let job = enrollment_job(&owner(), &init_pin_plan(), "payments-enroll-5994471a", "12345");
    assert_eq!(job.metadata.name.as_deref(), Some("payments-enroll-5994471a"));
    assert_eq!(job.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(job.metadata.owner_references.as_ref().map(Vec::len), Some(1));
    let spec = job.spec.unwrap_or_default();
    assert_eq!(spec.backoff_limit, Some(0));
    let pod = spec.template.spec.unwrap_or_default();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.service_account_name.as_deref(), Some("payments-enroll"));
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("hsm-sidecar:dev"));
    assert_eq!(
        c.command,
        Some(strings(&[
            "hsm-sidecar",
            "enroll",
            "--method",
            "pkcs11-init-pin",
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token",
            "payments",
            "--setup-password-file",
            "/var/run/hsmbridge/setup/setup-password",
            "--secret",
            "payments-credentials",
            "--namespace",
            "team-a",
        ]))
    );
    assert!(c.args.is_none());
    assert!(c.env.is_none(), "no env for a generic module");
}

#[test]
fn ppin_job_has_primus_config_env() {
    let job = enrollment_job(&owner(), &ppin_plan(), "payments-enroll-5994471a", "12345");
    let pod = job.spec.unwrap_or_default().template.spec.unwrap_or_default();
    let c = &pod.containers[0];
    assert_eq!(
        c.command,
        Some(strings(&[
            "hsm-sidecar",
            "enroll",
            "--method",
            "ppin",
            "--ppin",
            "/usr/local/primus/bin/ppin",
            "--user",
            "PAYMENTS",
            "--setup-password-file",
            "/var/run/hsmbridge/setup/setup-password",
            "--secret",
            "payments-credentials",
            "--namespace",
            "team-a",
        ]))
    );
    let env = c.env.clone().unwrap_or_default();
    assert_eq!(env.len(), 1);
    assert_eq!(env[0].name, "SECUROSYS_PKCS11_CONF");
    assert_eq!(env[0].value.as_deref(), Some("/etc/hsmbridge/provider/primus.cfg"));
}

#[test]
fn setup_password_only_as_a_0400_file_from_the_secret_volume() {
    let job = enrollment_job(&owner(), &ppin_plan(), "j", "1");
    let pod = job.spec.unwrap_or_default().template.spec.unwrap_or_default();
    let volumes = pod.volumes.unwrap_or_default();
    let setup = volumes
        .iter()
        .find(|v| v.name == "setup-password")
        .and_then(|v| v.secret.clone())
        .unwrap_or_default();
    assert_eq!(setup.secret_name.as_deref(), Some("payments-setup"));
    let items = setup.items.unwrap_or_default();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].key, "setup-password");
    assert_eq!(items[0].path, "setup-password");
    assert_eq!(items[0].mode, Some(0o400));
    let c = &pod.containers[0];
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    assert!(mounts
        .iter()
        .any(|m| m.name == "setup-password" && m.mount_path == "/var/run/hsmbridge/setup"));
    assert!(mounts
        .iter()
        .any(|m| m.name == "provider-config" && m.mount_path == "/etc/hsmbridge/provider"));
    // Nothing in env or argv refers to the Secret's contents.
    let serialized = serde_json::to_string(c).unwrap_or_default();
    assert!(!serialized.contains("secretKeyRef"));
    assert!(!serialized.contains("envFrom"));
}

#[test]
fn credential_secret_is_metadata_only_and_unowned_when_retained() {
    let s = credential_secret(&owner(), false);
    assert_eq!(s.metadata.name.as_deref(), Some("payments-credentials"));
    assert!(s.data.is_none() && s.string_data.is_none() && s.type_.is_none());
    assert!(s.metadata.owner_references.is_some());
    assert!(credential_secret(&owner(), true).metadata.owner_references.is_none());
}

#[test]
fn objects_carry_the_partition_labels() {
    let cm = provider_config_map(&owner(), BTreeMap::new());
    let labels = cm.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/managed-by").map(String::as_str),
        Some("hsm-operator")
    );
    assert_eq!(
        labels.get("hsmbridge.io/partition").map(String::as_str),
        Some("payments")
    );
    assert_eq!(cm.metadata.name.as_deref(), Some("payments-provider"));
}

#[test]
fn credential_secret_names_its_partition_by_uid_in_both_modes() {
    for retain in [false, true] {
        let secret = credential_secret(&owner(), retain);
        let annotations = secret.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations.get("hsmbridge.io/partition-uid").map(String::as_str),
            Some("uid-1")
        );
        assert_eq!(secret.metadata.owner_references.is_some(), !retain);
        assert!(secret.data.is_none() && secret.string_data.is_none());
    }
}

#[test]
fn enrollment_job_meets_the_restricted_pod_security_standard() {
    let job = enrollment_job(&owner(), &init_pin_plan(), "payments-enroll-12345678", "1");
    let spec = job.spec.expect("job spec");
    assert_eq!(spec.active_deadline_seconds, Some(600));
    assert_eq!(spec.ttl_seconds_after_finished, Some(86_400));
    let pod = spec.template.spec.expect("pod spec");
    let psc = pod.security_context.expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(hsmbridge_contract::RUN_AS_USER));
    assert_eq!(psc.run_as_group, Some(hsmbridge_contract::RUN_AS_USER));
    // The 0400 setup-password file becomes group-readable for the fsGroup.
    assert_eq!(psc.fs_group, Some(hsmbridge_contract::RUN_AS_USER));
    assert_eq!(psc.seccomp_profile.map(|s| s.type_).as_deref(), Some("RuntimeDefault"));
    let c = &pod.containers[0];
    // The very definition the injected sidecar uses.
    assert_eq!(
        c.security_context.as_ref(),
        Some(&crate::security::restricted_container(hsmbridge_contract::RUN_AS_USER))
    );
    let resources = c.resources.clone().expect("resources");
    for key in ["cpu", "memory"] {
        assert!(
            resources.requests.as_ref().is_some_and(|r| r.contains_key(key)),
            "requests.{key}"
        );
        assert!(
            resources.limits.as_ref().is_some_and(|r| r.contains_key(key)),
            "limits.{key}"
        );
    }
    // A writable /tmp, since the root filesystem is read-only.
    let tmp = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/tmp")
        .expect("/tmp mount");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == tmp.name)
        .expect("tmp volume");
    assert!(volume.empty_dir.is_some());
    assert_eq!(pod.host_pid, None);
    assert_eq!(pod.host_network, None);
}

#[test]
fn the_job_gets_the_sidecar_env_and_volumes_of_the_partition() {
    let sidecar: crate::crd::SidecarSpec = serde_json::from_value(serde_json::json!({
        "image": "hsm-sidecar-softhsm:dev",
        "modulePath": "/usr/lib/softhsm/libsofthsm2.so",
        "env": [{"name": "SOFTHSM2_CONF", "value": "/etc/softhsm/softhsm2.conf"}],
        "volumes": [
            {"name": "softhsm-conf", "mountPath": "/etc/softhsm", "configMap": {"name": "softhsm-conf"}},
            {"name": "tokens", "mountPath": "/var/lib/softhsm/tokens", "readOnly": false,
             "persistentVolumeClaim": {"claimName": "softhsm-tokens"}}
        ]
    }))
    .expect("sidecar spec");
    let mut plan = init_pin_plan();
    plan.module_env = ModuleEnv::parse(&sidecar).expect("valid");
    let job = enrollment_job(&owner(), &plan, "payments-enroll-1", "1");
    let pod = job.spec.and_then(|s| s.template.spec).expect("pod spec");
    let c = &pod.containers[0];
    let env: Vec<(String, Option<String>)> = c
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    assert_eq!(
        env,
        [(
            "SOFTHSM2_CONF".to_owned(),
            Some("/etc/softhsm/softhsm2.conf".to_owned())
        )]
    );
    let mounts: Vec<(String, String, Option<bool>)> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone(), m.read_only))
        .collect();
    let owned = |n: &str, p: &str, ro: Option<bool>| (n.to_owned(), p.to_owned(), ro);
    assert_eq!(
        mounts,
        [
            owned("setup-password", "/var/run/hsmbridge/setup", Some(true)),
            owned("provider-config", "/etc/hsmbridge/provider", Some(true)),
            owned("tmp", "/tmp", None),
            owned("hsmbridge-0-softhsm-conf", "/etc/softhsm", Some(true)),
            owned("hsmbridge-0-tokens", "/var/lib/softhsm/tokens", Some(false)),
        ]
    );
    let volumes = pod.volumes.expect("volumes");
    let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "setup-password",
            "provider-config",
            "tmp",
            "hsmbridge-0-softhsm-conf",
            "hsmbridge-0-tokens"
        ]
    );
    assert_eq!(
        volumes[3].config_map.as_ref().map(|c| c.name.as_str()),
        Some("softhsm-conf")
    );
    let claim = volumes[4].persistent_volume_claim.as_ref().expect("a PVC volume");
    assert_eq!(
        (claim.claim_name.as_str(), claim.read_only),
        ("softhsm-tokens", Some(false))
    );
    assert!(volumes.iter().all(|v| v.host_path.is_none()));
}
