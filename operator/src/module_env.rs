//! What the vendor module needs besides the image: `spec.sidecar.env` and `spec.sidecar.volumes`
//! (SoftHSM: `SOFTHSM2_CONF` and its token directory; vendor modules: their configuration
//! files). [`ModuleEnv::parse`] checks them (validate.rs reports the problems as
//! `ConfigRendered=False` reason `InvalidSpec`; the webhook refuses a partition whose spec
//! fails them, in case it changed after it was Ready) and gives what both places that load the
//! module get: the injected sidecar (`webhook/inject/sidecar.rs`) and the enrollment Job
//! (`owned.rs`). Never the app containers.
//!
//! There is no hostPath by construction (`crd::SidecarVolume` has no such source): whoever may
//! write an HsmPartition must not be able to mount node paths into the namespace's pods. Mount
//! paths stay out of hsmbridge's own directories, so a partition cannot shadow the socket, the
//! credential, the provider config, the shim or `/tmp`.

use hsmbridge_contract::SOCKET_DIR;
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EnvVar, PersistentVolumeClaimVolumeSource, SecretVolumeSource, Volume, VolumeMount,
};

use crate::crd::{
    SidecarSpec, SidecarVolume, MAX_SIDECAR_ENV, MAX_SIDECAR_ENV_VALUE, MAX_SIDECAR_VOLUMES, MAX_SIDECAR_VOLUME_NAME,
};
use crate::names::{ENV_PRIMUS_CONF, ENV_PRIMUS_SECRETS};

/// Variables the operator sets itself, besides every `HSMBRIDGE_*`.
const RESERVED_ENV: [&str; 2] = [ENV_PRIMUS_CONF, ENV_PRIMUS_SECRETS];
/// The webhook's own variables (the app's socket, the sidecar's pod identity for its audit
/// trail and metrics: `HSMBRIDGE_POD_NAMESPACE`, `HSMBRIDGE_POD_NAME`, `HSMBRIDGE_PARTITION`),
/// and any the sidecar may read later: a partition must not forge them. Matched without regard
/// to case, as [`DENIED_ENV`] is.
const RESERVED_ENV_PREFIX: &str = "HSMBRIDGE_";
/// Variables that would redirect what the processes holding the credential do, not configure
/// the module: where the enrollment Job's Kubernetes client sends the permanent secret
/// (`KUBECONFIG`, `KUBERNETES_*`, proxies, TLS roots), which code the dynamic loader runs
/// (`LD_*`, `GLIBC_TUNABLES`), and what the Rust runtime logs (`RUST_*`). Matched without
/// regard to case; `*` ends a prefix, a leading `*` starts a suffix.
const DENIED_ENV: [&str; 10] = [
    "KUBECONFIG",
    "KUBERNETES_*",
    "LD_*",
    "GLIBC_TUNABLES",
    "RUST_*",
    "*_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HOME",
    "PATH",
];
/// Directories hsmbridge mounts into (or under) in the sidecar, the Job and the app containers
/// (a test checks that every such mount is under one), and where the kubelet mounts the
/// ServiceAccount token the enrollment Job writes the credential Secret with. `/run` because
/// `/var/run` is a symlink to it in most images.
const RESERVED_DIRS: [&str; 7] = [
    SOCKET_DIR,
    "/run/hsmbridge",
    CREDENTIALS_PARENT,
    APP_LIB_PARENT,
    "/tmp",
    "/var/run/secrets",
    "/run/secrets",
];
/// The parents of the credential and provider mounts (names.rs, webhook/inject/sidecar.rs).
const CREDENTIALS_PARENT: &str = "/etc/hsmbridge";
/// The parent of the shim's directory (contract.env APP_LIB_DIR).
const APP_LIB_PARENT: &str = "/opt/hsmbridge";

/// `spec.sidecar.env` and `spec.sidecar.volumes`, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleEnv {
    env: Vec<(String, String)>,
    volumes: Vec<SidecarVolume>,
}

/// The name of volume `name` in a pod, for the partition at `index` of the pod's list (the
/// enrollment Job's pod uses index 0): `hsmbridge-<index>-<name>`, which no volume hsmbridge adds
/// otherwise is called.
pub fn volume_name(index: usize, name: &str) -> String {
    format!("hsmbridge-{index}-{name}")
}

