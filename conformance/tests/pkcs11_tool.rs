//! OpenSC's pkcs11-tool, a real PKCS#11 client, through the shim: its own
//! self-tests (`--test`, `--test-threads`, `--test-fork`) and a managed-mode
//! sign/verify in which the tool is never given the PIN.

use std::path::Path;
use std::process::{Command, Output};

use hsmbridge_conformance::paths::softhsm_module;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::{SoftHsm, USER_PIN};

fn tool(module: &Path, env: &[(String, String)], conf: &Path, args: &[&str]) -> Output {
    Command::new("pkcs11-tool")
        .arg("--module")
        .arg(module)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("SOFTHSM2_CONF", conf)
        .output()
        .unwrap_or_else(|e| panic!("running pkcs11-tool (is opensc installed?): {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "pkcs11-tool {what} failed ({}):\n{}",
        o.status,
        text(o)
    );
}

/// Key pairs for `--test` to exercise signatures and decryption.
fn make_keys(module: &Path, env: &[(String, String)], conf: &Path, kinds: &[&str]) {
    for (i, kind) in kinds.iter().enumerate() {
        let id = format!("{:02}", i + 1);
        let id = id.as_str();
        let o = tool(
            module,
            env,
            conf,
            &[
                "--login",
                "--pin",
                USER_PIN,
                "--keypairgen",
                "--key-type",
                kind,
                "--id",
                id,
                "--label",
                id,
            ],
        );
        assert_ok(&o, "--keypairgen");
    }
}

/// Runs `--test` through the shim and directly on identically keyed tokens.
fn self_test_both_ways(kinds: &[&str]) -> (Output, Output) {
    let sidecar = Sidecar::start();
    let env = sidecar.shim_env();
    let conf = sidecar.softhsm().conf().to_path_buf();
    make_keys(&sidecar.shim_lib(), &env, &conf, kinds);
    let through = tool(
        &sidecar.shim_lib(),
        &env,
        &conf,
        &["--login", "--pin", USER_PIN, "--test"],
    );
    let direct_hsm = SoftHsm::new();
    make_keys(&softhsm_module(), &[], direct_hsm.conf(), kinds);
    let direct = tool(
        &softhsm_module(),
        &[],
        direct_hsm.conf(),
        &["--login", "--pin", USER_PIN, "--test"],
    );
    // Same exit status and the same verdicts, line by line.
    let verdicts = |o: &Output| -> Vec<String> {
        text(o)
            .lines()
            .filter(|l| l.contains(": OK") || l.contains("rror") || l.contains("ERR"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        through.status.code(),
        direct.status.code(),
        "through:\n{}\ndirect:\n{}",
        text(&through),
        text(&direct)
    );
    assert_eq!(verdicts(&through), verdicts(&direct), "--test verdicts differ");
    (through, direct)
}

#[test]
fn self_test_passes_through_the_shim_as_it_does_directly() {
    let (through, _) = self_test_both_ways(&["EC:prime256v1"]);
    assert_ok(&through, "--test through the shim");
    assert!(text(&through).contains("No errors"), "{}", text(&through));
}

#[test]
fn self_test_with_rsa_fails_through_the_shim_exactly_as_directly() {
    // pkcs11-tool 0.23 tests RSA-OAEP with a label, which SoftHSM 2.6.1
    // refuses with CKR_ARGUMENTS_BAD: the shim must report the same. (One
    // key only: pkcs11-tool tests its first key more thoroughly than the
    // rest, and SoftHSM's object order is not stable across tokens.)
    let (through, _) = self_test_both_ways(&["rsa:2048"]);
    assert!(text(&through).contains("CKR_ARGUMENTS_BAD"), "{}", text(&through));
}

#[test]
fn test_threads_pass_through_the_shim() {
    let sidecar = Sidecar::start();
    let env = sidecar.shim_env();
    let conf = sidecar.softhsm().conf().to_path_buf();
    // pkcs11-tool waits 30 s for threads still running when its main
    // thread is done, so the main thread runs the (longer) self-test.
    let main = ["--login", "--pin", USER_PIN, "--test"];
    let one = tool(
        &sidecar.shim_lib(),
        &env,
        &conf,
        &[&["--test-threads", "IN"][..], &main].concat(),
    );
    assert_ok(&one, "--test-threads IN");
    // Several threads initializing, listing and querying at once. (SoftHSM
    // 2.6.1 loaded directly crashes on this one; through the sidecar the
    // backend sees one initialized application.)
    let threads = [
        "--test-threads",
        "ILGISLT0",
        "--test-threads",
        "ILGISLT0",
        "--test-threads",
        "ILGISLT0",
    ];
    let args = [&threads[..], &main].concat();
    let many = tool(&sidecar.shim_lib(), &env, &conf, &args);
    assert_ok(&many, "--test-threads ILGISLT0 x3");
    let out = text(&many);
    assert!(
        out.contains("cleanup finished") && !out.contains("rv:CKR_GENERAL_ERROR"),
        "{out}"
    );
}

#[test]
fn test_fork_passes_through_the_shim() {
    let sidecar = Sidecar::start();
    let o = tool(
        &sidecar.shim_lib(),
        &sidecar.shim_env(),
        sidecar.softhsm().conf(),
        &["--test-fork"],
    );
    // The child gets CKR_CRYPTOKI_NOT_INITIALIZED state and initializes on
    // its own connection. (SoftHSM loaded directly answers the child's
    // C_Initialize with CKR_CRYPTOKI_ALREADY_INITIALIZED and fails this test.)
    assert_ok(&o, "--test-fork");
}

#[test]
fn managed_mode_signs_without_the_app_knowing_the_pin() {
    let sidecar = Sidecar::start_managed(USER_PIN);
    let (lib, env, conf) = (
        sidecar.shim_lib(),
        sidecar.shim_env(),
        sidecar.softhsm().conf().to_path_buf(),
    );
    let info = tool(&lib, &env, &conf, &["-L"]);
    assert_ok(&info, "-L");
    assert!(
        text(&info).contains("PIN pad present") || text(&info).contains("protected"),
        "no protected authentication path in:\n{}",
        text(&info)
    );
    let gen = tool(
        &lib,
        &env,
        &conf,
        &[
            "--login",
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--id",
            "07",
            "--label",
            "app-key",
        ],
    );
    assert_ok(&gen, "--keypairgen without a PIN");
    let dir = sidecar.softhsm().dir();
    let (data, sig) = (dir.join("hash"), dir.join("sig"));
    std::fs::write(&data, [7u8; 32]).expect("write data");
    let d = data.to_str().expect("utf-8 path");
    let s = sig.to_str().expect("utf-8 path");
    assert_ok(
        &tool(
            &lib,
            &env,
            &conf,
            &["--login", "--sign", "-m", "ECDSA", "--id", "07", "-i", d, "-o", s],
        ),
        "--sign",
    );
    let verify = tool(
        &lib,
        &env,
        &conf,
        &["--verify", "-m", "ECDSA", "--id", "07", "-i", d, "--signature-file", s],
    );
    assert_ok(&verify, "--verify");
    assert!(text(&verify).contains("Signature is valid"), "{}", text(&verify));
    // SO login is refused: apps cannot administer a token the sidecar holds.
    let so = tool(
        &lib,
        &env,
        &conf,
        &[
            "--login",
            "--login-type",
            "so",
            "--so-pin",
            "5678",
            "--init-pin",
            "--new-pin",
            "9999",
        ],
    );
    assert!(
        !so.status.success() && text(&so).contains("CKR_USER_TYPE_INVALID"),
        "SO login was not refused:\n{}",
        text(&so)
    );
}
