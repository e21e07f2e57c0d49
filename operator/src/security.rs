//! The one definition of how the operator's workloads run: the injected `hsm-sidecar` and shim
//! containers (`webhook/inject/`) and the enrollment Job (`owned.rs`) both meet the
//! "restricted" Pod Security Standard with these security contexts.
//!
//! The UID, GID and fsGroup is `hsmbridge_contract::RUN_AS_USER` (contract/contract.env): the
//! distroless `nonroot` user, and the fsGroup that makes a Secret volume's 0400 files readable to
//! the containers (the kubelet adds group read for the fsGroup).

use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, SeccompProfile, SecurityContext};

/// The "restricted" Pod Security Standard, as a container securityContext: non-root `uid`, no
/// privilege escalation, every capability dropped, read-only root filesystem, the runtime's
/// default seccomp profile.
pub fn restricted_container(uid: i64) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

/// The pod-level half of the restricted profile, for pods the operator creates itself: non-root
/// `uid`/`gid`, fsGroup `uid` (Secret volumes readable by the containers' group), the runtime's
/// default seccomp profile.
pub fn restricted_pod(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..PodSecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

#[cfg(test)]
mod tests {
    use hsmbridge_contract::RUN_AS_USER;

    use super::*;

    #[test]
    fn container_context_is_restricted() {
        let sc = restricted_container(RUN_AS_USER);
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.run_as_user, Some(65532));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.capabilities.and_then(|c| c.drop), Some(vec!["ALL".to_owned()]));
        assert_eq!(sc.seccomp_profile.map(|s| s.type_).as_deref(), Some("RuntimeDefault"));
        assert_eq!(sc.privileged, None);
    }

    #[test]
    fn pod_context_sets_fs_group() {
        let sc = restricted_pod(RUN_AS_USER);
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.fs_group, Some(65532));
        assert_eq!(sc.run_as_group, Some(65532));
        assert_eq!(sc.seccomp_profile.map(|s| s.type_).as_deref(), Some("RuntimeDefault"));
    }
}
