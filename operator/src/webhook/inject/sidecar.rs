//! One partition's sidecar: the `hsm-sidecar serve` container (command, provider environment,
//! mounts, probes, security context) and the two volumes only it mounts (the partition's
//! credential Secret and provider ConfigMap).
//!
//! Readiness follows the backend's health (`sidecar/src/health.rs`): a gRPC probe from
//! Kubernetes 1.24, the exec probe `hsm-sidecar probe` before; native sidecars (1.28+) also get a
//! TCP startup probe, which passes once the socket is bound.

use hsmbridge_contract::{ENV_PARTITION, ENV_POD_NAME, ENV_POD_NAMESPACE, METRICS_PORT_NAME, SOCKET_DIR, SOCKET_PATH};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, GRPCAction, ObjectFieldSelector,
    Probe, SecretVolumeSource, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::annotations::SidecarMode;
use super::denial::Denial;
use super::settings::{ServerCaps, Settings};
use super::{env_var, VOLUME_SOCKET, VOLUME_TMP};
use crate::crd::{EnrollmentMethod, HsmPartition, PinMode, Provider};
use crate::module_env::ModuleEnv;
use crate::names::{self, CREDENTIALS_DIR, KEY_SECRETS_CFG};
use crate::security;

/// The first partition's sidecar container.
pub const SIDECAR_CONTAINER: &str = "hsm-sidecar";
const VOLUME_CREDENTIALS: &str = "hsmbridge-credentials";
const VOLUME_PROVIDER: &str = "hsmbridge-provider";
/// Longest container name (RFC 1123 label).
pub const MAX_CONTAINER_NAME: usize = 63;
/// Secret volume mode: owner read only (group read is added by the kubelet for fsGroup).
const SECRET_MODE: i32 = 0o400;
/// How often the kubelet asks the readiness probe.
const PROBE_PERIOD_SECONDS: i32 = 5;
/// How long the kubelet waits for the exec readiness probe (before 1.24); `hsm-sidecar probe`
/// gives up a second earlier, so that its line says why.
const PROBE_TIMEOUT_SECONDS: i32 = 3;

/// One partition's sidecar.
#[derive(Clone, Debug)]
pub(super) struct SidecarPlan {
    partition: String,
    pub(super) container_name: String,
    socket: String,
    health_port: u16,
    /// `/metrics` (`serve --metrics-addr`), on the pod IP: Prometheus scrapes it.
    pub(super) metrics_port: u16,
    pub(super) credentials_volume: String,
    pub(super) provider_volume: String,
    /// Its place in the pod's list of partitions (names its `spec.sidecar.volumes`).
    index: usize,
    /// `spec.sidecar.env` and `spec.sidecar.volumes`.
    pub(super) module_env: ModuleEnv,
    image: String,
    module_path: String,
    managed_pin: bool,
    primus: bool,
    ppin: bool,
    raw_param_mechanisms: Vec<u64>,
}

impl SidecarPlan {
    pub(super) fn new(index: usize, name: &str, partition: &HsmPartition, settings: &Settings) -> Result<Self, Denial> {
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
        let nth_port = |first: u16| {
            u16::try_from(index)
                .ok()
                .and_then(|i| first.checked_add(i))
                .ok_or(Denial::TooManyPartitions)
        };
        let health_port = nth_port(settings.health_port)?;
        let metrics_port = nth_port(settings.metrics_port)?;
        let spec = &partition.spec;
        // validate.rs refused such a spec; it may have changed since the partition was Ready.
        let module_env = ModuleEnv::parse(&spec.sidecar).map_err(|problems| Denial::InvalidSidecar {
            namespace: partition.metadata.namespace.clone().unwrap_or_default(),
            name: name.to_owned(),
            problems: problems.join("; "),
        })?;
        Ok(SidecarPlan {
            partition: name.to_owned(),
            container_name,
            socket,
            health_port,
            metrics_port,
            credentials_volume: format!("{VOLUME_CREDENTIALS}{suffix}"),
            provider_volume: format!("{VOLUME_PROVIDER}{suffix}"),
            index,
            module_env,
            image: spec.sidecar.image.clone(),
            module_path: spec.sidecar.module_path.clone(),
            managed_pin: spec.pin_mode == PinMode::Managed,
            primus: spec.provider == Provider::Primus,
            ppin: spec.enrollment.method == EnrollmentMethod::Ppin,
            raw_param_mechanisms: spec.sidecar.raw_param_mechanisms.clone(),
        })
    }

