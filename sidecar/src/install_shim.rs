//! `hsm-sidecar install-shim --to DIR`: copies the shim this image carries
//! (`hsmbridge_contract::IMAGE_SHIM_PATH`) to `DIR/libhsmbridge_pkcs11.so`.
//!
//! It is the webhook's init container (`operator/src/webhook/`): DIR is the pod's emptyDir that
//! the app containers mount at `hsmbridge_contract::APP_LIB_DIR`. Doing the copy here instead of
//! with `cp` means the sidecar image needs no shell or coreutils (a distroless base works).
//!
//! The copy is written to a temporary file in DIR, fsync'd, given mode 0755 and renamed into
//! place (then the directory is fsync'd): an app never sees a partial shim, and a restarted init
//! container replaces the file whole.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hsmbridge_contract::{IMAGE_SHIM_PATH, SHIM_FILE};
use tracing::{error, info};

/// Mode of the installed shim: apps of any user load it.
const SHIM_MODE: u32 = 0o755;
/// Exit code when the source is missing or not a file (wrong image, or wrong `--from`).
const NO_SOURCE: u8 = 2;

#[derive(clap::Args, Debug)]
pub struct InstallShimArgs {
    /// The directory to install `libhsmbridge_pkcs11.so` into (it must exist).
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// The shim to copy.
    #[arg(long, value_name = "PATH", default_value = IMAGE_SHIM_PATH)]
    from: PathBuf,
}

/// Why the shim was not installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("no shim at {path}: {source} (this image does not carry libhsmbridge_pkcs11.so; use the hsm-sidecar image, or pass --from)")]
    NoSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("cannot install the shim into {dir}: {what}: {source}")]
    Write {
        dir: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

pub fn run(args: InstallShimArgs) -> ExitCode {
    match install(&args.from, &args.to) {
        Ok((dest, bytes)) => {
            info!(from = %args.from.display(), to = %dest.display(), bytes, "installed the shim");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e}");
            match e {
                InstallError::NoSource { .. } | InstallError::NotAFile { .. } => ExitCode::from(NO_SOURCE),
                InstallError::Write { .. } => ExitCode::FAILURE,
            }
        }
    }
}

/// Copies `from` to `dir/SHIM_FILE`; returns the destination and its size.
pub fn install(from: &Path, dir: &Path) -> Result<(PathBuf, u64), InstallError> {
    let mut source = File::open(from).map_err(|source| InstallError::NoSource {
        path: from.to_owned(),
        source,
    })?;
    let is_file = source.metadata().map(|m| m.is_file()).unwrap_or(false);
    if !is_file {
        return Err(InstallError::NotAFile { path: from.to_owned() });
    }
    let write = |what: &'static str| {
        let dir = dir.to_owned();
        move |source| InstallError::Write { dir, what, source }
    };
    let dest = dir.join(SHIM_FILE);
    let temp = dir.join(format!(".{SHIM_FILE}.{}.tmp", std::process::id()));
    // A temp file of an earlier run with the same pid (a restarted container) is ours to replace.
    if let Err(e) = fs::remove_file(&temp) {
        if e.kind() != io::ErrorKind::NotFound {
            return Err(write("removing a stale temporary file")(e));
        }
    }
    let result = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(SHIM_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)
            .map_err(write("creating a temporary file"))?;
        let bytes = io::copy(&mut source, &mut out).map_err(write("copying"))?;
        // The umask may have taken bits away at creation.
        out.set_permissions(fs::Permissions::from_mode(SHIM_MODE))
            .map_err(write("setting mode 0755"))?;
        out.sync_all().map_err(write("fsync"))?;
        drop(out);
        fs::rename(&temp, &dest).map_err(write("renaming into place"))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write("fsync of the directory"))?;
        Ok(bytes)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map(|bytes| (dest, bytes))
}

#[cfg(test)]
#[path = "install_shim_tests.rs"]
mod tests;
