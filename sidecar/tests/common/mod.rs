//! Helpers shared by the `hsm-sidecar enroll` integration tests: they run the
//! built binary (Cargo builds it for this package's integration tests).

#![allow(dead_code)] // each test binary uses its own part

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn sidecar() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hsm-sidecar"))
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hsm-enroll-test")
        .tempdir()
        .expect("a temporary directory")
}

/// Runs `hsm-sidecar enroll ARGS...` with extra environment.
pub fn enroll(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(sidecar());
    cmd.arg("enroll").args(args).env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running hsm-sidecar")
}

/// Writes a secret file with mode 0600, as a mounted Secret would be.
pub fn write_secret(path: &Path, value: &str) {
    fs::write(path, value).expect("writing a secret file");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 0600");
}

pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The exit code, with the process's stderr in the panic message when it has none.
pub fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {}", stderr(out)))
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}
