//! Where the binaries under test and the repository's manifests live. The helpers every test
//! crate shares (profile directory, SoftHSM module, temp dirs) are the conformance crate's.

use std::path::{Path, PathBuf};

use hsmbridge_conformance::paths::built_artifact;
pub use hsmbridge_conformance::paths::{fresh_temp_dir, profile_dir, sidecar_bin, softhsm_module};

/// The repository root (the workspace above `operator/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent directory")
        .to_path_buf()
}

/// `target/<profile>/hsm-operator` (cargo builds it for this package's integration tests).
pub fn operator_bin() -> PathBuf {
    built_artifact("hsm-operator")
}

/// `scripts/kube-testenv.sh`.
pub fn kube_testenv_script() -> PathBuf {
    repo_root().join("scripts/kube-testenv.sh")
}

/// The kube-apiserver that `scripts/kube-testenv.sh install` caches.
pub fn cached_apiserver() -> PathBuf {
    let cache = std::env::var_os("HSMBRIDGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/hsmbridge")
        });
    cache.join("bin/kube-apiserver")
}