    /// The volumes only this sidecar mounts: the credential Secret, the provider ConfigMap and
    /// the partition's `spec.sidecar.volumes`.
    pub(super) fn volumes(&self) -> Vec<Volume> {
        let mut volumes = vec![
            Volume {
                name: self.credentials_volume.clone(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(names::credential_secret(&self.partition)),
                    default_mode: Some(SECRET_MODE),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: self.provider_volume.clone(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names::provider_config_map(&self.partition),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
        ];
        volumes.extend(self.module_env.volumes(self.index));
        volumes
    }

    /// The ports this sidecar listens on in the pod's network namespace.
    pub(super) fn ports(&self) -> [u16; 2] {
        [self.health_port, self.metrics_port]
    }

    /// The name of the metrics port: `hsm-metrics` for the first sidecar, `hsm-metrics-<i>` after.
    fn metrics_port_name(&self) -> String {
        if self.index == 0 {
            METRICS_PORT_NAME.to_owned()
        } else {
            format!("{METRICS_PORT_NAME}-{}", self.index)
        }
    }

    /// The names of [`SidecarPlan::volumes`].
    pub(super) fn volume_names(&self) -> Vec<String> {
        let mut names = vec![self.credentials_volume.clone(), self.provider_volume.clone()];
        names.extend(self.module_env.volume_names(self.index));
        names
    }

    /// The `hsm-sidecar serve` container.
    pub(super) fn container(&self, settings: &Settings, caps: ServerCaps, mode: SidecarMode) -> Container {
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
        command.push("--metrics-addr".to_owned());
        command.push(format!("0.0.0.0:{}", self.metrics_port));
        // A new provider config (the ConfigMap's content, its generation) re-initializes the
        // module, and so does a change of the module's own ConfigMap volumes (e.g.
        // softhsm2.conf). The provider's first: its generation file is the one reported.
        for dir in std::iter::once(names::PROVIDER_DIR).chain(self.module_env.config_map_dirs()) {
            command.push("--watch-config".to_owned());
            command.push(dir.to_owned());
        }
        for mechanism in &self.raw_param_mechanisms {
            command.push("--raw-param-mechanism".to_owned());
            command.push(format!("{mechanism:#x}"));
        }

        // Who the sidecar serves, for its audit trail and metrics: the pod from the downward
        // API, the partition as written. spec.sidecar.env cannot set HSMBRIDGE_* (module_env.rs).
        let mut env = vec![
            field_env(ENV_POD_NAMESPACE, "metadata.namespace"),
            field_env(ENV_POD_NAME, "metadata.name"),
            env_var(ENV_PARTITION, &self.partition),
        ];
        if self.primus {
            env.push(env_var(
                names::ENV_PRIMUS_CONF,
                &format!("{}/{}", names::PROVIDER_DIR, names::KEY_PRIMUS_CFG),
            ));
            if self.ppin {
                env.push(env_var(
                    names::ENV_PRIMUS_SECRETS,
                    &format!("{CREDENTIALS_DIR}/{KEY_SECRETS_CFG}"),
                ));
            }
        }
        env.extend(self.module_env.env_vars());

        let port = IntOrString::Int(i32::from(self.health_port));
        // Readiness asks grpc.health.v1, which follows the backend (token reachable, held PIN
        // not rejected): with a gRPC probe from 1.24, before that with `hsm-sidecar probe` (the
        // image carries it, it is the sidecar binary).
        let readiness = if caps.grpc_probes {
            Probe {
                grpc: Some(GRPCAction {
                    port: i32::from(self.health_port),
                    ..GRPCAction::default()
                }),
                period_seconds: Some(PROBE_PERIOD_SECONDS),
                ..Probe::default()
            }
        } else {
            Probe {
                exec: Some(ExecAction {
                    command: Some(vec![
                        "hsm-sidecar".to_owned(),
                        "probe".to_owned(),
                        "--addr".to_owned(),
                        format!("127.0.0.1:{}", self.health_port),
                        "--timeout-secs".to_owned(),
                        (PROBE_TIMEOUT_SECONDS - 1).to_string(),
                    ]),
                }),
                period_seconds: Some(PROBE_PERIOD_SECONDS),
                timeout_seconds: Some(PROBE_TIMEOUT_SECONDS),
                ..Probe::default()
            }
        };
        let mut mounts = vec![
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
        ];
        mounts.extend(self.module_env.mounts(self.index));
        let native = mode == SidecarMode::Native;
        Container {
            name: self.container_name.clone(),
            image: Some(self.image.clone()),
            command: Some(command),
            env: Some(env),
            ports: Some(vec![ContainerPort {
                name: Some(self.metrics_port_name()),
                container_port: i32::from(self.metrics_port),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }]),
            volume_mounts: Some(mounts),
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

/// `name` from the pod's field `path` (downward API).
fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

#[cfg(test)]
#[path = "sidecar_tests.rs"]
mod tests;
