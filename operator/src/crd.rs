//! The `HsmPartition` custom resource (`hsmbridge.io/v1alpha1`): its spec, its status and the
//! CustomResourceDefinition generated from them.
//!
//! The schema carries every rule the API server can check on its own (required fields, ranges,
//! enums, patterns); the API server this project targets (1.20) has no CEL, so rules that relate
//! two fields live in `validate.rs` and surface as `ConfigRendered=False` reason `InvalidSpec`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The finalizer that makes the operator delete what it created.
pub const FINALIZER: &str = "hsmbridge.io/cleanup";
/// PKCS#11 `CKM_VENDOR_DEFINED`: vendor mechanisms are numbered from here.
pub const CKM_VENDOR_DEFINED: u64 = 0x8000_0000;
/// An object name (RFC 1123 DNS subdomain): Secrets, ConfigMaps, PVCs, ServiceAccounts.
const DNS_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Most entries of `spec.sidecar.rawParamMechanisms`.
pub const MAX_RAW_PARAM_MECHANISMS: usize = 64;
/// Most entries of `spec.sidecar.env`.
pub const MAX_SIDECAR_ENV: usize = 64;
/// Longest value of a `spec.sidecar.env` entry.
pub const MAX_SIDECAR_ENV_VALUE: usize = 4096;
/// Most entries of `spec.sidecar.volumes`.
pub const MAX_SIDECAR_VOLUMES: usize = 16;
/// Longest name of a `spec.sidecar.volumes` entry: the pod's volume is `hsmbridge-<index>-<name>`,
/// at most 63 characters with up to 16 partitions.
pub const MAX_SIDECAR_VOLUME_NAME: usize = 40;

/// An HSM partition that workloads of this namespace may use: where the HSMs are, how the
/// partition's credential is enrolled, and who may use it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "hsmbridge.io",
    version = "v1alpha1",
    kind = "HsmPartition",
    plural = "hsmpartitions",
    shortname = "hsmp",
    namespaced,
    status = "HsmPartitionStatus",
    printcolumn = r#"{"name":"Enrolled","type":"string","jsonPath":".status.conditions[?(@.type==\"Enrolled\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Credential","type":"integer","description":"Generation of the credential Secret (each enrollment or rotation adds 1)","jsonPath":".status.credentialGeneration"}"#,
    printcolumn = r#"{"name":"Config","type":"integer","description":"Generation of the provider ConfigMap (each change of its content adds 1)","jsonPath":".status.configGeneration"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Enrolled\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HsmPartitionSpec {
    /// Which PKCS#11 provider the sidecar loads: `primus` (Securosys Primus, configured by a
    /// rendered primus.cfg) or `pkcs11` (any other module, configured out of band).
    pub provider: Provider,
    /// The sidecar image and the vendor module inside it.
    pub sidecar: SidecarSpec,
    /// The HSM cluster the partition lives on. Required for provider `primus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSpec>,
    /// The PKCS#11 token. Required for enrollment method `pkcs11-init-pin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenSpec>,
    /// How the partition's permanent credential is obtained from the one-time setup password.
    pub enrollment: EnrollmentSpec,
    /// `managed`: the sidecar holds the PIN and logs in for the app; `app`: the app logs in itself.
    #[serde(default)]
    pub pin_mode: PinMode,
    /// ServiceAccounts of this namespace whose pods may use the partition. Empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<ServiceAccountName>,
    /// Keep the credential Secret when the partition is deleted. Without it, deleting the partition
    /// deletes the credential, and enrolling again needs a new setup password from the HSM admin.
    #[serde(default)]
    pub retain_credentials_on_delete: bool,
}

/// The PKCS#11 provider.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Primus,
    Pkcs11,
}

/// The image that carries `hsm-sidecar` and the vendor module.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// Image carrying `hsm-sidecar` and the vendor PKCS#11 module.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Absolute path of the vendor PKCS#11 module inside the image.
    #[schemars(regex(pattern = r"^/"), length(min = 2, max = 4096))]
    pub module_path: String,
    /// Vendor mechanisms (numbers >= 0x80000000, CKM_VENDOR_DEFINED, written as integers, e.g.
    /// 2147483649 for 0x80000001) whose parameter the bridge passes to the module as an opaque
    /// byte string (`hsm-sidecar serve --raw-param-mechanism`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(range(min = 0x8000_0000u64)))]
    pub raw_param_mechanisms: Vec<u64>,
    /// Environment of the sidecar and of the enrollment Job, for the vendor module (e.g.
    /// SOFTHSM2_CONF): plain values. Never given to the app containers. Refused: names starting
    /// with HSMBRIDGE_, SECUROSYS_PKCS11_CONF and SECUROSYS_SECRETS_CONF (the operator sets
    /// them), and variables that would redirect the credential or the loader rather than
    /// configure the module: KUBECONFIG, KUBERNETES_*, *_PROXY, SSL_CERT_FILE/DIR, LD_*,
    /// GLIBC_TUNABLES, RUST_*, HOME, PATH.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<SidecarEnvVar>,
    /// Volumes mounted into the sidecar and into the enrollment Job, for the vendor module (its
    /// configuration files, a token directory): each from a ConfigMap, a Secret or a
    /// PersistentVolumeClaim of the partition's namespace. Never mounted into the app containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub volumes: Vec<SidecarVolume>,
}

