//! What happens when a pod is created: pod + its HsmPartitions + what the API server supports
//! → a JSONPatch that adds the sidecar and the shim, or a denial a human can act on. Pure: no
//! I/O, so every case is a unit test on real `Pod` structs.
//!
//! The patch only adds (never replaces what the user wrote):
//! - volumes `hsmbridge-lib` (the shim, at /opt/hsmbridge/lib), `hsmbridge-socket` (the Unix
//!   socket, at /var/run/hsmbridge), `hsmbridge-tmp` (the sidecar's /tmp: its root filesystem
//!   is read-only), and per partition its credential Secret (mode 0400) and provider ConfigMap;
//! - init container `hsmbridge-shim`: copies `libhsmbridge_pkcs11.so` into `hsmbridge-lib`;
//! - per partition a sidecar running `hsm-sidecar serve` (the first partition's is `hsm-sidecar`
//!   on /var/run/hsmbridge/pkcs11.sock), with the Secret and ConfigMap mounted only into it: an
//!   init container with `restartPolicy: Always` (native sidecar, 1.29+) or the first regular
//!   container;
//! - in each selected app container: the two mounts (read-only) and `HSMBRIDGE_SOCKET`,
//!   `PKCS11_MODULE_PATH` (unless the container sets them itself);
//! - pod `securityContext.fsGroup` when unset: the Secret volume (0400 → 0440 group fsGroup) is
//!   then readable by the non-root sidecar, and the socket (0660, group fsGroup through the
//!   setgid emptyDir) reachable by the app containers, which get fsGroup as a supplementary group;
//! - annotation `hsmbridge.io/inject-status: injected`.
//!
//! The sidecar runs `hsm-sidecar serve --module … --socket … [--pin-file …] --health-addr …`,
//! plus `--raw-param-mechanism 0x<hex>` per entry of the partition's
//! `spec.sidecar.rawParamMechanisms`. Refused before any partition is looked up ([`precheck`]):
//! a pod with `spec.shareProcessNamespace: true` (the app containers would see the sidecar's
//! processes, and through /proc its memory and files) and a pod with more than
//! [`MAX_CONTAINERS`] containers.
//!
//! Several partitions: one sidecar each (the sidecar serves one module and one PIN). The first
//! partition is the one `HSMBRIDGE_SOCKET` points to; partition N>0 listens on
//! `/var/run/hsmbridge/pkcs11-<name>.sock`, which an app selects by setting `HSMBRIDGE_SOCKET`.

use std::collections::BTreeMap;

use hsmbridge_contract::{APP_LIB_DIR, APP_MODULE_PATH, ENV_MODULE_PATH, ENV_SOCKET, SOCKET_DIR, SOCKET_PATH};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, GRPCAction, Pod, PodSecurityContext, Probe,
    ResourceRequirements, SecretVolumeSource, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::Value;

use super::annotations::{
    InjectRequest, SidecarMode, CONTAINERS, INJECTED, INJECT_STATUS, LABEL_INJECT, PARTITION, SIDECAR_MODE,
};
use super::limits::MAX_CONTAINERS;
use crate::crd::{EnrollmentMethod, HsmPartition, PinMode, Provider};
use crate::names;
use crate::security;

/// Where the credential Secret is mounted in the sidecar.
pub const CREDENTIALS_DIR: &str = "/etc/hsmbridge/credentials";
/// Primus provider 1.8.4+: the secrets file ppin wrote.
pub const ENV_PRIMUS_SECRETS: &str = "SECUROSYS_SECRETS_CONF";
/// Credential Secret key of the ppin secrets file (CONTRACT.md).
pub const KEY_SECRETS_CFG: &str = "secrets.cfg";

/// The first partition's sidecar container.
pub const SIDECAR_CONTAINER: &str = "hsm-sidecar";
/// The init container that copies the shim.
pub const SHIM_CONTAINER: &str = "hsmbridge-shim";
pub const VOLUME_LIB: &str = "hsmbridge-lib";
pub const VOLUME_SOCKET: &str = "hsmbridge-socket";
pub const VOLUME_TMP: &str = "hsmbridge-tmp";
const VOLUME_CREDENTIALS: &str = "hsmbridge-credentials";
const VOLUME_PROVIDER: &str = "hsmbridge-provider";
/// kubectl's default container for logs/exec, set when the sidecar becomes the first container.
pub const ANNOTATION_DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
/// Longest container name (RFC 1123 label).
const MAX_CONTAINER_NAME: usize = 63;
/// Secret volume mode: owner read only (group read is added by the kubelet for fsGroup).
const SECRET_MODE: i32 = 0o400;

