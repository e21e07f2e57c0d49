//! The objects the operator creates for a partition, built as pure functions of the partition
//! (CONTRACT.md, "Objects the operator owns"). Applying and deleting them is `reconcile/`'s job.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, KeyToPath, PodSpec, PodTemplateSpec,
    ResourceRequirements, Secret, SecretVolumeSource, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::crd::Provider;
use crate::names::{
    self, ANNOTATION_PARTITION_UID, COMPONENT_CREDENTIALS, KEY_PRIMUS_CFG, PROVIDER_DIR, SETUP_DIR, SETUP_FILE,
};
use crate::security;
use crate::validate::{EnrollMethodArgs, EnrollmentPlan};

/// Mode of the setup-password file: read-only for its owner; the kubelet adds group read for
/// the pod's fsGroup, which is how the non-root Job user reads it.
const SETUP_FILE_MODE: i32 = 0o400;
/// The enrollment Job's pod is killed after this long (an HSM that does not answer, a `ppin`
/// that waits for input); the Job then fails and is not retried.
pub const JOB_ACTIVE_DEADLINE_SECONDS: i64 = 600;
/// A finished enrollment Job (and its pod and logs) is removed after a day; the partition's
/// status keeps what it did (enrollment.rs does not re-run a Job that is gone).
pub const JOB_TTL_SECONDS_AFTER_FINISHED: i32 = 86_400;
/// The enrollment container's requests and limits: `hsm-sidecar enroll` with the vendor
/// module loaded (the same budget as the injected sidecar's default).
const JOB_REQUESTS: [(&str, &str); 2] = [("cpu", "20m"), ("memory", "32Mi")];
const JOB_LIMITS: [(&str, &str); 2] = [("cpu", "1"), ("memory", "128Mi")];
/// The Job's writable /tmp (its root filesystem is read-only; `ppin` writes its files there).
const TMP_VOLUME: &str = "tmp";
/// The Job's pod names `spec.sidecar.volumes` as the first partition of an injected pod does
/// (`hsmbridge-0-<name>`, module_env.rs), which none of the names above is.
const MODULE_VOLUME_INDEX: usize = 0;

/// Identity of the partition the objects belong to.
#[derive(Clone, Debug)]
pub struct Owner {
    pub name: String,
    pub namespace: String,
    /// Controller ownerReference to the partition.
    pub reference: OwnerReference,
}

impl Owner {
    fn meta(&self, name: String, component: &str, owned: bool) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(names::labels(&self.name, component)),
            owner_references: owned.then(|| vec![self.reference.clone()]),
            ..Default::default()
        }
    }
}

/// `<name>-provider`: the rendered provider configuration.
pub fn provider_config_map(owner: &Owner, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: owner.meta(names::provider_config_map(&owner.name), "provider-config", true),
        data: Some(data),
        ..Default::default()
    }
}

/// `<name>-credentials` as the operator writes it: metadata only, so writing never touches the
/// data the enrollment Job wrote. Without an ownerReference when the credential must survive
/// the partition (a garbage collector would otherwise delete it); the partition's uid in
/// `hsmbridge.io/partition-uid` says whose it is either way (ownership.rs).
pub fn credential_secret(owner: &Owner, retain_on_delete: bool) -> Secret {
    let mut metadata = owner.meta(
        names::credential_secret(&owner.name),
        COMPONENT_CREDENTIALS,
        !retain_on_delete,
    );
    metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_PARTITION_UID.to_owned(),
        owner.reference.uid.clone(),
    )]));
    Secret {
        metadata,
        ..Default::default()
    }
}

/// `<name>-enroll`: the enrollment Job's identity.
pub fn enroll_service_account(owner: &Owner) -> ServiceAccount {
    ServiceAccount {
        metadata: owner.meta(names::enroll_identity(&owner.name), "enrollment", true),
        ..Default::default()
    }
}

/// `<name>-enroll`: may only read and write the one credential Secret.
pub fn enroll_role(owner: &Owner) -> Role {
    Role {
        metadata: owner.meta(names::enroll_identity(&owner.name), "enrollment", true),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".to_owned()]),
            resource_names: Some(vec![names::credential_secret(&owner.name)]),
            verbs: vec!["get".to_owned(), "update".to_owned(), "patch".to_owned()],
            ..Default::default()
        }]),
    }
}

/// `<name>-enroll`: binds the Role to the ServiceAccount.
pub fn enroll_role_binding(owner: &Owner) -> RoleBinding {
    let identity = names::enroll_identity(&owner.name);
    RoleBinding {
        metadata: owner.meta(identity.clone(), "enrollment", true),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: identity.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: identity,
            namespace: Some(owner.namespace.clone()),
            ..Default::default()
        }]),
    }
}

