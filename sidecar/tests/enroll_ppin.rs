//! `hsm-sidecar enroll --method ppin` against a fake `ppin` (tests/fake-ppin.sh) that checks
//! it got no secret in argv or env, reads the two answers on stdin and writes the secrets file
//! to the `-s` path, or fails the way the real tool does.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{code, enroll, mode, path_str, stderr, temp_dir, write_secret};

const SETUP: &str = "FXAJX-XWVQ3-DC0O5-3SLQF-LJ9L3";
const USER: &str = "PAYMENTS";

/// A temp dir holding the fake ppin, its control files and the setup password file.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(behaviour: &str) -> Self {
        let dir = temp_dir();
        let ppin = dir.path().join("ppin");
        fs::write(&ppin, include_str!("fake-ppin.sh")).expect("writing the fake ppin");
        fs::set_permissions(&ppin, fs::Permissions::from_mode(0o755)).expect("chmod the fake ppin");
        fs::write(dir.path().join("expected-setup"), SETUP).expect("expected-setup");
        fs::write(dir.path().join("behaviour"), behaviour).expect("behaviour");
        fs::create_dir(dir.path().join("out")).expect("out dir");
        let f = Fixture { dir };
        f.set_setup_password(SETUP);
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn set_setup_password(&self, value: &str) {
        write_secret(&self.path("setup-password"), value);
    }

    /// Runs enroll with files output; `extra` goes after the common arguments.
    fn enroll(&self, extra: &[&str]) -> Output {
        let (ppin, setup, pin, cfg) = (
            self.path("ppin"),
            self.path("setup-password"),
            self.path("out/pin"),
            self.path("out/secrets.cfg"),
        );
        let mut args = vec![
            "--method",
            "ppin",
            "--ppin",
            path_str(&ppin),
            "--user",
            USER,
            "--setup-password-file",
            path_str(&setup),
            "--pin-out",
            path_str(&pin),
            "--secrets-out",
            path_str(&cfg),
        ];
        args.extend_from_slice(extra);
        // Point ppin's tmp dir into the fixture so the test can see it is gone afterwards.
        let tmp = self.path("tmp");
        fs::create_dir_all(&tmp).expect("tmp dir");
        enroll(&args, &[("TMPDIR", &tmp)])
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn nothing_written(&self) {
        assert!(!self.path("out/pin").exists(), "a PIN file was written");
        assert!(!self.path("out/secrets.cfg").exists(), "a secrets file was written");
    }

    /// ppin's private temp dirs are removed whatever happened.
    fn temp_cleaned(&self) {
        let left: Vec<_> = fs::read_dir(self.path("tmp")).expect("tmp dir").collect();
        assert!(left.is_empty(), "left behind in TMPDIR: {left:?}");
    }
}

fn assert_no_secret_in(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "a secret leaked into:\n{text}");
    }
}

#[test]
fn success_writes_the_pin_and_the_secrets_file() {
    let f = Fixture::new("ok");
    let cfg = f.path("primus.cfg");
    fs::write(&cfg, "hsms = {};\n").expect("primus.cfg");
    let out = f.enroll(&["--config", path_str(&cfg)]);
    let log = stderr(&out);
    assert_eq!(code(&out), 0, "{log}");

    // The two answers came on stdin: the setup password, then the PKCS#11 password = the pin.
    let stdin = f.read("stdin");
    let lines: Vec<&str> = stdin.lines().collect();
    assert_eq!(lines.len(), 2, "{stdin:?}");
    assert_eq!(lines[0], SETUP);
    let pin = f.read("out/pin");
    assert_eq!(lines[1], pin);
    assert_eq!(pin.len(), 32);
    assert!(pin.bytes().all(|b| b.is_ascii_hexdigit()), "{pin}");
    assert_eq!(mode(&f.path("out/pin")), 0o600);

    // The secrets file ppin wrote, now 0600 at --secrets-out.
    let secrets = f.read("out/secrets.cfg");
    assert!(secrets.contains(&format!("user = \"{USER}\"")), "{secrets}");
    assert!(secrets.contains("fake-ciphered-permanent-secret"), "{secrets}");
    assert_eq!(mode(&f.path("out/secrets.cfg")), 0o600);

    // argv: `-a -e USER -c CFG -s <private dir>/.secrets.cfg`, nothing secret.
    let argv = f.read("argv");
    let argv: Vec<&str> = argv.lines().collect();
    assert_eq!(&argv[..5], &["-a", "-e", USER, "-c", path_str(&cfg)], "{argv:?}");
    assert_eq!(argv[5], "-s");
    let secrets_path = Path::new(argv[6]);
    assert_eq!(secrets_path.file_name().and_then(|n| n.to_str()), Some(".secrets.cfg"));
    assert!(secrets_path.starts_with(f.path("tmp")), "{}", secrets_path.display());
    assert_eq!(argv.len(), 7, "{argv:?}");
    assert_eq!(f.read("secrets-dir-mode").trim(), "700");
    assert_eq!(
        f.read("secrets-env"),
        argv[6],
        "SECUROSYS_SECRETS_CONF names the same file"
    );
    assert_eq!(f.read("config-arg"), path_str(&cfg));
    f.temp_cleaned();

    assert_no_secret_in(&log, &[SETUP, &pin]);
    assert!(log.contains("enrolled"), "{log}");
}

