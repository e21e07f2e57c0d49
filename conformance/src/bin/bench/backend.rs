//! The backends the benchmark compares: how an application reaches SoftHSM.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Backend {
    Direct,
    P11Kit,
    /// The shim and a sidecar in their default (adaptive) spin mode.
    Shim,
    /// The shim and a sidecar that never poll: both block at once (issue 11).
    ShimBlock,
    /// The shim with the sidecar's metrics and audit trail on.
    ShimObs,
}

impl Backend {
    pub const ALL: [Backend; 5] = [
        Backend::Direct,
        Backend::P11Kit,
        Backend::Shim,
        Backend::ShimBlock,
        Backend::ShimObs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Direct => "direct",
            Backend::P11Kit => "p11-kit",
            Backend::Shim => "shim",
            Backend::ShimBlock => "shim-block",
            Backend::ShimObs => "shim+obs",
        }
    }

    /// Served by an `hsm-sidecar` the bench starts.
    pub fn is_sidecar(self) -> bool {
        matches!(self, Backend::Shim | Backend::ShimBlock | Backend::ShimObs)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Backend::Direct => "SoftHSM loaded in the process",
            Backend::P11Kit => "p11-kit-client.so -> p11-kit server -> SoftHSM",
            Backend::Shim => "libhsmbridge_pkcs11.so -> hsm-sidecar -> SoftHSM (adaptive spin, --no-audit, no metrics)",
            Backend::ShimBlock => "the same, never polling: sidecar --spin-us 0, app HSMBRIDGE_SPIN_US=0",
            Backend::ShimObs => "shim, the sidecar with --metrics-addr and --audit-file",
        }
    }

    /// The file name of the module the application loads.
    pub fn module_name(self) -> &'static str {
        match self {
            Backend::Direct => "libsofthsm2.so",
            Backend::P11Kit => "p11-kit-client.so",
            Backend::Shim | Backend::ShimBlock | Backend::ShimObs => "libhsmbridge_pkcs11.so",
        }
    }

    pub fn parse(s: &str) -> Option<Backend> {
        match s {
            "direct" | "softhsm" => Some(Backend::Direct),
            "p11-kit" | "p11kit" => Some(Backend::P11Kit),
            "shim" | "hsmbridge" => Some(Backend::Shim),
            "shim-block" => Some(Backend::ShimBlock),
            "shim+obs" | "shim+observe" => Some(Backend::ShimObs),
            _ => None,
        }
    }
}
