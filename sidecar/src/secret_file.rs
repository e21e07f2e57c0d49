//! Secrets (PINs, setup passwords) come from files, never from argv or
//! the environment, and are zeroized when dropped.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

/// Reads a secret, dropping one trailing newline (files written by `echo`); warns when the
/// file is readable beyond this process.
pub fn read(path: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
    let data = read_again(path)?;
    if let Ok(meta) = fs::metadata(path) {
        if too_open(meta.permissions().mode(), meta.gid(), &own_groups()) {
            tracing::warn!(path = %path.display(), "secret file is readable by others, or by a group this process is not in; use mode 0600 (or 0440 with the group of the pod's fsGroup)");
        }
    }
    Ok(data)
}

/// [`read`] without the warning: for a file read every few seconds (the held PIN's), whose
/// mode was judged when it was first read.
pub fn read_again(path: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
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
    Ok(data)
}

/// Whether a secret file with `mode`, of group `gid`, is readable beyond this process: by
/// others, or by a group it is not in. A Kubernetes Secret volume under a pod fsGroup is 0440
/// of group fsGroup, a group the containers run with: that is as it should be.
fn too_open(mode: u32, gid: u32, own: &[u32]) -> bool {
    mode & 0o007 != 0 || (mode & 0o070 != 0 && !own.contains(&gid))
}

/// This process's effective and supplementary group ids.
fn own_groups() -> Vec<u32> {
    // SAFETY: getegid has no arguments and cannot fail.
    let mut groups = vec![unsafe { libc::getegid() }];
    let mut buf = vec![0 as libc::gid_t; 256];
    // SAFETY: `buf` holds `buf.len()` writable gid_t entries, the count passed; getgroups writes
    // at most that many and returns how many it wrote (or -1).
    let n = unsafe { libc::getgroups(buf.len() as libc::c_int, buf.as_mut_ptr()) };
    if let Ok(n) = usize::try_from(n) {
        groups.extend_from_slice(&buf[..n.min(buf.len())]);
    }
    groups
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

#[cfg(test)]
mod tests {
    use super::too_open;

    #[test]
    fn group_read_is_fine_only_for_a_group_of_the_process() {
        assert!(!too_open(0o600, 0, &[65532]));
        assert!(!too_open(0o440, 65532, &[65532]), "a Secret volume under fsGroup 65532");
        assert!(too_open(0o440, 0, &[65532]), "readable by root's group");
        assert!(too_open(0o604, 65532, &[65532]), "readable by others");
    }
}
