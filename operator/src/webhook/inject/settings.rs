//! What the injection depends on besides the pod and its partitions: the operator's settings
//! (images, ports, user, resources) and what the API server supports.

use k8s_openapi::api::core::v1::ResourceRequirements;

/// How injected containers look; from the operator's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Image of the `hsmbridge-shim` init container, which runs `hsm-sidecar install-shim`: an
    /// image with `hsm-sidecar` and the shim at `hsmbridge_contract::IMAGE_SHIM_PATH` (the chart
    /// sets the hsm-sidecar image: one image serves both).
    pub shim_image: String,
    /// The first sidecar's gRPC health port (partition N uses `health_port + N`). It listens on
    /// the pod IP: the kubelet probes from the node.
    pub health_port: u16,
    /// The first sidecar's `/metrics` port (partition N uses `metrics_port + N`; default
    /// `hsmbridge_contract::METRICS_PORT`), on the pod IP; the pod's `prometheus.io/port`.
    pub metrics_port: u16,
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
