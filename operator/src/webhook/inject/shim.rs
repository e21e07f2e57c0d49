//! How app containers get the shim: the `hsmbridge-shim` init container that puts
//! `libhsmbridge_pkcs11.so` into the `hsmbridge-lib` emptyDir (`hsm-sidecar install-shim`), and what each selected app
//! container gets to load it (the two read-only mounts, `HSMBRIDGE_SOCKET`, `PKCS11_MODULE_PATH`
//! and `HSMBRIDGE_CONTAINER` unless it sets them itself).

use hsmbridge_contract::{
    APP_LIB_DIR, APP_MODULE_PATH, ENV_CONTAINER, ENV_MODULE_PATH, ENV_SOCKET, SOCKET_DIR, SOCKET_PATH,
};
use k8s_openapi::api::core::v1::{Container, EnvVar, VolumeMount};

use super::checks::Target;
use super::denial::Denial;
use super::patch::Ops;
use super::settings::Settings;
use super::{env_var, VOLUME_LIB, VOLUME_SOCKET};
use crate::security;

/// The init container that installs the shim.
pub const SHIM_CONTAINER: &str = "hsmbridge-shim";

/// The `hsmbridge-shim` init container.
pub(super) fn shim_container(settings: &Settings) -> Container {
    Container {
        name: SHIM_CONTAINER.to_owned(),
        image: Some(settings.shim_image.clone()),
        // The image's own shim (hsmbridge_contract::IMAGE_SHIM_PATH), atomically: no shell needed.
        command: Some(vec![
            "hsm-sidecar".to_owned(),
            "install-shim".to_owned(),
            "--to".to_owned(),
            APP_LIB_DIR.to_owned(),
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

/// Adds the shim's mounts and environment to `container`, the app container at `target` (its
/// index in the pod as the user wrote it, before anything is inserted).
pub(super) fn add_to_app(ops: &mut Ops, target: &Target, container: &Container) -> Result<(), Denial> {
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
    // HSMBRIDGE_CONTAINER: the container's own name, which the shim reports to the sidecar for
    // the audit trail. A claim the container could change, not proof.
    let env: Vec<EnvVar> = [
        (ENV_SOCKET, SOCKET_PATH),
        (ENV_MODULE_PATH, APP_MODULE_PATH),
        (ENV_CONTAINER, container.name.as_str()),
    ]
    .into_iter()
    .filter(|(name, _)| !defined(name))
    .map(|(name, value)| env_var(name, value))
    .collect();
    if !env.is_empty() {
        ops.append(&["spec", base[0], base[1], "env"], container.env.is_some(), &env)?;
    }
    Ok(())
}
