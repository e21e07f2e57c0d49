use std::os::unix::fs::PermissionsExt;

use super::*;

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hsm-install-shim")
        .tempdir()
        .expect("a temporary directory")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn copies_the_bytes_with_mode_0755_and_leaves_nothing_else() {
    let src_dir = temp_dir();
    let from = src_dir.path().join("libhsmbridge_pkcs11.so");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(&from, &bytes).expect("source");
    fs::set_permissions(&from, fs::Permissions::from_mode(0o600)).expect("chmod");
    let to = temp_dir();

    let (dest, n) = install(&from, to.path()).expect("installed");
    assert_eq!(dest, to.path().join(SHIM_FILE));
    assert_eq!(n, bytes.len() as u64);
    assert_eq!(fs::read(&dest).expect("read"), bytes);
    assert_eq!(mode(&dest), 0o755, "not the source's mode");
    assert_eq!(names(to.path()), [SHIM_FILE], "no temporary file left");
}

#[test]
fn an_existing_shim_is_replaced_whole() {
    let src_dir = temp_dir();
    let from = src_dir.path().join("shim.so");
    fs::write(&from, b"new shim").expect("source");
    let to = temp_dir();
    let dest = to.path().join(SHIM_FILE);
    fs::write(&dest, b"an older and longer shim").expect("old");
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o600)).expect("chmod");

    install(&from, to.path()).expect("installed");
    assert_eq!(fs::read(&dest).expect("read"), b"new shim");
    assert_eq!(mode(&dest), 0o755);
    assert_eq!(names(to.path()), [SHIM_FILE]);
}

#[test]
fn a_missing_source_or_directory_is_a_clear_error() {
    let to = temp_dir();
    let missing = to.path().join("nope.so");
    let e = install(&missing, to.path()).expect_err("no source");
    assert!(matches!(e, InstallError::NoSource { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("no shim at {}: ", missing.display())),
        "{text}"
    );
    assert!(text.contains("use the hsm-sidecar image, or pass --from"), "{text}");

    let e = install(to.path(), to.path()).expect_err("a directory");
    assert!(matches!(e, InstallError::NotAFile { .. }), "{e}");

    let from = to.path().join("shim.so");
    fs::write(&from, b"x").expect("source");
    let gone = to.path().join("no-such-dir");
    let e = install(&from, &gone).expect_err("no directory");
    assert!(
        e.to_string().starts_with(&format!(
            "cannot install the shim into {}: creating a temporary file: ",
            gone.display()
        )),
        "{e}"
    );
    assert_eq!(names(to.path()), ["shim.so"], "nothing written");
}
