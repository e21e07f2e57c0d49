use super::*;

/// The file's `KEY=value` lines, parsed the plain runtime way (what `sh` would assign).
fn file_entries() -> Vec<(String, String)> {
    CONTRACT_ENV
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not KEY=value: {l:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn every_key_of_the_file_is_exposed_with_its_value() {
    let file = file_entries();
    let exposed: Vec<(String, String)> = ALL.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let mut a = file.clone();
    let mut b = exposed.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "contract.env and ALL differ: add a `pub const` for each new key");
    assert_eq!(file.len(), ALL.len(), "no key twice");
}

#[test]
fn constants_hold_the_file_values() {
    assert_eq!(SHIM_FILE, "libhsmbridge_pkcs11.so");
    assert_eq!(APP_MODULE_PATH, format!("{APP_LIB_DIR}/{SHIM_FILE}"));
    assert!(IMAGE_SHIM_PATH.ends_with(&format!("/{SHIM_FILE}")));
    assert_eq!(SOCKET_PATH, format!("{SOCKET_DIR}/pkcs11.sock"));
    assert_eq!(ENV_SOCKET, "HSMBRIDGE_SOCKET");
    assert_eq!(ENV_MODULE_PATH, "PKCS11_MODULE_PATH");
    assert_eq!(RUN_AS_USER, 65532);
    for (key, value) in ALL {
        assert_eq!(lookup(CONTRACT_ENV, key), Ok(Some(*value)), "{key}");
    }
}

#[test]
fn comments_blank_lines_and_crlf_are_skipped() {
    const TEXT: &str = "# a comment\n\n   \n  # an indented comment with = in it\nA=1\r\n\tB=/x/y  \nC=\nD=a#b";
    assert_eq!(lookup(TEXT, "A"), Ok(Some("1")));
    assert_eq!(lookup(TEXT, "B"), Ok(Some("/x/y")));
    assert_eq!(lookup(TEXT, "C"), Ok(Some("")));
    assert_eq!(
        lookup(TEXT, "D"),
        Ok(Some("a#b")),
        "a # inside a word is not a comment in sh"
    );
    assert_eq!(lookup(TEXT, "a"), Ok(None), "keys are case-sensitive");
    assert_eq!(lookup(TEXT, "E"), Ok(None));
    assert_eq!(lookup("", "A"), Ok(None));
    assert_eq!(lookup("A=1", "A"), Ok(Some("1")), "no final newline");
}

#[test]
fn malformed_text_is_refused() {
    assert_eq!(lookup("A=1\njust words\n", "A"), Err(Malformed::NotAnAssignment));
    assert_eq!(lookup("A=1\n1A=2\n", "A"), Err(Malformed::BadKey));
    assert_eq!(lookup("A B=1\n", "A"), Err(Malformed::BadKey));
    assert_eq!(lookup("=1\n", "A"), Err(Malformed::BadKey));
    for value in ["a b", "\"q\"", "'q'", "$HOME", "`x`", "a\\b", "a;b", "~/x", "a|b"] {
        assert_eq!(
            lookup(Box::leak(format!("A={value}\n").into_boxed_str()), "A"),
            Err(Malformed::BadValue),
            "{value}"
        );
    }
    assert_eq!(lookup("A=1\nA=2\n", "A"), Err(Malformed::Duplicate));
    assert_eq!(
        lookup("A=1\nA=2\n", "B"),
        Ok(None),
        "a duplicate only matters for its key"
    );
    for e in [
        Malformed::NotAnAssignment,
        Malformed::BadKey,
        Malformed::BadValue,
        Malformed::Duplicate,
    ] {
        assert!(e.message().starts_with("contract/contract.env: "));
    }
}

#[test]
fn numbers() {
    assert_eq!(parse_i64("0"), 0);
    assert_eq!(parse_i64("65532"), 65532);
    assert_eq!(parse_i64("9223372036854775807"), i64::MAX);
    for bad in ["", "-1", "1x", "9223372036854775808"] {
        assert!(std::panic::catch_unwind(|| parse_i64(bad)).is_err(), "{bad:?}");
    }
}
