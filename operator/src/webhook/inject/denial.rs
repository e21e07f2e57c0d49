//! Why a pod is refused: one variant per reason, each a sentence a human can act on (it is what
//! `kubectl create` prints).

use super::super::annotations::{CONTAINERS, INJECT_STATUS, LABEL_INJECT, PARTITION, SIDECAR_MODE};
use super::super::limits::MAX_CONTAINERS;
use super::sidecar::MAX_CONTAINER_NAME;

/// Why a pod is refused. The text is what `kubectl create` prints.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("HsmPartition {name:?} not found in namespace {namespace:?} (annotation {PARTITION}): create it, or fix the annotation; `kubectl -n {namespace} get hsmpartitions` lists the partitions")]
    UnknownPartition { namespace: String, name: String },
    #[error("HsmPartition {namespace}/{name} is being deleted")]
    PartitionDeleting { namespace: String, name: String },
    #[error("HsmPartition {namespace}/{name} is not Ready ({condition}); see `kubectl -n {namespace} describe hsmpartition {name}`")]
    NotReady {
        namespace: String,
        name: String,
        condition: String,
    },
    #[error("ServiceAccount {service_account:?} may not use HsmPartition {namespace}/{name}: its spec.serviceAccounts allows {allowed}; run the pod as one of them, or add {service_account:?} to the partition")]
    ServiceAccountNotAllowed {
        namespace: String,
        name: String,
        service_account: String,
        allowed: String,
    },
    #[error("annotation {CONTAINERS} names {name:?}, which is not a container of this pod (containers: {known})")]
    UnknownContainer { name: String, known: String },
    #[error("annotation {CONTAINERS} names init container {name:?}: init containers can use the HSM only with native sidecars (Kubernetes 1.29+, or annotation {SIDECAR_MODE}: native)")]
    InitContainerNeedsNativeSidecar { name: String },
    #[error("annotation {SIDECAR_MODE}: native needs Kubernetes 1.28+ (native sidecars); this API server would drop restartPolicy and the sidecar would block the pod's start: use {SIDECAR_MODE}: container or remove the annotation")]
    NativeSidecarUnsupported,
    #[error("the pod already has a {kind} named {name:?} but no {INJECT_STATUS} annotation: hsmbridge reserves that name, rename yours")]
    NameTaken { kind: &'static str, name: String },
    #[error("container {container:?} already mounts a volume at {path}, where hsmbridge mounts {what}")]
    MountPathTaken {
        container: String,
        path: &'static str,
        what: &'static str,
    },
    #[error("HsmPartition name {name:?} is too long for its sidecar container name {container:?} (at most {MAX_CONTAINER_NAME} characters); use it as the first partition, or rename it")]
    NameTooLong { name: String, container: String },
    #[error("HsmPartition {namespace}/{name} has an invalid spec.sidecar ({problems}); fix the partition (its ConfigRendered condition says the same once hsm-operator has seen it)")]
    InvalidSidecar {
        namespace: String,
        name: String,
        problems: String,
    },
    #[error("the pod has no spec")]
    NoSpec,
    #[error("the pod sets spec.shareProcessNamespace: true, which hsmbridge refuses: the hsm-sidecar container holds the partition's credential, and a process namespace shared with the app containers lets them see its processes and reach its memory and files through /proc. Remove shareProcessNamespace (or the {LABEL_INJECT} label)")]
    SharedProcessNamespace,
    #[error(
        "the pod has {count} containers and init containers; hsmbridge injects into pods with at most {MAX_CONTAINERS}"
    )]
    TooManyContainers { count: usize },
    #[error("too many partitions: the sidecars' health or metrics ports would go past 65535")]
    TooManyPartitions,
    #[error("the pod asks for {count} partitions, but then sidecar {second}'s port {port} would also be sidecar {first}'s (health ports and metrics ports count up from the operator's two first ports): use fewer partitions in one pod, or have hsm-operator run with another --sidecar-metrics-port")]
    PortsClash {
        count: usize,
        port: u16,
        first: usize,
        second: usize,
    },
    #[error("internal error while building the patch: {0}")]
    Internal(String),
}
