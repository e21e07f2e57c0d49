use super::*;

#[test]
fn vendor_codes_decide() {
    assert_eq!(
        classify("Error: 0x80005017"),
        Verdict::Rejected("0x80005017 setup password rejected")
    );
    assert_eq!(
        classify("rv=0X80005018"),
        Verdict::Rejected("0x80005018 setup password expired")
    );
    assert_eq!(classify("connect failed: 0x80005015"), Verdict::Unreachable);
    assert_eq!(classify("0x80000018 too many"), Verdict::MaxConnections);
}

#[test]
fn a_refused_setup_password_counts_even_without_a_code() {
    assert!(matches!(
        classify("ERROR: Setup password is wrong"),
        Verdict::Rejected(_)
    ));
    assert!(matches!(
        classify("the setup password has expired\n"),
        Verdict::Rejected(_)
    ));
}

#[test]
fn the_prompt_alone_is_not_a_rejection() {
    let out = "********************\nPrimus Permanent PIN\n********************\n\
               Provide setup password for 'PAYMENTS': Provide PKCS11 password for 'PAYMENTS':\n\
               some other failure";
    assert_eq!(classify(out), Verdict::Unknown);
    let user_named_badly =
        "Provide setup password for 'WRONG_EXPIRED': Provide PKCS11 password for 'WRONG_EXPIRED': \nboom";
    assert_eq!(classify(user_named_badly), Verdict::Unknown);
}

#[test]
fn a_rejection_wins_over_a_network_code() {
    // Never retry when in doubt: repeated bad setup passwords lock the partition.
    assert!(matches!(classify("0x80005015\n0x80005017"), Verdict::Rejected(_)));
}

#[test]
fn random_passwords_are_hex_and_differ() {
    let a = random_password().expect("urandom");
    let b = random_password().expect("urandom");
    assert_eq!(a.len(), PASSWORD_BYTES * 2);
    assert!(a.iter().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(*a, *b);
}

#[test]
fn the_private_dir_is_0700_and_removed() {
    let dir = PrivateDir::create().expect("temp dir");
    let path = dir.path().to_path_buf();
    let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    fs::write(path.join(".secrets.cfg"), b"x").expect("write");
    drop(dir);
    assert!(!path.exists());
}

#[test]
fn secrets_files_must_hold_something() {
    let dir = PrivateDir::create().expect("temp dir");
    let p = dir.path().join("s");
    assert!(read_secrets(&p).unwrap_err().contains("cannot be opened"));
    fs::write(&p, b"").expect("write");
    assert_eq!(read_secrets(&p).unwrap_err(), "is empty");
    fs::write(&p, b"blob").expect("write");
    assert_eq!(&*read_secrets(&p).expect("read"), b"blob");
}

#[test]
fn quotes_drop_the_banner_and_the_prompts() {
    let out = "********************\nPrimus Permanent PIN\n********************\n\
               Provide setup password for 'U': Provide PKCS11 password for 'U': \n\
               Primus Permanent PIN\n\nERROR: setup password rejected by HSM (0x80005017)\n";
    assert_eq!(quote(out), "ERROR: setup password rejected by HSM (0x80005017)");
    assert_eq!(quote("Provide setup password for 'U': boom\nbang"), "boom | bang");
    assert_eq!(quote("****\n"), "(no output)");
}
