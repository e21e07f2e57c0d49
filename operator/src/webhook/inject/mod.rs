//! What happens when a pod is created: pod + its HsmPartitions + what the API server supports
//! → a JSONPatch that adds the sidecar and the shim, or a denial a human can act on. Pure: no
//! I/O, so every case is a unit test on real `Pod` structs.
//!
//! The patch only adds (never replaces what the user wrote):
//! - volumes `hsmbridge-lib` (the shim, at /opt/hsmbridge/lib), `hsmbridge-socket` (the Unix
//!   socket, at /var/run/hsmbridge), `hsmbridge-tmp` (the sidecar's /tmp: its root filesystem
//!   is read-only), and per partition its credential Secret (mode 0400) and provider ConfigMap;
//! - init container `hsmbridge-shim`: `hsm-sidecar install-shim` copies `libhsmbridge_pkcs11.so`
//!   from its image into `hsmbridge-lib`;
//! - per partition a sidecar running `hsm-sidecar serve` (the first partition's is `hsm-sidecar`
//!   on /var/run/hsmbridge/pkcs11.sock), with the Secret and ConfigMap mounted only into it: an
//!   init container with `restartPolicy: Always` (native sidecar, 1.29+) or the first regular
//!   container;
//! - in each selected app container: the two mounts (read-only) and `HSMBRIDGE_SOCKET`,
//!   `PKCS11_MODULE_PATH`, `HSMBRIDGE_CONTAINER` (its own name, which the shim reports to the
//!   sidecar's audit trail: a claim, not proof) unless the container sets them itself;
//! - pod `securityContext.fsGroup` when unset: the Secret volume (0400 → 0440 group fsGroup) is
//!   then readable by the non-root sidecar, and the socket (0660, group fsGroup through the
//!   setgid emptyDir) reachable by the app containers, which get fsGroup as a supplementary group;
//! - annotation `hsmbridge.io/inject-status: injected`, and `prometheus.io/scrape: "true"`,
//!   `prometheus.io/port: <the first sidecar's metrics port>`, `prometheus.io/path: /metrics`
//!   unless the pod sets any `prometheus.io/{scrape,port,path}` itself.
//!
//! The sidecar runs `hsm-sidecar serve --module … --socket … [--pin-file …] --health-addr …
//! --metrics-addr 0.0.0.0:<metrics port> --watch-config /etc/hsmbridge/provider` (and a
//! `--watch-config` per whole-ConfigMap volume of `spec.sidecar.volumes`), with the
//! container port `hsm-metrics` (`hsm-metrics-<i>` for sidecar i > 0), the env
//! `HSMBRIDGE_POD_NAMESPACE`, `HSMBRIDGE_POD_NAME` (downward API) and `HSMBRIDGE_PARTITION`,
//! plus `--raw-param-mechanism 0x<hex>` per entry of the partition's
//! `spec.sidecar.rawParamMechanisms`; its readiness probe asks its health server (gRPC from
//! Kubernetes 1.24, `hsm-sidecar probe` before). Refused before any partition is looked up ([`precheck`]):
//! a pod with `spec.shareProcessNamespace: true` (the app containers would see the sidecar's
//! processes, and through /proc its memory and files) and a pod with more than
//! [`MAX_CONTAINERS`](super::limits::MAX_CONTAINERS) containers.
//!
//! Several partitions: one sidecar each (the sidecar serves one module and one PIN). The first
//! partition is the one `HSMBRIDGE_SOCKET` points to; partition N>0 listens on
//! `/var/run/hsmbridge/pkcs11-<name>.sock`, which an app selects by setting `HSMBRIDGE_SOCKET`,
//! and on health port `health_port + N`, metrics port `metrics_port + N` (a pod whose ports
//! would clash, more than 10 partitions with the default ports, is refused).
//!
//! Files, in the order a review runs: `checks.rs` (the admission checks), `denial.rs` (why a pod
//! is refused), `sidecar.rs` (one partition's sidecar container and its volumes), `shim.rs` (the
//! init container and what app containers get), `patch.rs` (the JSONPatch encoding), and this
//! file's [`inject`], which runs them in order. `settings.rs`: what it depends on besides the pod.

mod checks;
mod denial;
mod patch;
mod settings;
mod shim;
mod sidecar;
#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;

use json_patch::Patch;
use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, EnvVar, Pod, PodSecurityContext, PodSpec, Volume};

pub use self::checks::{check_usable, precheck, service_account};
pub use self::denial::Denial;
pub use self::settings::{ServerCaps, Settings};

use self::checks::{check_mount_paths, check_names_free, select_containers};
use self::patch::Ops;
use self::shim::shim_container;
use self::sidecar::SidecarPlan;
use super::annotations::{InjectRequest, SidecarMode, INJECTED, INJECT_STATUS};
use crate::crd::HsmPartition;

pub const VOLUME_LIB: &str = "hsmbridge-lib";
pub const VOLUME_SOCKET: &str = "hsmbridge-socket";
pub const VOLUME_TMP: &str = "hsmbridge-tmp";
/// kubectl's default container for logs/exec, set when the sidecar becomes the first container.
pub const ANNOTATION_DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
/// The scrape annotations of Prometheus' `kubernetes-pods` job (the common convention).
pub const PROMETHEUS_SCRAPE: &str = "prometheus.io/scrape";
pub const PROMETHEUS_PORT: &str = "prometheus.io/port";
pub const PROMETHEUS_PATH: &str = "prometheus.io/path";