impl ModuleEnv {
    /// The checked env and volumes of `spec`, or one sentence per problem.
    pub fn parse(spec: &SidecarSpec) -> Result<ModuleEnv, Vec<String>> {
        let mut problems = Vec::new();
        check_env(spec, &mut problems);
        check_volumes(spec, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ModuleEnv {
            env: spec.env.iter().map(|e| (e.name.clone(), e.value.clone())).collect(),
            volumes: spec.volumes.clone(),
        })
    }

    /// The environment variables, in the spec's order.
    pub fn env_vars(&self) -> Vec<EnvVar> {
        self.env
            .iter()
            .map(|(name, value)| EnvVar {
                name: name.clone(),
                value: Some(value.clone()),
                value_from: None,
            })
            .collect()
    }

    /// The pod's volumes, named by [`volume_name`] for partition `index`.
    pub fn volumes(&self, index: usize) -> Vec<Volume> {
        self.volumes
            .iter()
            .map(|v| Volume {
                name: volume_name(index, &v.name),
                config_map: v.config_map.as_ref().map(|c| ConfigMapVolumeSource {
                    name: c.name.clone(),
                    ..ConfigMapVolumeSource::default()
                }),
                secret: v.secret.as_ref().map(|s| SecretVolumeSource {
                    secret_name: Some(s.secret_name.clone()),
                    ..SecretVolumeSource::default()
                }),
                persistent_volume_claim: v.persistent_volume_claim.as_ref().map(|c| {
                    PersistentVolumeClaimVolumeSource {
                        claim_name: c.claim_name.clone(),
                        read_only: Some(v.read_only),
                    }
                }),
                ..Volume::default()
            })
            .collect()
    }

    /// Where the ConfigMap volumes are mounted whole (the sidecar watches them: `--watch-config`).
    /// A `subPath` mount is left out: the kubelet never updates it.
    pub fn config_map_dirs(&self) -> Vec<&str> {
        self.volumes
            .iter()
            .filter(|v| v.config_map.is_some() && v.sub_path.is_none())
            .map(|v| v.mount_path.as_str())
            .collect()
    }

    /// The container's mounts of [`ModuleEnv::volumes`].
    pub fn mounts(&self, index: usize) -> Vec<VolumeMount> {
        self.volumes
            .iter()
            .map(|v| VolumeMount {
                name: volume_name(index, &v.name),
                mount_path: v.mount_path.clone(),
                read_only: Some(v.read_only),
                sub_path: v.sub_path.clone(),
                ..VolumeMount::default()
            })
            .collect()
    }

    /// The names of [`ModuleEnv::volumes`].
    pub fn volume_names(&self, index: usize) -> Vec<String> {
        self.volumes.iter().map(|v| volume_name(index, &v.name)).collect()
    }
}

fn check_env(spec: &SidecarSpec, problems: &mut Vec<String>) {
    if spec.env.len() > MAX_SIDECAR_ENV {
        problems.push(format!(
            "spec.sidecar.env lists {} variables; at most {MAX_SIDECAR_ENV}",
            spec.env.len()
        ));
    }
    for (i, var) in spec.env.iter().enumerate() {
        let name = &var.name;
        if !is_env_name(name) {
            problems.push(format!(
                "spec.sidecar.env[{i}].name {name:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
            ));
        } else if name.to_ascii_uppercase().starts_with(RESERVED_ENV_PREFIX) || RESERVED_ENV.contains(&name.as_str()) {
            problems.push(format!(
                "spec.sidecar.env[{i}].name {name:?} is reserved: the operator sets HSMBRIDGE_* and the provider's {} itself",
                RESERVED_ENV.join(" and ")
            ));
        } else if let Some(rule) = denied_env(name) {
            problems.push(format!(
                "spec.sidecar.env[{i}].name {name:?} is refused ({rule}): it would change where the sidecar and the enrollment Job send the credential or which code they load, not configure the module"
            ));
        }
        if let Some(j) = spec.env[..i].iter().position(|e| e.name == *name) {
            problems.push(format!(
                "spec.sidecar.env[{i}] repeats {name:?} of spec.sidecar.env[{j}]: set each variable once"
            ));
        }
        if var.value.len() > MAX_SIDECAR_ENV_VALUE {
            problems.push(format!(
                "spec.sidecar.env[{i}].value is {} bytes long; at most {MAX_SIDECAR_ENV_VALUE} (put larger data into a volume)",
                var.value.len()
            ));
        }
    }
}

