//! Where the artifacts under test live, found from the running test binary.
//!
//! A test executable is `target/<profile>/deps/<name>-<hash>`, so the profile
//! directory (`target/debug`, `target/release`) is two levels up; the shim
//! and the sidecar of that same profile are built there by
//! `cargo build --workspace`.

use std::path::{Path, PathBuf};

/// SoftHSM's module, overridable for distributions that install it elsewhere.
pub fn softhsm_module() -> PathBuf {
    std::env::var_os("HSMBRIDGE_SOFTHSM_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(hsmbridge_contract::SOFTHSM_MODULE_PATH))
}

/// `target/<profile>` of the running test executable.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe() of the test binary");
    let deps = exe.parent().expect("test binary has a parent directory");
    // Integration tests live in `deps/`; anything else (an example, a bin) sits in the profile dir.
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent()
    } else {
        Some(deps)
    };
    dir.expect("profile directory above deps/").to_path_buf()
}

/// `target/<profile>/hsm-sidecar`; panics if it has not been built.
pub fn sidecar_bin() -> PathBuf {
    built_artifact("hsm-sidecar")
}

/// `target/<profile>/libhsmbridge_pkcs11.so`; panics if it has not been built.
pub fn shim_lib() -> PathBuf {
    built_artifact(hsmbridge_contract::SHIM_FILE)
}

/// `target/<profile>/<name>`; panics with how to build it if it is missing.
pub fn built_artifact(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace{}` before these tests",
        path.display(),
        profile_flag(&profile_dir())
    );
    path
}

fn profile_flag(dir: &Path) -> &'static str {
    if dir.file_name().is_some_and(|n| n == "release") {
        " --release"
    } else {
        ""
    }
}

/// A fresh, empty directory under the system temp dir, unique in this
/// process and across processes (pid + counter + time).
pub fn fresh_temp_dir(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "hsmbridge-{what}-{}-{}-{nanos:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}
