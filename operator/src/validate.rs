//! Cross-field rules the 1.20 API server cannot check (no CEL), plus a re-check of the schema's
//! own rules in case the installed CRD is older than this operator. Parse, don't validate: a
//! spec that passes becomes a [`ValidSpec`] that says exactly what to render and run.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use crate::crd::{
    EnrollmentMethod, HsmPartitionSpec, Provider, SecretKeyRef, CKM_VENDOR_DEFINED, MAX_RAW_PARAM_MECHANISMS,
};
use crate::module_env::ModuleEnv;
use crate::names::MAX_PARTITION_NAME_LEN;
use crate::provider_config;

/// A spec the operator can act on.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSpec {
    /// Data of the `<name>-provider` ConfigMap.
    pub provider_config: BTreeMap<String, String>,
    /// How to run the enrollment Job.
    pub enrollment: EnrollmentPlan,
}

/// Everything the enrollment Job needs from the spec.
#[derive(Clone, Debug, PartialEq)]
pub struct EnrollmentPlan {
    pub image: String,
    pub provider: Provider,
    pub method: EnrollMethodArgs,
    pub setup_password: SecretKeyRef,
    /// `spec.sidecar.env` and `spec.sidecar.volumes`: the Job loads the same module.
    pub module_env: ModuleEnv,
}

/// Method-specific arguments of `hsm-sidecar enroll`.
#[derive(Clone, Debug, PartialEq)]
pub enum EnrollMethodArgs {
    Pkcs11InitPin { module_path: String, token_label: String },
    Ppin { ppin_path: Option<String>, user: String },
}

/// Why a spec was rejected: one human-actionable sentence per problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSpec(pub Vec<String>);

impl std::fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

/// Checks `spec` of the partition `namespace/name`.
pub fn validate(namespace: &str, name: &str, spec: &HsmPartitionSpec) -> Result<ValidSpec, InvalidSpec> {
    let mut problems = Vec::new();

    if name.len() > MAX_PARTITION_NAME_LEN {
        problems.push(format!(
            "metadata.name is {} characters long; at most {MAX_PARTITION_NAME_LEN} fit the enrollment Job's name: recreate the partition with a shorter name",
            name.len()
        ));
    }
    if !spec.sidecar.module_path.starts_with('/') {
        problems.push("spec.sidecar.modulePath must be an absolute path inside the sidecar image".to_owned());
    }
    let raw = &spec.sidecar.raw_param_mechanisms;
    if raw.len() > MAX_RAW_PARAM_MECHANISMS {
        problems.push(format!(
            "spec.sidecar.rawParamMechanisms lists {} mechanisms; at most {MAX_RAW_PARAM_MECHANISMS}",
            raw.len()
        ));
    }
    for (i, mechanism) in raw.iter().enumerate() {
        if *mechanism < CKM_VENDOR_DEFINED {
            problems.push(format!(
                "spec.sidecar.rawParamMechanisms[{i}] is {mechanism:#x}: only vendor mechanisms (>= 0x80000000, CKM_VENDOR_DEFINED) may pass their parameter raw; the bridge knows the layout of the standard ones"
            ));
        }
    }
    if spec.sidecar.image.trim().is_empty() {
        problems.push("spec.sidecar.image must name the image carrying hsm-sidecar and the vendor module".to_owned());
    }
    let module_env = ModuleEnv::parse(&spec.sidecar).unwrap_or_else(|found| {
        problems.extend(found);
        ModuleEnv::default()
    });

    match (&spec.cluster, spec.provider) {
        (None, Provider::Primus) => problems.push(
            "spec.cluster is required for provider primus: list the HSMs in spec.cluster.members and the partition's user in spec.cluster.user".to_owned(),
        ),
        (Some(cluster), _) => {
            if cluster.members.is_empty() {
                problems.push("spec.cluster.members must list at least one HSM".to_owned());
            }
            if cluster.user.is_empty() || cluster.user.chars().any(char::is_control) {
                problems.push("spec.cluster.user must be a non-empty name without control characters".to_owned());
            }
            let mut seen = BTreeSet::new();
            for (i, m) in cluster.members.iter().enumerate() {
                if m.host.is_empty() || m.host.chars().any(|c| c.is_control() || c.is_whitespace() || c == '"') {
                    problems.push(format!("spec.cluster.members[{i}].host must be a host name or IP address"));
                }
                if m.port == 0 {
                    problems.push(format!("spec.cluster.members[{i}].port must be in 1..65535"));
                }
                if m.priority > 127 {
                    problems.push(format!("spec.cluster.members[{i}].priority must be in 0..127 (0 is the highest)"));
                }
                if !seen.insert((m.host.to_ascii_lowercase(), m.port)) {
                    problems.push(format!(
                        "spec.cluster.members[{i}] repeats {}:{}; list each HSM once",
                        m.host, m.port
                    ));
                }
            }
        }
        (None, Provider::Pkcs11) => {}
    }

    let method = match spec.enrollment.method {
        EnrollmentMethod::Ppin => {
            if spec.provider != Provider::Primus {
                problems.push(
                    "spec.enrollment.method ppin is the Securosys Primus tool and needs provider primus; use pkcs11-init-pin for provider pkcs11".to_owned(),
                );
            }
            if let Some(path) = &spec.enrollment.ppin_path {
                if !path.starts_with('/') {
                    problems
                        .push("spec.enrollment.ppinPath must be an absolute path inside the sidecar image".to_owned());
                }
            }
            spec.cluster.as_ref().map(|c| EnrollMethodArgs::Ppin {
                ppin_path: spec.enrollment.ppin_path.clone(),
                user: c.user.clone(),
            })
        }
        EnrollmentMethod::Pkcs11InitPin => match spec.token.as_ref().map(|t| t.label.as_str()) {
            Some(label) if !label.is_empty() && label.len() <= 32 => Some(EnrollMethodArgs::Pkcs11InitPin {
                module_path: spec.sidecar.module_path.clone(),
                token_label: label.to_owned(),
            }),
            Some(_) => {
                problems
                    .push("spec.token.label must be 1 to 32 bytes long (PKCS#11 token labels are 32 bytes)".to_owned());
                None
            }
            None => {
                problems.push(
                    "spec.token.label is required for enrollment method pkcs11-init-pin: name the token to enroll"
                        .to_owned(),
                );
                None
            }
        },
    };

    let setup = &spec.enrollment.setup_password_secret_ref;
    if setup.name.is_empty() || setup.key.is_empty() {
        problems.push("spec.enrollment.setupPasswordSecretRef needs both name and key".to_owned());
    }

    match method {
        Some(method) if problems.is_empty() => Ok(ValidSpec {
            provider_config: provider_config::render(
                spec.provider,
                spec.cluster.as_ref(),
                &format!("{namespace}/{name}"),
            ),
            enrollment: EnrollmentPlan {
                image: spec.sidecar.image.clone(),
                provider: spec.provider,
                method,
                setup_password: setup.clone(),
                module_env,
            },
        }),
        _ if problems.is_empty() => Err(InvalidSpec(vec!["spec.enrollment is incomplete".to_owned()])),
        _ => Err(InvalidSpec(problems)),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
