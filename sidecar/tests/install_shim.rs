//! `hsm-sidecar install-shim` as the webhook's init container runs it (with `--from` instead of
//! the image's path): the file arrives whole with mode 0755; a missing source is exit code 2.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{code, mode, sidecar, stderr, temp_dir};

#[test]
fn install_shim_copies_the_file_and_fails_clearly_without_one() {
    let dir = temp_dir();
    let from = dir.path().join("built-shim.so");
    fs::write(&from, b"\x7fELF a shim").expect("source");
    let to = dir.path().join("lib");
    fs::create_dir(&to).expect("lib dir");
    let run = |from: &Path| {
        Command::new(sidecar())
            .args(["install-shim", "--to"])
            .arg(&to)
            .arg("--from")
            .arg(from)
            .output()
            .expect("running hsm-sidecar install-shim")
    };

    let out = run(&from);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let dest = to.join(hsmbridge_contract::SHIM_FILE);
    assert_eq!(fs::read(&dest).expect("installed"), b"\x7fELF a shim");
    assert_eq!(mode(&dest), 0o755);

    let missing = dir.path().join("missing.so");
    let out = run(&missing);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("no shim at {}", missing.display())),
        "{}",
        stderr(&out)
    );
}
