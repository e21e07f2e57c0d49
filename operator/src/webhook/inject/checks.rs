//! The admission checks: what the pod alone decides ([`precheck`]), whether the pod may use a
//! partition ([`check_usable`]), which of its containers get the shim, and that the names and
//! mount paths hsmbridge adds are free. Each failure is a [`Denial`].

use hsmbridge_contract::{APP_LIB_DIR, SOCKET_DIR};
use k8s_openapi::api::core::v1::{Container, Pod};

use super::super::annotations::{InjectRequest, SidecarMode};
use super::super::limits::MAX_CONTAINERS;
use super::denial::Denial;
use super::shim::SHIM_CONTAINER;
use super::sidecar::SidecarPlan;
use super::{VOLUME_LIB, VOLUME_SOCKET, VOLUME_TMP};
use crate::conditions::{is_ready, ready_condition};
use crate::crd::HsmPartition;

/// What the pod alone decides, before any partition is looked up: it has a spec, does not share
/// its process namespace, and has at most [`MAX_CONTAINERS`] containers.
pub fn precheck(pod: &Pod) -> Result<(), Denial> {
    let Some(spec) = pod.spec.as_ref() else {
        return Err(Denial::NoSpec);
    };
    if spec.share_process_namespace == Some(true) {
        return Err(Denial::SharedProcessNamespace);
    }
    let count = spec.containers.len() + spec.init_containers.as_ref().map_or(0, Vec::len);
    if count > MAX_CONTAINERS {
        return Err(Denial::TooManyContainers { count });
    }
    Ok(())
}

/// The pod's ServiceAccount (`default` when it names none).
pub fn service_account(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|spec| {
            spec.service_account_name
                .clone()
                .or_else(|| spec.service_account.clone())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// Whether the pod (running as `service_account`) may use `partition` now: not being deleted,
/// Ready, and the ServiceAccount allowed.
pub fn check_usable(
    partition: &HsmPartition,
    namespace: &str,
    name: &str,
    service_account: &str,
) -> Result<(), Denial> {
    if partition.metadata.deletion_timestamp.is_some() {
        return Err(Denial::PartitionDeleting {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }
    if !is_ready(partition) {
        let condition = match ready_condition(partition) {
            None => "it has no Ready condition yet: is hsm-operator running?".to_owned(),
            Some(c) if c.message.is_empty() => format!("Ready={}, reason {}", c.status, c.reason),
            Some(c) => format!("Ready={}, reason {}: {}", c.status, c.reason, c.message),
        };
        return Err(Denial::NotReady {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            condition,
        });
    }
    let allowed = &partition.spec.service_accounts;
    if !allowed.is_empty() && !allowed.iter().any(|sa| sa.0 == service_account) {
        return Err(Denial::ServiceAccountNotAllowed {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            service_account: service_account.to_owned(),
            allowed: allowed
                .iter()
                .map(|sa| format!("{:?}", sa.0))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(())
}

/// A container that gets the shim, by its place in the pod.
#[derive(Clone, Copy, Debug)]
pub(super) struct Target {
    pub(super) init: bool,
    pub(super) index: usize,
}

impl Target {
    pub(super) fn list(&self) -> &'static str {
        if self.init {
            "initContainers"
        } else {
            "containers"
        }
    }

    pub(super) fn container<'a>(&self, containers: &'a [Container], init: &'a [Container]) -> &'a Container {
        // The index came from enumerating the same slice.
        if self.init {
            &init[self.index]
        } else {
            &containers[self.index]
        }
    }
}

/// The containers that get the shim: the `hsmbridge.io/containers` annotation's, or every
/// regular container.
pub(super) fn select_containers(
    containers: &[Container],
    init_containers: &[Container],
    request: &InjectRequest,
    mode: SidecarMode,
) -> Result<Vec<Target>, Denial> {
    let Some(names) = &request.containers else {
        return Ok((0..containers.len())
            .map(|index| Target { init: false, index })
            .collect());
    };
    names
        .iter()
        .map(|name| {
            if let Some(index) = containers.iter().position(|c| &c.name == name) {
                return Ok(Target { init: false, index });
            }
            if let Some(index) = init_containers.iter().position(|c| &c.name == name) {
                return match mode {
                    SidecarMode::Native => Ok(Target { init: true, index }),
                    SidecarMode::Container => Err(Denial::InitContainerNeedsNativeSidecar { name: name.clone() }),
                };
            }
            Err(Denial::UnknownContainer {
                name: name.clone(),
                known: containers
                    .iter()
                    .chain(init_containers)
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        })
        .collect()
}

/// No container or volume of the pod has a name hsmbridge adds.
pub(super) fn check_names_free(
    pod: &Pod,
    containers: &[Container],
    init_containers: &[Container],
    sidecars: &[SidecarPlan],
) -> Result<(), Denial> {
    let mut ours: Vec<&str> = vec![SHIM_CONTAINER];
    ours.extend(sidecars.iter().map(|s| s.container_name.as_str()));
    if let Some(c) = containers
        .iter()
        .chain(init_containers)
        .find(|c| ours.contains(&c.name.as_str()))
    {
        return Err(Denial::NameTaken {
            kind: "container",
            name: c.name.clone(),
        });
    }
    let mut our_volumes: Vec<String> = [VOLUME_LIB, VOLUME_SOCKET, VOLUME_TMP].map(str::to_owned).to_vec();
    for s in sidecars {
        our_volumes.extend(s.volume_names());
    }
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    if let Some(v) = volumes.into_iter().flatten().find(|v| our_volumes.contains(&v.name)) {
        return Err(Denial::NameTaken {
            kind: "volume",
            name: v.name.clone(),
        });
    }
    Ok(())
}

/// No selected container already mounts something where hsmbridge mounts the shim or the socket.
pub(super) fn check_mount_paths(
    targets: &[Target],
    containers: &[Container],
    init_containers: &[Container],
) -> Result<(), Denial> {
    for target in targets {
        let container = target.container(containers, init_containers);
        for (path, what) in [(APP_LIB_DIR, "the shim"), (SOCKET_DIR, "the sidecar's socket")] {
            let taken = container
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path.trim_end_matches('/') == path);
            if taken {
                return Err(Denial::MountPathTaken {
                    container: container.name.clone(),
                    path,
                    what,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
