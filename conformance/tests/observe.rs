//! Issue #10: the sidecar's metrics and audit trail, seen by a real PKCS#11 client (the shim,
//! in this process) against SoftHSM. Every call moves its counter; the audit names the key of
//! each sign, MAC, decrypt, unwrap and derive, and the re-login; nothing the sidecar writes
//! (audit trail, log) holds the PIN or key bytes. One test per file: the shim is process-global.

use std::time::Duration;

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Api, Out, RW};
use hsmbridge_conformance::keys::{self, secret, unhex_const};
use hsmbridge_conformance::mechs::Mech;
use hsmbridge_conformance::setup;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::{SoftHsm, USER_PIN};
use hsmbridge_conformance::template::Template;

mod observe_support;
use observe_support::{free_port, scrape, value};

fn calls(text: &str, function: &str, result: &str) -> f64 {
    value(
        text,
        &format!("hsmbridge_sidecar_calls_total{{function=\"{function}\",result=\"{result}\"}}"),
    )
}

fn ok(rv: CK_RV, what: &str) {
    assert_eq!(rv, CKR_OK, "{what}: {}", hsmbridge_conformance::names::rv(rv));
}

#[test]
fn calls_move_their_counters_and_the_audit_names_every_key_use_but_never_the_pin() {
    let hsm = SoftHsm::new();
    let pin_file = hsm.dir().join("user.pin");
    std::fs::write(&pin_file, USER_PIN).expect("pin file");
    let addr = format!("127.0.0.1:{}", free_port());
    let sidecar = Sidecar::start_with_args(hsm, Some(pin_file), &["--metrics-addr", &addr]);
    for (k, v) in sidecar.shim_env() {
        std::env::set_var(k, v);
    }
    std::env::set_var(hsmbridge_contract::ENV_CONTAINER, "app");
    let mut api = Api::load(&sidecar.shim_lib(), false);
    let slot = setup::init(&mut api);
    let s = api.must_open_session(slot, RW);
    ok(api.login(s, CKU_USER, None), "C_Login (managed: NULL PIN)");

    let ec = {
        let t = keys::ec_private().bytes(CKA_ID, &[0xec, 0x01]);
        let (rv, h) = api.create_object(s, &t);
        ok(rv, "C_CreateObject(EC private)");
        h
    };
    let aes_value = unhex_const(keys::AES128);
    let aes = {
        let t = secret(CKK_AES, keys::AES128, "audit-aes").bytes(CKA_ID, &[0xa1, 0xe5]);
        let (rv, h) = api.create_object(s, &t);
        ok(rv, "C_CreateObject(AES)");
        h
    };
    let kek = {
        let t = secret(CKK_AES, keys::AES256, "audit-kek").bytes(CKA_ID, &[0x0e, 0x0e]);
        let (rv, h) = api.create_object(s, &t);
        ok(rv, "C_CreateObject(KEK)");
        h
    };
    let hmac = {
        let t = secret(CKK_GENERIC_SECRET, keys::HMAC, "audit-hmac").bytes(CKA_ID, &[0x4d]);
        let (rv, h) = api.create_object(s, &t);
        ok(rv, "C_CreateObject(HMAC)");
        h
    };

    // Sign (ECDSA), MAC (HMAC), encrypt + decrypt (AES), wrap + unwrap, derive.
    ok(api.sign_init(s, &Mech::new(CKM_ECDSA), ec), "C_SignInit(ECDSA)");
    ok(api.sign(s, &[0x11; 32], Out::Auto).0, "C_Sign(ECDSA)");
    ok(api.sign_init(s, &Mech::new(CKM_SHA256_HMAC), hmac), "C_SignInit(HMAC)");
    ok(api.sign(s, b"mac me", Out::Auto).0, "C_Sign(HMAC)");
    ok(api.encrypt_init(s, &Mech::new(CKM_AES_ECB), aes), "C_EncryptInit");
    let (rv, ciphertext) = api.encrypt(s, &[0x22; 16], Out::Auto);
    ok(rv, "C_Encrypt");
    ok(api.decrypt_init(s, &Mech::new(CKM_AES_ECB), aes), "C_DecryptInit");
    ok(api.decrypt(s, &ciphertext, Out::Auto).0, "C_Decrypt");
    let (rv, wrapped) = api.wrap_key(s, &Mech::new(CKM_AES_KEY_WRAP), kek, aes, Out::Auto);
    ok(rv, "C_WrapKey");
    // Exporting a key with a public key the app brought is audited too (review finding).
    let rsa_public = {
        let t = keys::rsa_public().bytes(CKA_ID, &[0x05]);
        let (rv, h) = api.create_object(s, &t);
        ok(rv, "C_CreateObject(RSA public)");
        h
    };
    ok(
        api.wrap_key(s, &Mech::new(CKM_RSA_PKCS), rsa_public, aes, Out::Auto).0,
        "C_WrapKey with an RSA public key",
    );
    let unwrapped_template = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_TOKEN, false)
        .text(CKA_LABEL, "audit-unwrapped")
        .bytes(CKA_ID, &[0x77]);
    let (rv, _unwrapped) = api.unwrap_key(s, &Mech::new(CKM_AES_KEY_WRAP), kek, &wrapped, &unwrapped_template);
    ok(rv, "C_UnwrapKey");
    let derived_template = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .ulong(CKA_VALUE_LEN, 16)
        .bool(CKA_TOKEN, false)
        .text(CKA_LABEL, "audit-derived")
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true);
    let (rv, _derived) = api.derive_key(
        s,
        &Mech::string_data(CKM_AES_ECB_ENCRYPT_DATA, &[0x33; 16]),
        aes,
        &derived_template,
    );
    ok(rv, "C_DeriveKey");
    let (rv, _) = api.generate_random(s, 16);
    ok(rv, "C_GenerateRandom");
    ok(api.logout(s), "C_Logout");
    ok(api.close_session(s), "C_CloseSession");
    ok(api.finalize(), "C_Finalize");

    // Metrics: each function the client called, with its result.
    let text = scrape(&addr);
    for (function, n) in [
        ("C_OpenSession", 1.0),
        ("C_Login", 1.0),
        ("C_CreateObject", 5.0),
        ("C_SignInit", 2.0),
        ("C_Sign", 2.0),
        ("C_EncryptInit", 1.0),
        ("C_DecryptInit", 1.0),
        ("C_WrapKey", 1.0),
        ("C_UnwrapKey", 1.0),
        ("C_DeriveKey", 1.0),
        ("C_GenerateRandom", 1.0),
        ("C_Logout", 1.0),
        ("C_CloseSession", 1.0),
    ] {
        assert!(
            calls(&text, function, "CKR_OK") >= n,
            "{function} CKR_OK counted fewer than {n} times:\n{text}"
        );
        let count = value(
            &text,
            &format!("hsmbridge_sidecar_call_duration_seconds_count{{function=\"{function}\"}}"),
        );
        assert!(count >= n, "{function}: latency histogram count {count}");
    }
    assert!(value(&text, "hsmbridge_sidecar_received_bytes_total") > 0.0);
    assert!(value(&text, "hsmbridge_sidecar_sent_bytes_total") > 0.0);
    assert_eq!(value(&text, "hsmbridge_sidecar_sessions"), 0.0, "{text}");

    // The audit trail, once the writer has caught up.
    let mut lines: Vec<serde_json::Value> = Vec::new();
    for _ in 0..50 {
        lines = sidecar
            .stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
            .collect();
        if lines.iter().any(|l| l["function"] == "C_Logout") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let find = |function: &str, label: &str| {
        lines
            .iter()
            .find(|l| l["function"] == function && l["key"]["label"] == label)
            .unwrap_or_else(|| panic!("no audit line for {function} with key {label}:\n{lines:#?}"))
            .clone()
    };
    let sign = find("C_SignInit", "ec");
    assert_eq!(sign["event"], "key_use");
    assert_eq!(sign["key"]["id"], "ec01");
    assert_eq!(sign["mechanism"], "CKM_ECDSA");
    assert_eq!(sign["result"], "CKR_OK");
    assert_eq!(sign["container"], "app");
    assert_eq!(sign["process"]["pid"], std::process::id());
    assert_eq!(sign["process"]["uid"], u64::from(unsafe_free_uid()));
    assert_eq!(find("C_SignInit", "audit-hmac")["mechanism"], "CKM_SHA256_HMAC");
    assert_eq!(find("C_DecryptInit", "audit-aes")["key"]["id"], "a1e5");
    let unwrap = find("C_UnwrapKey", "audit-kek");
    assert_eq!(unwrap["object"]["label"], "audit-unwrapped");
    assert_eq!(unwrap["object"]["id"], "77");
    assert_eq!(find("C_DeriveKey", "audit-aes")["object"]["label"], "audit-derived");
    assert_eq!(find("C_WrapKey", "audit-kek")["object"]["label"], "audit-aes");
    let exported = lines
        .iter()
        .find(|l| l["function"] == "C_WrapKey" && l["key"]["class"] == "public_key")
        .unwrap_or_else(|| panic!("no audit line for the wrap with a public key:\n{lines:#?}"));
    assert_eq!(exported["object"]["label"], "audit-aes");
    let login = lines
        .iter()
        .find(|l| l["function"] == "C_Login")
        .unwrap_or_else(|| panic!("no C_Login line: {lines:#?}"));
    assert_eq!(
        login["event"], "backend_login",
        "managed mode: the sidecar's PIN logged the backend in"
    );
    assert!(lines
        .iter()
        .any(|l| l["function"] == "C_Logout" && l["event"] == "logout"));
    let created = lines.iter().filter(|l| l["event"] == "object_created").count();
    assert!(created >= 4, "{created} object_created lines");

    // Nothing written holds the PIN or key bytes, in any encoding.
    let streams = [("audit trail", sidecar.stdout()), ("log", sidecar.stderr())];
    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("the PIN".into(), USER_PIN.as_bytes().to_vec()),
        ("the AES key".into(), aes_value.clone()),
        ("the KEK".into(), unhex_const(keys::AES256)),
        ("the HMAC key".into(), unhex_const(keys::HMAC)),
        ("the EC private key".into(), unhex_const(keys::EC_P256_PRIVATE)),
        ("the wrapped key".into(), wrapped.clone()),
    ];
    let hexes: Vec<(String, Vec<u8>)> = secrets
        .iter()
        .map(|(n, b)| {
            (
                format!("{n} in hex"),
                b.iter().map(|x| format!("{x:02x}")).collect::<String>().into_bytes(),
            )
        })
        .collect();
    secrets.extend(hexes);
    for (stream, text) in &streams {
        for (what, bytes) in &secrets {
            assert!(
                !text.as_bytes().windows(bytes.len()).any(|w| w == bytes.as_slice()),
                "the sidecar's {stream} holds {what}"
            );
        }
    }
}

/// This process's real UID, from /proc (no unsafe getuid call needed).
fn unsafe_free_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:")?.split_whitespace().next()?.parse().ok())
        .expect("Uid line")
}