/// An environment variable of the sidecar and the enrollment Job.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarEnvVar {
    /// The variable's name.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// Its value (plain text; put secrets into a Secret volume instead).
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// A volume of the sidecar and the enrollment Job. Exactly one of `configMap`, `secret` and
/// `persistentVolumeClaim` is set (there is deliberately no hostPath: whoever may write an
/// HsmPartition must not mount node paths into the namespace's pods).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarVolume {
    /// Unique in the list: a DNS-1123 label of at most 40 characters.
    #[schemars(length(min = 1, max = 40), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Where the volume appears in the sidecar and the Job: an absolute path, neither in nor
    /// above /var/run/hsmbridge, /run/hsmbridge, /etc/hsmbridge, /opt/hsmbridge, /tmp
    /// (hsmbridge's own mounts), /var/run/secrets or /run/secrets (the ServiceAccount token).
    #[schemars(length(min = 2, max = 4096), regex(pattern = r"^/"))]
    pub mount_path: String,
    /// Read-only unless false (e.g. a token directory the module writes).
    #[serde(default = "default_true")]
    pub read_only: bool,
    /// A path inside the volume to mount instead of its root: relative, without `..`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub sub_path: Option<String>,
    /// A ConfigMap of the partition's namespace, its keys as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapRef>,
    /// A Secret of the partition's namespace, its keys as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// A PersistentVolumeClaim of the partition's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<ClaimRef>,
}

fn default_true() -> bool {
    true
}

/// A ConfigMap by name.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapRef {
    /// Name of the ConfigMap.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = DNS_SUBDOMAIN)
    )]
    pub name: String,
}

/// A Secret by name.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = DNS_SUBDOMAIN)
    )]
    pub secret_name: String,
}

/// A PersistentVolumeClaim by name.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRef {
    /// Name of the PersistentVolumeClaim.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = DNS_SUBDOMAIN)
    )]
    pub claim_name: String,
}

/// The HSMs of the cluster and the partition on them.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The HSMs. The same slot id and user name on every member make one redundant partition.
    #[schemars(length(min = 1, max = 16))]
    pub members: Vec<ClusterMember>,
    /// The partition's user name.
    #[schemars(length(min = 1, max = 128))]
    pub user: String,
    /// The slot id of the partition.
    #[serde(default)]
    pub slot_id: u32,
    /// How long the provider waits for an HSM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
}

/// One HSM of the cluster.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMember {
    /// Host name or IP address of the HSM.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9._:\[\]-]+$"))]
    pub host: String,
    /// TCP port of the HSM.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// 0 is the highest priority. The provider connects within the highest priority first.
    #[serde(default)]
    #[schemars(range(min = 0, max = 127))]
    pub priority: u8,
}

fn default_port() -> u16 {
    2310
}

/// Provider timeouts (Primus: `wait_delay`, `wait_max_tries`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Seconds to wait between connection attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub wait_delay_seconds: Option<u32>,
    /// How many times to try before giving up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub wait_max_tries: Option<u32>,
}

/// The PKCS#11 token.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenSpec {
    /// Token label (at most 32 bytes in PKCS#11). `pkcs11-init-pin` enrolls this token.
    #[schemars(length(min = 1, max = 32))]
    pub label: String,
}

/// How the permanent credential is obtained.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentSpec {
    /// `ppin` (Securosys Primus) or `pkcs11-init-pin` (any PKCS#11 token).
    pub method: EnrollmentMethod,
    /// The Secret key holding the one-time setup password. It is read only by the enrollment Job.
    pub setup_password_secret_ref: SecretKeyRef,
    /// Path of the vendor's `ppin` binary inside the sidecar image (method `ppin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/"), length(min = 2, max = 4096))]
    pub ppin_path: Option<String>,
}

/// The enrollment method.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EnrollmentMethod {
    Ppin,
    #[serde(rename = "pkcs11-init-pin")]
    Pkcs11InitPin,
}

/// A key of a Secret in the partition's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = DNS_SUBDOMAIN)
    )]
    pub name: String,
    /// Key in the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Who holds the PIN.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PinMode {
    #[default]
    Managed,
    App,
}

/// A ServiceAccount name (DNS-1123 subdomain).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct ServiceAccountName(
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = DNS_SUBDOMAIN)
    )]
    pub String,
);

/// What the operator observed and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HsmPartitionStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Secret holding the enrolled credential (`pin`, and `secrets.cfg` for ppin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_secret: Option<String>,
    /// The credential Secret's `generation` (1 after the first enrollment, +1 per enrollment or
    /// rotation; 0 while it has none). Each sidecar reports the one it runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_generation: Option<i64>,
    /// The provider ConfigMap's `generation` (1 when rendered first, +1 per change of its content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_generation: Option<i64>,
    /// Enrollment bookkeeping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<EnrollmentStatus>,
    /// `ConfigRendered`, `Enrolled` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Enrollment bookkeeping: how often a Job was started and for which setup password.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentStatus {
    /// Enrollment Jobs started so far.
    #[serde(default)]
    pub attempts: u32,
    /// resourceVersion of the setup-password Secret the last Job used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_password_version: Option<String>,
    /// Name of the last enrollment Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// The CustomResourceDefinition, with the schema made acceptable to a 1.20 API server.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = HsmPartition::crd();
    for version in &mut crd.spec.versions {
        if let Some(validation) = version.schema.as_mut() {
            if let Some(schema) = validation.open_api_v3_schema.as_mut() {
                crate::crd_schema::make_structural(schema);
            }
        }
    }
    crd
}

/// The CRD as YAML, as `hsm-operator crd` prints it and `crds/hsmpartition.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(&crd())?;
    Ok(format!(
        "# Generated by `hsm-operator crd` from operator/src/crd.rs. Do not edit.\n---\n{body}"
    ))
}

#[cfg(test)]
#[path = "crd_tests.rs"]
mod tests;
