//! Where the binaries under test and the repository's manifests live.
//!
//! A test executable is `target/<profile>/deps/<name>-<hash>`, so the profile directory
//! (`target/debug`, `target/release`) is two levels up, as in `conformance/src/paths.rs`.

use std::path::{Path, PathBuf};

/// The repository root (the workspace above `operator/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("operator/ has a parent directory").to_path_buf()
}

/// `target/<profile>` of the running test executable.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe() of the test binary");
    let deps = exe.parent().expect("test binary has a parent directory");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") { deps.parent() } else { Some(deps) };
    dir.expect("profile directory above deps/").to_path_buf()
}

/// `target/<profile>/hsm-operator` (cargo builds it for this package's integration tests).
pub fn operator_bin() -> PathBuf {
    built_artifact("hsm-operator")
}

/// `target/<profile>/hsm-sidecar`: the binary the enrollment Job's image would carry.
pub fn sidecar_bin() -> PathBuf {
    built_artifact("hsm-sidecar")
}

fn built_artifact(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    let release = profile_dir().file_name().is_some_and(|n| n == "release");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace{}` before these tests (`make test` does)",
        path.display(),
        if release { " --release" } else { "" }
    );
    path
}

/// `scripts/kube-testenv.sh`.
pub fn kube_testenv_script() -> PathBuf {
    repo_root().join("scripts/kube-testenv.sh")
}

/// The kube-apiserver that `scripts/kube-testenv.sh install` caches.
pub fn cached_apiserver() -> PathBuf {
    let cache = std::env::var_os("HSMBRIDGE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/hsmbridge")
    });
    cache.join("bin/kube-apiserver")
}

/// SoftHSM's module, overridable for distributions that install it elsewhere.
pub fn softhsm_module() -> PathBuf {
    std::env::var_os("HSMBRIDGE_SOFTHSM_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

/// A fresh, empty directory under the system temp dir, unique across tests and processes.
pub fn fresh_temp_dir(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "hsmbridge-{what}-{}-{}-{nanos:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}