/// How injected containers look; from the operator's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Image of the `hsmbridge-shim` init container; carries the shim and `cp`.
    pub shim_image: String,
    /// Path of `libhsmbridge_pkcs11.so` inside `shim_image`.
    pub shim_source_path: String,
    /// The first sidecar's gRPC health port (partition N uses `health_port + N`). It listens on
    /// the pod IP: the kubelet probes from the node.
    pub health_port: u16,
    /// UID and GID of the injected containers, and the pod's fsGroup when the pod sets none.
    pub run_as_user: i64,
    /// Resources of the injected containers (the chart sets them).
    pub resources: Option<ResourceRequirements>,
}

/// What the API server supports, from its version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerCaps {
    /// Init containers with `restartPolicy: Always` (1.29+, on by default).
    pub native_sidecars: bool,
    /// `grpc` probes (1.24+, on by default).
    pub grpc_probes: bool,
    /// The server knows `restartPolicy` on init containers (1.28+; behind the SidecarContainers
    /// gate before 1.29), so the annotation may force native sidecars.
    pub native_sidecars_forcible: bool,
}

impl ServerCaps {
    /// From `/version`'s major and minor (`"1"`, `"29"`; some distributions say `"29+"`).
    /// Anything unreadable counts as old: the regular-container style works everywhere.
    pub fn for_version(major: &str, minor: &str) -> Self {
        let number = |s: &str| -> Option<u32> {
            let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        let version = number(major).zip(number(minor)).unwrap_or((0, 0));
        ServerCaps {
            native_sidecars: version >= (1, 29),
            grpc_probes: version >= (1, 24),
            native_sidecars_forcible: version >= (1, 28),
        }
    }
}

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
    #[error("the pod has no spec")]
    NoSpec,
    #[error("the pod sets spec.shareProcessNamespace: true, which hsmbridge refuses: the hsm-sidecar container holds the partition's credential, and a process namespace shared with the app containers lets them see its processes and reach its memory and files through /proc. Remove shareProcessNamespace (or the {LABEL_INJECT} label)")]
    SharedProcessNamespace,
    #[error(
        "the pod has {count} containers and init containers; hsmbridge injects into pods with at most {MAX_CONTAINERS}"
    )]
    TooManyContainers { count: usize },
    #[error("too many partitions: the sidecars' health ports would go past 65535")]
    TooManyPartitions,
    #[error("internal error while building the patch: {0}")]
    Internal(String),
}

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

    let init_containers = spec.init_containers.clone().unwrap_or_default();
    let targets = select_containers(&spec.containers, &init_containers, request, mode)?;
    check_names_free(pod, &spec.containers, &init_containers, &sidecars)?;
    for target in &targets {
        let container = target.container(&spec.containers, &init_containers);
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

    let mut ops = Ops::default();

    // Metadata.
    let mut new_annotations = vec![(INJECT_STATUS, INJECTED.to_owned())];
    let existing = pod.metadata.annotations.as_ref();
    if mode == SidecarMode::Container && !existing.is_some_and(|a| a.contains_key(ANNOTATION_DEFAULT_CONTAINER)) {
        if let Some(first) = spec.containers.first() {
            new_annotations.push((ANNOTATION_DEFAULT_CONTAINER, first.name.clone()));
        }
    }
    if existing.is_none() {
        let map: BTreeMap<&str, String> = new_annotations.into_iter().collect();
        ops.add(&["metadata", "annotations"], &map)?;
    } else {
        for (key, value) in new_annotations {
            ops.add(&["metadata", "annotations", key], &value)?;
        }
    }

    // Pod security context: an fsGroup, unless the pod has one.
    match &spec.security_context {
        None => ops.add(
            &["spec", "securityContext"],
            &PodSecurityContext {
                fs_group: Some(settings.run_as_user),
                ..PodSecurityContext::default()
            },
        )?,
        Some(sc) if sc.fs_group.is_none() => ops.add(&["spec", "securityContext", "fsGroup"], &settings.run_as_user)?,
        Some(_) => {}
    }

    // Volumes.
    let mut volumes = vec![empty_dir(VOLUME_LIB), empty_dir(VOLUME_SOCKET), empty_dir(VOLUME_TMP)];
    for sidecar in &sidecars {
        volumes.push(Volume {
            name: sidecar.credentials_volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names::credential_secret(&sidecar.partition)),
                default_mode: Some(SECRET_MODE),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        volumes.push(Volume {
            name: sidecar.provider_volume.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::provider_config_map(&sidecar.partition),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    ops.append(&["spec", "volumes"], spec.volumes.is_some(), &volumes)?;

    // App containers, at their original indices (before anything is inserted).
    for target in &targets {
        let container = target.container(&spec.containers, &init_containers);
        let base = [target.list(), &target.index.to_string()];
        let mounts = [
            VolumeMount {
                name: VOLUME_LIB.to_owned(),
                mount_path: APP_LIB_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: VOLUME_SOCKET.to_owned(),
                mount_path: SOCKET_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ];
        ops.append(
            &["spec", base[0], base[1], "volumeMounts"],
            container.volume_mounts.is_some(),
            &mounts,
        )?;
        let defined = |name: &str| container.env.iter().flatten().any(|e| e.name == name);
        let env: Vec<EnvVar> = [(ENV_SOCKET, SOCKET_PATH), (ENV_MODULE_PATH, APP_MODULE_PATH)]
            .into_iter()
            .filter(|(name, _)| !defined(name))
            .map(|(name, value)| env_var(name, value))
            .collect();
        if !env.is_empty() {
            ops.append(&["spec", base[0], base[1], "env"], container.env.is_some(), &env)?;
        }
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
    Ok(Patch(ops.0))
}

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

/// The partition's `Ready` condition, if it has one.
pub fn ready_condition(partition: &HsmPartition) -> Option<&Condition> {
    partition
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == crate::conditions::READY)
}

/// Ready and usable by the pod's ServiceAccount.
pub fn is_ready(partition: &HsmPartition) -> bool {
    ready_condition(partition).is_some_and(|c| c.status == "True")
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
struct Target {
    init: bool,
    index: usize,
}

impl Target {
    fn list(&self) -> &'static str {
        if self.init {
            "initContainers"
        } else {
            "containers"
        }
    }

    fn container<'a>(&self, containers: &'a [Container], init: &'a [Container]) -> &'a Container {
        // The index came from enumerating the same slice.
        if self.init {
            &init[self.index]
        } else {
            &containers[self.index]
        }
    }
}

fn select_containers(
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

fn check_names_free(
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
    let mut our_volumes = vec![VOLUME_LIB, VOLUME_SOCKET, VOLUME_TMP];
    for s in sidecars {
        our_volumes.push(&s.credentials_volume);
        our_volumes.push(&s.provider_volume);
    }
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    if let Some(v) = volumes
        .into_iter()
        .flatten()
        .find(|v| our_volumes.contains(&v.name.as_str()))
    {
        return Err(Denial::NameTaken {
            kind: "volume",
            name: v.name.clone(),
        });
    }
    Ok(())
}

/// One partition's sidecar.
#[derive(Clone, Debug)]
struct SidecarPlan {
    partition: String,
    container_name: String,
    socket: String,
    health_port: u16,
    credentials_volume: String,
    provider_volume: String,
    image: String,
    module_path: String,
    managed_pin: bool,
    primus: bool,
    ppin: bool,
    raw_param_mechanisms: Vec<u64>,
}

impl SidecarPlan {
    fn new(index: usize, name: &str, partition: &HsmPartition, settings: &Settings) -> Result<Self, Denial> {
        let (container_name, socket, suffix) = if index == 0 {
            (SIDECAR_CONTAINER.to_owned(), SOCKET_PATH.to_owned(), String::new())
        } else {
            (
                format!("{SIDECAR_CONTAINER}-{name}"),
                format!("{SOCKET_DIR}/pkcs11-{name}.sock"),
                format!("-{index}"),
            )
        };
        // Container names are RFC 1123 labels: no dots, at most 63 characters.
        if container_name.len() > MAX_CONTAINER_NAME || container_name.contains('.') {
            return Err(Denial::NameTooLong {
                name: name.to_owned(),
                container: container_name,
            });
        }
        let health_port = u16::try_from(index)
            .ok()
            .and_then(|i| settings.health_port.checked_add(i))
            .ok_or(Denial::TooManyPartitions)?;
        let spec = &partition.spec;
        Ok(SidecarPlan {
            partition: name.to_owned(),
            container_name,
            socket,
            health_port,
            credentials_volume: format!("{VOLUME_CREDENTIALS}{suffix}"),
            provider_volume: format!("{VOLUME_PROVIDER}{suffix}"),
            image: spec.sidecar.image.clone(),
            module_path: spec.sidecar.module_path.clone(),
            managed_pin: spec.pin_mode == PinMode::Managed,
            primus: spec.provider == Provider::Primus,
            ppin: spec.enrollment.method == EnrollmentMethod::Ppin,
            raw_param_mechanisms: spec.sidecar.raw_param_mechanisms.clone(),
        })
    }

    fn container(&self, settings: &Settings, caps: ServerCaps, mode: SidecarMode) -> Container {
        let mut command = vec![
            "hsm-sidecar".to_owned(),
            "serve".to_owned(),
            "--module".to_owned(),
            self.module_path.clone(),
            "--socket".to_owned(),
            self.socket.clone(),
        ];
        if self.managed_pin {
            command.push("--pin-file".to_owned());
            command.push(format!("{CREDENTIALS_DIR}/{}", names::KEY_PIN));
        }
        command.push("--health-addr".to_owned());
        command.push(format!("0.0.0.0:{}", self.health_port));
        for mechanism in &self.raw_param_mechanisms {
            command.push("--raw-param-mechanism".to_owned());
            command.push(format!("{mechanism:#x}"));
        }

        let mut env = Vec::new();
        if self.primus {
            env.push(env_var(
                names::ENV_PRIMUS_CONF,
                &format!("{}/{}", names::PROVIDER_DIR, names::KEY_PRIMUS_CFG),
            ));
            if self.ppin {
                env.push(env_var(
                    ENV_PRIMUS_SECRETS,
                    &format!("{CREDENTIALS_DIR}/{KEY_SECRETS_CFG}"),
                ));
            }
        }

        let port = IntOrString::Int(i32::from(self.health_port));
        // gRPC probes ask grpc.health.v1, which follows the backend (token reachable). Before
        // 1.24 there is no gRPC probe and the image need not carry a probe binary, so the probe
        // is a TCP connect: the sidecar loaded the module and bound its socket.
        let readiness = if caps.grpc_probes {
            Probe {
                grpc: Some(GRPCAction {
                    port: i32::from(self.health_port),
                    ..GRPCAction::default()
                }),
                period_seconds: Some(5),
                ..Probe::default()
            }
        } else {
            Probe {
                tcp_socket: Some(TCPSocketAction {
                    port: port.clone(),
                    host: None,
                }),
                period_seconds: Some(5),
                ..Probe::default()
            }
        };
        let native = mode == SidecarMode::Native;
        Container {
            name: self.container_name.clone(),
            image: Some(self.image.clone()),
            command: Some(command),
            env: (!env.is_empty()).then_some(env),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: VOLUME_SOCKET.to_owned(),
                    mount_path: SOCKET_DIR.to_owned(),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: self.credentials_volume.clone(),
                    mount_path: CREDENTIALS_DIR.to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: self.provider_volume.clone(),
                    mount_path: names::PROVIDER_DIR.to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: VOLUME_TMP.to_owned(),
                    mount_path: "/tmp".to_owned(),
                    ..VolumeMount::default()
                },
            ]),
            readiness_probe: Some(readiness),
            // A native sidecar counts as started (and the next container starts) once this
            // passes: the app then finds the socket bound.
            startup_probe: native.then(|| Probe {
                tcp_socket: Some(TCPSocketAction { port, host: None }),
                period_seconds: Some(1),
                failure_threshold: Some(60),
                ..Probe::default()
            }),
            restart_policy: native.then(|| "Always".to_owned()),
            security_context: Some(security::restricted_container(settings.run_as_user)),
            resources: settings.resources.clone(),
            ..Container::default()
        }
    }
}

fn shim_container(settings: &Settings) -> Container {
    Container {
        name: SHIM_CONTAINER.to_owned(),
        image: Some(settings.shim_image.clone()),
        command: Some(vec![
            "cp".to_owned(),
            settings.shim_source_path.clone(),
            APP_MODULE_PATH.to_owned(),
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME_LIB.to_owned(),
            mount_path: APP_LIB_DIR.to_owned(),
            ..VolumeMount::default()
        }]),
        security_context: Some(security::restricted_container(settings.run_as_user)),
        resources: settings.resources.clone(),
        ..Container::default()
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

/// JSONPatch `add` operations, in order.
#[derive(Default)]
struct Ops(Vec<PatchOperation>);

impl Ops {
    fn add(&mut self, path: &[&str], value: &impl Serialize) -> Result<(), Denial> {
        let value = to_value(value)?;
        self.0.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(path.iter().copied()),
            value,
        }));
        Ok(())
    }

    /// Appends `items` to the array at `path` (creating it when `exists` is false).
    fn append<T: Serialize>(&mut self, path: &[&str], exists: bool, items: &[T]) -> Result<(), Denial> {
        if !exists {
            return self.add(path, &items);
        }
        for item in items {
            self.add(&[path, &["-"]].concat(), item)?;
        }
        Ok(())
    }

    /// Puts `items` first in the array at `path`, in order.
    fn prepend<T: Serialize>(&mut self, path: &[&str], exists: bool, items: &[T]) -> Result<(), Denial> {
        if !exists {
            return self.add(path, &items);
        }
        for (i, item) in items.iter().enumerate() {
            let index = i.to_string();
            self.add(&[path, &[index.as_str()]].concat(), item)?;
        }
        Ok(())
    }
}

fn to_value(value: &impl Serialize) -> Result<Value, Denial> {
    serde_json::to_value(value).map_err(|e| Denial::Internal(e.to_string()))
}

#[cfg(test)]
#[path = "mutate_tests.rs"]
mod tests;
