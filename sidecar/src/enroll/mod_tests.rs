use std::path::Path;

use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: EnrollArgs,
}

fn plan(argv: &[&str]) -> Result<Plan, String> {
    let cli = Cli::try_parse_from(std::iter::once("enroll").chain(argv.iter().copied())).map_err(|e| e.to_string())?;
    Plan::from_args(cli.args)
}

#[test]
fn the_old_command_line_still_means_pkcs11_init_pin_to_a_file() {
    let p = plan(&[
        "--module",
        "/m.so",
        "--token",
        "t",
        "--setup-password-file",
        "/s",
        "--pin-out",
        "/o",
    ])
    .expect("valid");
    assert!(matches!(p.method, Method::InitPin { ref token, .. } if token == "t"));
    assert!(matches!(p.destination, Destination::Files { secrets: None, .. }));
}

#[test]
fn the_contract_command_lines_parse() {
    let p = plan(&[
        "--method",
        "pkcs11-init-pin",
        "--module",
        "/m.so",
        "--token",
        "payments",
        "--setup-password-file",
        "/var/run/hsmbridge/setup/setup-password",
        "--secret",
        "payments-credentials",
        "--namespace",
        "team-a",
    ])
    .expect("valid");
    assert!(
        matches!(p.destination, Destination::Secret { ref name, namespace: Some(ref ns) }
        if name == "payments-credentials" && ns == "team-a")
    );

    let p = plan(&[
        "--method",
        "ppin",
        "--ppin",
        "/opt/ppin",
        "--user",
        "PAYMENTS",
        "--setup-password-file",
        "/s",
        "--secret",
        "payments-credentials",
    ])
    .expect("valid");
    match p.method {
        Method::Ppin(o) => {
            assert_eq!(o.path, PathBuf::from("/opt/ppin"));
            assert_eq!(o.user, "PAYMENTS");
            assert_eq!(o.config, None);
        }
        Method::InitPin { .. } => panic!("expected ppin"),
    }
    assert!(matches!(p.destination, Destination::Secret { namespace: None, .. }));
}

#[test]
fn ppin_defaults_to_the_vendor_path() {
    let p = plan(&[
        "--method",
        "ppin",
        "--user",
        "U",
        "--setup-password-file",
        "/s",
        "--pin-out",
        "/p",
        "--secrets-out",
        "/c",
    ])
    .expect("valid");
    assert!(matches!(p.method, Method::Ppin(ref o) if o.path == Path::new(ppin::DEFAULT_PATH)));
    assert!(matches!(p.destination, Destination::Files { secrets: Some(_), .. }));
}

#[test]
fn mistakes_are_refused_with_a_reason() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--token", "t", "--setup-password-file", "/s", "--pin-out", "/o"],
            "--module",
        ),
        (
            &["--module", "/m", "--setup-password-file", "/s", "--pin-out", "/o"],
            "--token",
        ),
        (
            &["--method", "ppin", "--setup-password-file", "/s", "--secret", "x"],
            "--user",
        ),
        (
            &[
                "--method",
                "ppin",
                "--user",
                "U",
                "--setup-password-file",
                "/s",
                "--pin-out",
                "/o",
            ],
            "--secrets-out",
        ),
        (
            &[
                "--method",
                "ppin",
                "--user",
                "U",
                "--token",
                "t",
                "--setup-password-file",
                "/s",
                "--secret",
                "x",
            ],
            "--token",
        ),
        (
            &[
                "--module",
                "/m",
                "--token",
                "t",
                "--user",
                "U",
                "--setup-password-file",
                "/s",
                "--secret",
                "x",
            ],
            "--user",
        ),
        (
            &[
                "--module",
                "/m",
                "--token",
                "t",
                "--setup-password-file",
                "/s",
                "--pin-out",
                "/o",
                "--secrets-out",
                "/c",
            ],
            "--secrets-out",
        ),
        (
            &["--module", "/m", "--token", "t", "--setup-password-file", "/s"],
            "--pin-out",
        ),
        (
            &[
                "--module",
                "/m",
                "--token",
                "t",
                "--setup-password-file",
                "/s",
                "--pin-out",
                "/o",
                "--secret",
                "x",
            ],
            "--secret",
        ),
        (
            &[
                "--module",
                "/m",
                "--token",
                "t",
                "--setup-password-file",
                "/s",
                "--pin-out",
                "/o",
                "--namespace",
                "n",
            ],
            "--namespace",
        ),
        (
            &[
                "--method",
                "ppin",
                "--user",
                "U",
                "--setup-password-file",
                "/s",
                "--secret",
                "x",
                "--secrets-out",
                "/c",
            ],
            "--secrets-out",
        ),
        (
            &[
                "--method",
                "other",
                "--module",
                "/m",
                "--token",
                "t",
                "--setup-password-file",
                "/s",
                "--pin-out",
                "/o",
            ],
            "other",
        ),
    ];
    for (argv, mentions) in cases {
        match plan(argv) {
            Ok(p) => panic!("{argv:?} was accepted: {p:?}"),
            Err(why) => assert!(why.contains(mentions), "{argv:?}: {why}"),
        }
    }
}

#[test]
fn exit_codes_follow_the_contract() {
    assert_eq!(EnrollError::SetupPasswordRejected("x".into()).exit_code(), 3);
    assert_eq!(EnrollError::NoToken("t".into()).exit_code(), 4);
    assert_eq!(
        EnrollError::Pkcs11 {
            step: "C_InitPIN",
            rv: Rv(cryptoki_sys::CKR_DEVICE_ERROR)
        }
        .exit_code(),
        1
    );
    let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
    assert_eq!(
        EnrollError::SetupPasswordFile {
            path: "/s".into(),
            source: missing
        }
        .exit_code(),
        2
    );
    assert_eq!(
        EnrollError::SetupPasswordRejected("x".into()).reason().as_str(),
        "SetupPasswordRejected"
    );
    assert_eq!(EnrollError::NoToken("t".into()).reason().as_str(), "NoToken");
    assert_eq!(
        EnrollError::SetupPasswordMultiline("/s".into()).reason().as_str(),
        "EnrollmentFailed"
    );
}

#[test]
fn hex_is_lower_case_and_twice_as_long() {
    assert_eq!(&*hex(&[0x00, 0x9f, 0xff]), b"009fff");
}

#[test]
fn the_annotation_detail_of_a_rejection_is_the_cause_alone() {
    let e = EnrollError::SetupPasswordRejected("C_Login(SO) failed: CKR_PIN_INCORRECT".into());
    assert_eq!(e.detail(), "C_Login(SO) failed: CKR_PIN_INCORRECT");
    assert!(
        e.to_string().contains("not retried"),
        "the log line keeps the advice: {e}"
    );
    let e = EnrollError::NoToken("t".into());
    assert_eq!(e.detail(), e.to_string());
}
