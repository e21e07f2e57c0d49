//! `hsm-sidecar enroll` (pkcs11-init-pin, the default method) against a real SoftHSM token in a
//! temp dir; the results are checked with `pkcs11-tool`, straight against SoftHSM.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{code, enroll, mode, path_str, stderr, temp_dir, write_secret};

const LABEL: &str = "enroll-test";
const SETUP: &str = "ABCDE-12345-FGHIJ-67890-KLMNO";

fn module() -> PathBuf {
    std::env::var_os("HSMBRIDGE_SOFTHSM_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

/// A SoftHSM config in a temp dir with one token: SO PIN = the setup password, a throwaway user PIN.
struct Token {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Token {
    fn new() -> Self {
        let dir = temp_dir();
        let tokens = dir.path().join("tokens");
        fs::create_dir(&tokens).expect("tokens dir");
        let conf = dir.path().join("softhsm2.conf");
        fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("softhsm2.conf");
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                LABEL,
                "--so-pin",
                SETUP,
                "--pin",
                "throwaway-1234",
            ])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("running softhsm2-util (is softhsm2 installed?)");
        assert!(out.status.success(), "softhsm2-util --init-token: {}", stderr(&out));
        fs::create_dir(dir.path().join("out")).expect("out dir");
        let t = Token { dir, conf };
        write_secret(&t.path("setup-password"), &format!("{SETUP}\n"));
        t
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn enroll(&self, args: &[&str]) -> Output {
        enroll(args, &[("SOFTHSM2_CONF", &self.conf)])
    }

    /// `hsm-sidecar enroll --module M --token L --setup-password-file F --pin-out P`, as `make demo` runs it.
    fn enroll_to(&self, setup_file: &Path, pin_out: &Path) -> Output {
        let m = module();
        self.enroll(&[
            "--module",
            path_str(&m),
            "--token",
            LABEL,
            "--setup-password-file",
            path_str(setup_file),
            "--pin-out",
            path_str(pin_out),
        ])
    }

    /// pkcs11-tool logged in as `user` ("user" or "so") with `pin`; Ok(stdout) or Err(all output).
    fn login(&self, user: &str, pin: &str) -> Result<String, String> {
        let m = module();
        let mut cmd = Command::new("pkcs11-tool");
        cmd.args([
            "--module",
            path_str(&m),
            "--token-label",
            LABEL,
            "--login",
            "--login-type",
            user,
        ]);
        if user == "so" {
            cmd.args(["--so-pin", pin, "--session-rw"]);
        } else {
            cmd.args(["--pin", pin]);
        }
        let out = cmd
            .arg("--list-objects")
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .expect("running pkcs11-tool");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }
}

#[test]
fn success_writes_a_pin_that_logs_in_and_spends_the_setup_password() {
    let t = Token::new();
    let pin_file = t.path("out/pin");
    let out = t.enroll_to(&t.path("setup-password"), &pin_file);
    let log = stderr(&out);
    assert_eq!(code(&out), 0, "{log}");
    assert_eq!(mode(&pin_file), 0o600);
    let pin = fs::read_to_string(&pin_file).expect("pin file");
    assert!(
        pin.len() >= 32 && pin.bytes().all(|b| b.is_ascii_hexdigit()),
        "a long random hex PIN"
    );

    if let Err(e) = t.login("user", &pin) {
        panic!("the enrolled PIN does not log in: {e}");
    }
    match t.login("so", SETUP) {
        Ok(o) => panic!("the setup password still logs in as SO: {o}"),
        Err(e) => assert!(e.contains("CKR_PIN_INCORRECT"), "{e}"),
    }
    assert!(
        !log.contains(SETUP) && !log.contains(&pin),
        "a secret leaked into the log:\n{log}"
    );

    // Enrolling again with the spent setup password is refused (3) and keeps the credential.
    let again = t.enroll_to(&t.path("setup-password"), &t.path("out/pin2"));
    assert_eq!(code(&again), 3, "{}", stderr(&again));
    assert!(!t.path("out/pin2").exists());
    assert!(t.login("user", &pin).is_ok(), "the first credential must keep working");
}

#[test]
fn explicit_method_works_the_same() {
    let t = Token::new();
    let m = module();
    let (setup, pin_file) = (t.path("setup-password"), t.path("out/pin"));
    let out = t.enroll(&[
        "--method",
        "pkcs11-init-pin",
        "--module",
        path_str(&m),
        "--token",
        LABEL,
        "--setup-password-file",
        path_str(&setup),
        "--pin-out",
        path_str(&pin_file),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let pin = fs::read_to_string(&pin_file).expect("pin file");
    assert!(t.login("user", &pin).is_ok());
}

#[test]
fn a_wrong_setup_password_exits_3_and_writes_nothing() {
    let t = Token::new();
    let wrong = t.path("wrong-setup");
    write_secret(&wrong, "WRONG-WRONG-WRONG-WRONG-WRONG");
    let pin_file = t.path("out/pin");
    let out = t.enroll_to(&wrong, &pin_file);
    let log = stderr(&out);
    assert_eq!(code(&out), 3, "{log}");
    assert!(!pin_file.exists(), "a PIN file was written");
    assert!(
        log.contains("SetupPasswordRejected") && log.contains("CKR_PIN_INCORRECT"),
        "{log}"
    );
    assert!(
        !log.contains("WRONG-WRONG"),
        "the setup password leaked into the log:\n{log}"
    );
    // Nothing was changed: the real setup password still works, and so does the old user PIN.
    assert!(t.login("so", SETUP).is_ok());
    assert!(t.login("user", "throwaway-1234").is_ok());
}

#[test]
fn an_unknown_token_exits_4() {
    let t = Token::new();
    let m = module();
    let (setup, pin_file) = (t.path("setup-password"), t.path("out/pin"));
    let out = t.enroll(&[
        "--module",
        path_str(&m),
        "--token",
        "no-such-token",
        "--setup-password-file",
        path_str(&setup),
        "--pin-out",
        path_str(&pin_file),
    ]);
    let log = stderr(&out);
    assert_eq!(code(&out), 4, "{log}");
    assert!(log.contains("NoToken") && log.contains("no-such-token"), "{log}");
    assert!(!pin_file.exists());
}

#[test]
fn a_missing_output_directory_is_refused_before_the_setup_password_is_used() {
    let t = Token::new();
    let out = t.enroll_to(&t.path("setup-password"), &t.path("nowhere/pin"));
    let log = stderr(&out);
    assert_eq!(code(&out), 2, "{log}");
    assert!(log.contains("does not exist"), "{log}");
    assert!(t.login("so", SETUP).is_ok(), "the setup password was spent for nothing");
}

#[test]
fn configuration_errors_exit_2() {
    let t = Token::new();
    let pin_file = t.path("out/pin");
    // No such module.
    let out = t.enroll(&[
        "--module",
        "/nonexistent/libnothing.so",
        "--token",
        LABEL,
        "--setup-password-file",
        path_str(&t.path("setup-password")),
        "--pin-out",
        path_str(&pin_file),
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // No setup password file.
    let out = t.enroll_to(&t.path("missing-setup"), &pin_file);
    let log = stderr(&out);
    assert_eq!(code(&out), 2, "{log}");
    assert!(log.contains("setup password file"), "{log}");
    // A usage error from clap.
    let out = t.enroll(&["--token", LABEL]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(!pin_file.exists());
    assert!(t.login("so", SETUP).is_ok());
}