/// The enrollment Job for one setup-password version. It runs once (`backoffLimit: 0`,
/// `restartPolicy: Never`): HSMs lock a partition out after repeated bad setup passwords. The
/// setup password reaches it only as a file from a Secret volume, never in argv or env. It gets
/// `spec.sidecar.env` and `spec.sidecar.volumes` like the partition's sidecars. Its pod
/// meets the "restricted" Pod Security Standard with the injected sidecar's security context
/// (security.rs), has a deadline and resources, and is removed a day after it finished.
pub fn enrollment_job(owner: &Owner, plan: &EnrollmentPlan, job_name: &str, setup_version: &str) -> Job {
    let mut metadata = owner.meta(job_name.to_owned(), "enrollment", true);
    metadata.annotations = Some(BTreeMap::from([(
        names::ANNOTATION_SETUP_PASSWORD_VERSION.to_owned(),
        setup_version.to_owned(),
    )]));
    let pod_labels = names::labels(&owner.name, "enrollment");

    let mut env = Vec::new();
    if plan.provider == Provider::Primus {
        env.push(EnvVar {
            name: names::ENV_PRIMUS_CONF.to_owned(),
            value: Some(format!("{PROVIDER_DIR}/{KEY_PRIMUS_CFG}")),
            ..Default::default()
        });
    }
    // The module the Job loads needs what the partition's sidecars get (module_env.rs).
    env.extend(plan.module_env.env_vars());
    let mut mounts = vec![
        VolumeMount {
            name: "setup-password".to_owned(),
            mount_path: SETUP_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "provider-config".to_owned(),
            mount_path: PROVIDER_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: TMP_VOLUME.to_owned(),
            mount_path: "/tmp".to_owned(),
            ..Default::default()
        },
    ];
    mounts.extend(plan.module_env.mounts(MODULE_VOLUME_INDEX));

    let container = Container {
        name: "enroll".to_owned(),
        image: Some(plan.image.clone()),
        command: Some(enroll_command(owner, plan)),
        env: (!env.is_empty()).then_some(env),
        volume_mounts: Some(mounts),
        security_context: Some(security::restricted_container(hsmbridge_contract::RUN_AS_USER)),
        resources: Some(job_resources()),
        ..Default::default()
    };

    let mut volumes = vec![
        Volume {
            name: "setup-password".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(plan.setup_password.name.clone()),
                items: Some(vec![KeyToPath {
                    key: plan.setup_password.key.clone(),
                    path: SETUP_FILE.to_owned(),
                    mode: Some(SETUP_FILE_MODE),
                    ..Default::default()
                }]),
                default_mode: Some(SETUP_FILE_MODE),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "provider-config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::provider_config_map(&owner.name),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: TMP_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    volumes.extend(plan.module_env.volumes(MODULE_VOLUME_INDEX));

    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(JOB_ACTIVE_DEADLINE_SECONDS),
            ttl_seconds_after_finished: Some(JOB_TTL_SECONDS_AFTER_FINISHED),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names::enroll_identity(&owner.name)),
                    automount_service_account_token: Some(true),
                    restart_policy: Some("Never".to_owned()),
                    security_context: Some(security::restricted_pod(hsmbridge_contract::RUN_AS_USER)),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn job_resources() -> ResourceRequirements {
    let quantities = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
            .collect::<BTreeMap<_, _>>()
    };
    ResourceRequirements {
        requests: Some(quantities(&JOB_REQUESTS)),
        limits: Some(quantities(&JOB_LIMITS)),
        ..Default::default()
    }
}

/// `hsm-sidecar enroll ...` as CONTRACT.md spells it.
fn enroll_command(owner: &Owner, plan: &EnrollmentPlan) -> Vec<String> {
    let mut cmd: Vec<String> = vec!["hsm-sidecar".into(), "enroll".into()];
    match &plan.method {
        EnrollMethodArgs::Pkcs11InitPin {
            module_path,
            token_label,
        } => {
            cmd.extend([
                "--method".into(),
                "pkcs11-init-pin".into(),
                "--module".into(),
                module_path.clone(),
                "--token".into(),
                token_label.clone(),
            ]);
        }
        EnrollMethodArgs::Ppin { ppin_path, user } => {
            cmd.extend(["--method".into(), "ppin".into()]);
            if let Some(path) = ppin_path {
                cmd.extend(["--ppin".into(), path.clone()]);
            }
            cmd.extend(["--user".into(), user.clone()]);
        }
    }
    cmd.extend([
        "--setup-password-file".into(),
        format!("{SETUP_DIR}/{SETUP_FILE}"),
        "--secret".into(),
        names::credential_secret(&owner.name),
        "--namespace".into(),
        owner.namespace.clone(),
    ]);
    cmd
}

#[cfg(test)]
#[path = "owned_tests.rs"]
mod tests;