#[test]
fn without_config_ppin_gets_no_c_option() {
    let f = Fixture::new("ok");
    let out = f.enroll(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let argv = f.read("argv");
    assert!(!argv.lines().any(|a| a == "-c"), "{argv}");
    assert!(!f.path("config-arg").exists());
}

#[test]
fn a_wrong_setup_password_exits_3_and_writes_nothing() {
    let f = Fixture::new("ok");
    let wrong = "WRONG-WRONG-WRONG-WRONG-WRONG";
    f.set_setup_password(wrong);
    let out = f.enroll(&[]);
    let log = stderr(&out);
    assert_eq!(code(&out), 3, "{log}");
    f.nothing_written();
    f.temp_cleaned();
    assert!(log.contains("SetupPasswordRejected"), "{log}");
    assert!(log.contains("0x80005017"), "{log}");
    let pin = f.read("stdin").lines().nth(1).unwrap_or_default().to_string();
    assert_no_secret_in(&log, &[wrong, &pin]);
}

#[test]
fn an_unreachable_hsm_is_a_plain_failure_with_a_network_message() {
    let f = Fixture::new("unreachable");
    let out = f.enroll(&[]);
    let log = stderr(&out);
    assert_eq!(code(&out), 1, "{log}");
    f.nothing_written();
    assert!(log.contains("EnrollmentFailed"), "{log}");
    assert!(log.contains("network unreachable"), "{log}");
}

#[test]
fn success_without_a_secrets_file_is_a_failure() {
    let f = Fixture::new("no-secrets-file");
    let out = f.enroll(&[]);
    let log = stderr(&out);
    assert_eq!(code(&out), 1, "{log}");
    f.nothing_written();
    assert!(
        log.contains("wrote no secrets file") || log.contains("secrets file"),
        "{log}"
    );
    f.temp_cleaned();
}

#[test]
fn secrets_the_tool_repeats_are_redacted() {
    let f = Fixture::new("echo-secrets");
    let out = f.enroll(&[]);
    let log = stderr(&out);
    assert_eq!(code(&out), 1, "{log}");
    f.nothing_written();
    let pin = f.read("stdin").lines().nth(1).unwrap_or_default().to_string();
    assert!(!pin.is_empty());
    assert_no_secret_in(&log, &[SETUP, &pin]);
    assert!(log.contains("<redacted>"), "{log}");
}

#[test]
fn a_hanging_ppin_is_stopped() {
    let f = Fixture::new("hang");
    let started = Instant::now();
    let out = f.enroll(&["--ppin-timeout-secs", "1"]);
    let log = stderr(&out);
    assert_eq!(code(&out), 1, "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(log.contains("did not finish within 1 s"), "{log}");
    f.nothing_written();
    f.temp_cleaned();
}

#[test]
fn a_missing_ppin_is_a_configuration_error() {
    let f = Fixture::new("ok");
    fs::remove_file(f.path("ppin")).expect("rm ppin");
    let out = f.enroll(&[]);
    let log = stderr(&out);
    assert_eq!(code(&out), 2, "{log}");
    assert!(log.contains("cannot run ppin"), "{log}");
    f.nothing_written();
}

#[test]
fn files_output_needs_secrets_out_and_nothing_runs_without_it() {
    let f = Fixture::new("ok");
    let (ppin, setup, pin) = (f.path("ppin"), f.path("setup-password"), f.path("out/pin"));
    let out = enroll(
        &[
            "--method",
            "ppin",
            "--ppin",
            path_str(&ppin),
            "--user",
            USER,
            "--setup-password-file",
            path_str(&setup),
            "--pin-out",
            path_str(&pin),
        ],
        &[],
    );
    let log = stderr(&out);
    assert_eq!(code(&out), 2, "{log}");
    assert!(log.contains("--secrets-out"), "{log}");
    assert!(!f.path("argv").exists(), "ppin ran");
}

#[test]
fn a_missing_output_directory_is_refused_before_ppin_runs() {
    let f = Fixture::new("ok");
    let (ppin, setup) = (f.path("ppin"), f.path("setup-password"));
    let (pin, cfg) = (f.path("nowhere/pin"), f.path("nowhere/secrets.cfg"));
    let out = enroll(
        &[
            "--method",
            "ppin",
            "--ppin",
            path_str(&ppin),
            "--user",
            USER,
            "--setup-password-file",
            path_str(&setup),
            "--pin-out",
            path_str(&pin),
            "--secrets-out",
            path_str(&cfg),
        ],
        &[],
    );
    let log = stderr(&out);
    assert_eq!(code(&out), 2, "{log}");
    assert!(
        !f.path("argv").exists(),
        "ppin ran although the result had nowhere to go"
    );
}
