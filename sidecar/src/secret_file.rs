//! Secrets (PINs, setup passwords) come from files, never from argv or
//! the environment, and are zeroized when dropped.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

/// Reads a secret, dropping one trailing newline (files written by `echo`).
pub fn read(path: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut data = Zeroizing::new(fs::read(path)?);
    if data.last() == Some(&b'\n') {
        data.pop();
        if data.last() == Some(&b'\r') {
            data.pop();
        }
    }
    if data.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is empty", path.display()),
        ));
    }
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "secret file is readable by group or others; use mode 0600");
        }
    }
    Ok(data)
}

/// Writes a secret to a new or truncated file with mode 0600.
pub fn write(path: &Path, secret: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: make sure it is 0600.
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(secret)?;
    f.sync_all()
}
