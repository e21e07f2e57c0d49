//! Names, labels, annotations and paths shared with `hsm-sidecar enroll`, the tests and the
//! webhook (see operator/CONTRACT.md). Users and other components depend on them: do not churn.

use std::collections::BTreeMap;

/// Field manager for server-side apply, and the `app.kubernetes.io/managed-by` label value.
pub const MANAGER: &str = "hsm-operator";
/// Name of the leader-election Lease.
pub const LEASE_NAME: &str = "hsm-operator-leader";

/// Label put on every object the operator creates.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label naming the partition an object belongs to.
pub const LABEL_PARTITION: &str = "hsmbridge.io/partition";
/// Label naming the part an object plays (`enrollment`, `provider-config`, `credentials`).
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// [`LABEL_COMPONENT`] of the credential Secret.
pub const COMPONENT_CREDENTIALS: &str = "credentials";

/// Credential Secret annotation written by the enrollment Job on failure.
pub const ANNOTATION_ENROLLMENT_ERROR: &str = "hsmbridge.io/enrollment-error";
/// Human text accompanying [`ANNOTATION_ENROLLMENT_ERROR`]; never a secret.
pub const ANNOTATION_ENROLLMENT_MESSAGE: &str = "hsmbridge.io/enrollment-message";
/// Credential Secret annotation: the uid of the HsmPartition it belongs to. With
/// `retainCredentialsOnDelete` the Secret has no ownerReference (so no garbage collector deletes
/// it), and this is what says it is the partition's; a Secret kept from an earlier partition of
/// the same name carries the earlier uid (see ownership.rs).
pub const ANNOTATION_PARTITION_UID: &str = "hsmbridge.io/partition-uid";
/// Job annotation recording which setup-password Secret version the Job uses.
pub const ANNOTATION_SETUP_PASSWORD_VERSION: &str = "hsmbridge.io/setup-password-version";

/// Credential Secret key holding the PIN (the permanent secret).
pub const KEY_PIN: &str = "pin";
/// Provider ConfigMap key holding the Primus configuration.
pub const KEY_PRIMUS_CFG: &str = "primus.cfg";
/// Credential Secret key of the ppin secrets file.
pub const KEY_SECRETS_CFG: &str = "secrets.cfg";
/// Where the credential Secret is mounted in the injected sidecar.
pub const CREDENTIALS_DIR: &str = "/etc/hsmbridge/credentials";

/// Where the enrollment Job finds the setup password.
pub const SETUP_DIR: &str = "/var/run/hsmbridge/setup";
/// File name of the setup password inside [`SETUP_DIR`].
pub const SETUP_FILE: &str = "setup-password";
/// Where the provider ConfigMap is mounted.
pub const PROVIDER_DIR: &str = "/etc/hsmbridge/provider";
/// Environment variable the Primus provider reads its configuration path from.
pub const ENV_PRIMUS_CONF: &str = "SECUROSYS_PKCS11_CONF";
/// Primus provider 1.8.4+: the environment variable naming the secrets file ppin wrote (the
/// webhook points it into the credential Secret for ppin partitions).
pub const ENV_PRIMUS_SECRETS: &str = "SECUROSYS_SECRETS_CONF";

const JOB_SUFFIX: &str = "-enroll-";
const HASH_HEX_LEN: usize = 8;
/// Longest partition name whose enrollment Job name (`<name>-enroll-<8 hex>`) fits the 63
/// characters of the `job-name` label the Job controller puts on its pods.
pub const MAX_PARTITION_NAME_LEN: usize = 63 - JOB_SUFFIX.len() - HASH_HEX_LEN;

/// ConfigMap holding the rendered provider configuration.
pub fn provider_config_map(partition: &str) -> String {
    format!("{partition}-provider")
}

/// What [`credential_secret`] appends to the partition's name.
pub const CREDENTIALS_SUFFIX: &str = "-credentials";

/// Secret holding the enrolled credential.
pub fn credential_secret(partition: &str) -> String {
    format!("{partition}{CREDENTIALS_SUFFIX}")
}

/// ServiceAccount, Role and RoleBinding of the enrollment Job.
pub fn enroll_identity(partition: &str) -> String {
    format!("{partition}-enroll")
}

/// The enrollment Job for one version of the setup-password Secret:
/// `<name>-enroll-<first 8 hex digits of sha256(setupPasswordVersion)>`.
pub fn enrollment_job(partition: &str, setup_password_version: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, setup_password_version.as_bytes());
    let hex: String = digest
        .as_ref()
        .iter()
        .take(HASH_HEX_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{partition}{JOB_SUFFIX}{hex}")
}

/// Labels of every object the operator creates for `partition`.
pub fn labels(partition: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (LABEL_PARTITION.to_owned(), partition.to_owned()),
        (LABEL_COMPONENT.to_owned(), component.to_owned()),
    ])
}

/// Label selector of everything the operator created for `partition`.
pub fn partition_selector(partition: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGER},{LABEL_PARTITION}={partition}")
}

/// Label selector of everything the operator created.
pub fn managed_selector() -> String {
    format!("{LABEL_MANAGED_BY}={MANAGER}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_name_is_name_enroll_and_8_hex_of_sha256() {
        // sha256("12345") = 5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5
        assert_eq!(enrollment_job("payments", "12345"), "payments-enroll-5994471a");
    }

    #[test]
    fn longest_name_gives_a_63_char_job_name() {
        let name = "a".repeat(MAX_PARTITION_NAME_LEN);
        assert_eq!(MAX_PARTITION_NAME_LEN, 47);
        assert_eq!(enrollment_job(&name, "1").len(), 63);
    }

    #[test]
    fn object_names() {
        assert_eq!(provider_config_map("p"), "p-provider");
        assert_eq!(credential_secret("p"), "p-credentials");
        assert_eq!(enroll_identity("p"), "p-enroll");
    }
}