fn check_volumes(spec: &SidecarSpec, problems: &mut Vec<String>) {
    if spec.volumes.len() > MAX_SIDECAR_VOLUMES {
        problems.push(format!(
            "spec.sidecar.volumes lists {} volumes; at most {MAX_SIDECAR_VOLUMES}",
            spec.volumes.len()
        ));
    }
    for (i, v) in spec.volumes.iter().enumerate() {
        let at = format!("spec.sidecar.volumes[{i}]");
        if v.name.len() > MAX_SIDECAR_VOLUME_NAME || !is_dns_label(&v.name) {
            problems.push(format!(
                "{at}.name {:?} must be a DNS-1123 label (lowercase letters, digits and '-') of at most {MAX_SIDECAR_VOLUME_NAME} characters",
                v.name
            ));
        }
        if let Some(j) = spec.volumes[..i].iter().position(|o| o.name == v.name) {
            problems.push(format!(
                "{at}.name {:?} repeats spec.sidecar.volumes[{j}].name: volume names must be unique",
                v.name
            ));
        }
        let sources: Vec<&str> = [
            v.config_map.as_ref().map(|_| "configMap"),
            v.secret.as_ref().map(|_| "secret"),
            v.persistent_volume_claim.as_ref().map(|_| "persistentVolumeClaim"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if sources.len() != 1 {
            let has = if sources.is_empty() {
                "none".to_owned()
            } else {
                sources.join(" and ")
            };
            problems.push(format!(
                "{at} ({:?}) needs exactly one source, configMap {{name}}, secret {{secretName}} or persistentVolumeClaim {{claimName}}; it has {has} (hostPath and other sources are not supported)",
                v.name
            ));
        }
        for (field, object) in [
            ("configMap.name", v.config_map.as_ref().map(|c| &c.name)),
            ("secret.secretName", v.secret.as_ref().map(|s| &s.secret_name)),
            (
                "persistentVolumeClaim.claimName",
                v.persistent_volume_claim.as_ref().map(|c| &c.claim_name),
            ),
        ] {
            if let Some(object) = object.filter(|o| !is_dns_subdomain(o)) {
                problems.push(format!(
                    "{at}.{field} {object:?} is not an object name (a DNS-1123 subdomain)"
                ));
            }
        }
        check_mount_path(&at, v, &spec.volumes[..i], problems);
        if let Some(sub) = &v.sub_path {
            if sub.is_empty() || sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                problems.push(format!(
                    "{at}.subPath {sub:?} must be a relative path inside the volume, without '..'"
                ));
            }
        }
    }
}

fn check_mount_path(at: &str, v: &SidecarVolume, earlier: &[SidecarVolume], problems: &mut Vec<String>) {
    let path = &v.mount_path;
    if !path.starts_with('/') {
        problems.push(format!("{at}.mountPath {path:?} must be an absolute path"));
        return;
    }
    let Some(parts) = components(path) else {
        problems.push(format!("{at}.mountPath {path:?} must not contain '..'"));
        return;
    };
    if parts.is_empty() {
        problems.push(format!("{at}.mountPath must not be /"));
        return;
    }
    for dir in RESERVED_DIRS {
        let reserved = components(dir).unwrap_or_default();
        if parts.starts_with(&reserved) {
            problems.push(format!(
                "{at}.mountPath {path} is in {dir}, where hsmbridge or the kubelet mount their own volumes; choose another path"
            ));
        } else if reserved.starts_with(&parts) {
            problems.push(format!(
                "{at}.mountPath {path} would hide {dir}, where hsmbridge or the kubelet mount their own volumes; choose another path"
            ));
        }
    }
    if let Some(j) = earlier
        .iter()
        .position(|o| components(&o.mount_path).as_ref() == Some(&parts))
    {
        problems.push(format!(
            "{at}.mountPath {path} is also spec.sidecar.volumes[{j}].mountPath: mount paths must be unique"
        ));
    }
}

/// The [`DENIED_ENV`] rule `name` matches, if any.
fn denied_env(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    DENIED_ENV.into_iter().find(|rule| {
        if let Some(prefix) = rule.strip_suffix('*') {
            upper.starts_with(prefix)
        } else if let Some(suffix) = rule.strip_prefix('*') {
            upper.ends_with(suffix)
        } else {
            upper == *rule
        }
    })
}

/// The path's components without empty and `.` ones; `None` when one is `..`.
fn components(path: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    (!parts.contains(&"..")).then_some(parts)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// RFC 1123 label: lowercase alphanumerics and '-', starting and ending alphanumeric, 1-63.
fn is_dns_label(s: &str) -> bool {
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !s.is_empty()
        && s.len() <= 63
        && ok_end(s.chars().next())
        && ok_end(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
#[path = "module_env_tests.rs"]
mod tests;