/// The patch that injects `request` into `pod` (in `namespace`), or why not.
/// `partitions` holds the partitions found, by name; a requested name missing from it is unknown.
pub fn inject(
    pod: &Pod,
    namespace: &str,
    request: &InjectRequest,
    partitions: &BTreeMap<String, HsmPartition>,
    settings: &Settings,
    caps: ServerCaps,
) -> Result<Patch, Denial> {
    precheck(pod)?;
    let Some(spec) = pod.spec.clone() else {
        return Err(Denial::NoSpec);
    };
    let service_account = service_account(pod);
    let mode = request.sidecar_mode.unwrap_or(if caps.native_sidecars {
        SidecarMode::Native
    } else {
        SidecarMode::Container
    });

    if mode == SidecarMode::Native && !caps.native_sidecars_forcible {
        return Err(Denial::NativeSidecarUnsupported);
    }

    let mut sidecars = Vec::with_capacity(request.partitions.len());
    for (index, name) in request.partitions.iter().enumerate() {
        let partition = partitions.get(name).ok_or_else(|| Denial::UnknownPartition {
            namespace: namespace.to_owned(),
            name: name.clone(),
        })?;
        check_usable(partition, namespace, name, &service_account)?;
        sidecars.push(SidecarPlan::new(index, name, partition, settings)?);
    }
    check_ports_distinct(&sidecars)?;

    let init_containers = spec.init_containers.clone().unwrap_or_default();
    let targets = select_containers(&spec.containers, &init_containers, request, mode)?;
    check_names_free(pod, &spec.containers, &init_containers, &sidecars)?;
    check_mount_paths(&targets, &spec.containers, &init_containers)?;

    let mut ops = Ops::default();
    annotate(&mut ops, pod, &spec, mode, settings)?;
    set_fs_group(&mut ops, &spec, settings)?;

    // Volumes.
    let mut volumes = vec![empty_dir(VOLUME_LIB), empty_dir(VOLUME_SOCKET), empty_dir(VOLUME_TMP)];
    for sidecar in &sidecars {
        volumes.extend(sidecar.volumes());
    }
    ops.append(&["spec", "volumes"], spec.volumes.is_some(), &volumes)?;

    // App containers, at their original indices (before anything is inserted).
    for target in &targets {
        shim::add_to_app(&mut ops, target, target.container(&spec.containers, &init_containers))?;
    }

    // Injected containers.
    let mut new_init = vec![shim_container(settings)];
    let mut new_regular = Vec::new();
    for sidecar in &sidecars {
        let container = sidecar.container(settings, caps, mode);
        match mode {
            SidecarMode::Native => new_init.push(container),
            SidecarMode::Container => new_regular.push(container),
        }
    }
    ops.prepend(&["spec", "initContainers"], spec.init_containers.is_some(), &new_init)?;
    if !new_regular.is_empty() {
        // First, so the kubelet starts it before the app containers.
        ops.prepend(&["spec", "containers"], true, &new_regular)?;
    }
    Ok(ops.into_patch())
}

/// `hsmbridge.io/inject-status: injected`; kubectl's default container when the sidecar
/// becomes the first container (unless the pod names one); and the `prometheus.io/*` scrape
/// annotations for the first sidecar's `/metrics`, unless the pod sets any of them (its own
/// scraping is never changed).
fn annotate(ops: &mut Ops, pod: &Pod, spec: &PodSpec, mode: SidecarMode, settings: &Settings) -> Result<(), Denial> {
    let mut new_annotations = vec![(INJECT_STATUS, INJECTED.to_owned())];
    let existing = pod.metadata.annotations.as_ref();
    let has = |key: &str| existing.is_some_and(|a| a.contains_key(key));
    if mode == SidecarMode::Container && !has(ANNOTATION_DEFAULT_CONTAINER) {
        if let Some(first) = spec.containers.first() {
            new_annotations.push((ANNOTATION_DEFAULT_CONTAINER, first.name.clone()));
        }
    }
    if ![PROMETHEUS_SCRAPE, PROMETHEUS_PORT, PROMETHEUS_PATH]
        .into_iter()
        .any(has)
    {
        new_annotations.push((PROMETHEUS_SCRAPE, "true".to_owned()));
        new_annotations.push((PROMETHEUS_PORT, settings.metrics_port.to_string()));
        new_annotations.push((PROMETHEUS_PATH, "/metrics".to_owned()));
    }
    if existing.is_none() {
        let map: BTreeMap<&str, String> = new_annotations.into_iter().collect();
        ops.add(&["metadata", "annotations"], &map)?;
    } else {
        for (key, value) in new_annotations {
            ops.add(&["metadata", "annotations", key], &value)?;
        }
    }
    Ok(())
}

/// The sidecars share the pod's network namespace: no two may listen on one port.
fn check_ports_distinct(sidecars: &[SidecarPlan]) -> Result<(), Denial> {
    let mut owners: BTreeMap<u16, usize> = BTreeMap::new();
    for (index, sidecar) in sidecars.iter().enumerate() {
        for port in sidecar.ports() {
            if let Some(first) = owners.insert(port, index) {
                return Err(Denial::PortsClash {
                    count: sidecars.len(),
                    port,
                    first,
                    second: index,
                });
            }
        }
    }
    Ok(())
}

/// Pod security context: an fsGroup, unless the pod has one.
fn set_fs_group(ops: &mut Ops, spec: &PodSpec, settings: &Settings) -> Result<(), Denial> {
    match &spec.security_context {
        None => ops.add(
            &["spec", "securityContext"],
            &PodSecurityContext {
                fs_group: Some(settings.run_as_user),
                ..PodSecurityContext::default()
            },
        ),
        Some(sc) if sc.fs_group.is_none() => ops.add(&["spec", "securityContext", "fsGroup"], &settings.run_as_user),
        Some(_) => Ok(()),
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
