use super::*;

#[test]
fn every_secret_is_replaced_everywhere() {
    let text = "got AAAA-BBBB then pin 0123abcd, again AAAA-BBBB";
    let out = redact(text, &[b"AAAA-BBBB", b"0123abcd", b""]);
    assert_eq!(out, "got <redacted> then pin <redacted>, again <redacted>");
}

#[test]
fn empty_and_absent_secrets_change_nothing() {
    assert_eq!(redact("plain text", &[b"", b"zzz"]), "plain text");
}

#[test]
fn tail_keeps_the_end_on_one_line() {
    assert_eq!(tail("a\n\n  b  \nc\n", 100), "a | b | c");
    let long = "x".repeat(50) + "\nthe verdict";
    let t = tail(&long, 12);
    assert!(t.starts_with('…'), "{t}");
    assert!(t.ends_with("the verdict"), "{t}");
    assert_eq!(t.chars().count(), 13);
}
