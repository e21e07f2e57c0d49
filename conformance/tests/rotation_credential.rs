//! Issue #10, credential rotation without a restart (sidecar/src/held_pin.rs, monitor.rs): an
//! administrator changes the user PIN on the token (pkcs11-tool, a real client, straight on the
//! SoftHSM token) and then the PIN file the sidecar holds (as the kubelet swaps a Secret's
//! files). The application's open session keeps signing; once it has closed its sessions the
//! module is re-initialized (SoftHSM reads the token's new PIN only at C_Initialize) and its next
//! login uses the new PIN; the metrics and the audit trail show the new generation. One test per
//! file: the shim is process-global.

use std::process::Command;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Api, Out, RW};
use hsmbridge_conformance::keys;
use hsmbridge_conformance::mechs::Mech;
use hsmbridge_conformance::paths::softhsm_module;
use hsmbridge_conformance::setup;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::{SoftHsm, USER_PIN};

mod observe_support;
use observe_support::{free_port, scrape, value};

const NEW_PIN: &str = "rotated-4711";

/// Two of the sidecar's checks (monitor.rs checks every 2 s).
fn monitor_period() -> Duration {
    Duration::from_secs(5)
}

fn ok(rv: CK_RV, what: &str) {
    assert_eq!(rv, CKR_OK, "{what}: {}", hsmbridge_conformance::names::rv(rv));
}

#[test]
fn a_rotated_pin_is_used_at_the_next_login_while_open_sessions_keep_working() {
    let hsm = SoftHsm::new();
    let (conf, dir) = (hsm.conf().to_path_buf(), hsm.dir().to_path_buf());
    let pin_file = dir.join("credentials").join("pin");
    std::fs::create_dir_all(pin_file.parent().expect("parent")).expect("credentials dir");
    std::fs::write(&pin_file, USER_PIN).expect("pin file");
    let generation_file = pin_file.with_file_name(hsmbridge_contract::GENERATION_KEY);
    std::fs::write(&generation_file, "1").expect("generation file");
    let addr = format!("127.0.0.1:{}", free_port());
    let sidecar = Sidecar::start_with_args(hsm, Some(pin_file.clone()), &["--metrics-addr", &addr]);
    assert_eq!(value(&scrape(&addr), "hsmbridge_sidecar_credential_generation"), 1.0);
    for (k, v) in sidecar.shim_env() {
        std::env::set_var(k, v);
    }
    let mut api = Api::load(&sidecar.shim_lib(), false);
    let slot = setup::init(&mut api);
    let s = api.must_open_session(slot, RW);
    ok(api.login(s, CKU_USER, None), "C_Login with the held PIN");
    let (rv, key) = api.create_object(s, &keys::ec_private());
    ok(rv, "C_CreateObject");
    let sign = |api: &mut Api, what: &str| {
        ok(api.sign_init(s, &Mech::new(CKM_ECDSA), key), what);
        ok(api.sign(s, &[0x5a; 32], Out::Auto).0, what);
    };
    sign(&mut api, "sign before the rotation");

    // The administrator's rotation: the token's PIN first, then the Secret's files.
    // The PINs go through the environment (`env:`), never the command line.
    let changed = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &conf)
        .env("OLD_PIN", USER_PIN)
        .env("NEW_PIN", NEW_PIN)
        .arg("--module")
        .arg(softhsm_module())
        .args([
            "--change-pin",
            "--login",
            "--pin",
            "env:OLD_PIN",
            "--new-pin",
            "env:NEW_PIN",
        ])
        .output()
        .expect("run pkcs11-tool");
    assert!(changed.status.success(), "pkcs11-tool --change-pin: {changed:?}");
    sign(&mut api, "the open session signs after the token's PIN changed");
    std::fs::write(&pin_file, NEW_PIN).expect("new pin");
    std::fs::write(&generation_file, "2").expect("new generation");
    std::thread::sleep(monitor_period());
    sign(&mut api, "the open session signs after the PIN file changed");
    assert_eq!(
        value(&scrape(&addr), "hsmbridge_sidecar_credential_generation"),
        1.0,
        "adopted while a session was open"
    );

    // The app closes its sessions; the module is re-initialized, and the next login uses the new PIN.
    ok(api.close_all_sessions(slot), "C_CloseAllSessions");
    let reinitialized = "hsmbridge_sidecar_module_reinitializations_total{cause=\"credential_changed\"}";
    let deadline = Instant::now() + Duration::from_secs(15);
    while value(&scrape(&addr), reinitialized) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no re-initialization after the sessions closed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(value(&scrape(&addr), "hsmbridge_sidecar_credential_generation"), 2.0);
    let s = api.must_open_session(slot, RW);
    ok(api.login(s, CKU_USER, None), "C_Login after the rotation");
    let (rv, key) = api.create_object(s, &keys::ec_private());
    ok(rv, "C_CreateObject after the rotation");
    ok(
        api.sign_init(s, &Mech::new(CKM_ECDSA), key),
        "C_SignInit after the re-login",
    );
    ok(api.sign(s, &[0x5a; 32], Out::Auto).0, "C_Sign after the re-login");
    ok(api.finalize(), "C_Finalize");

    let metrics = scrape(&addr);
    assert_eq!(
        value(&metrics, "hsmbridge_sidecar_credential_reloads_total"),
        1.0,
        "{metrics}"
    );
    assert_eq!(value(&metrics, "hsmbridge_sidecar_held_pin_rejected"), 0.0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let lines: Vec<serde_json::Value> = sidecar
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.iter().filter(|l| l["event"] == "backend_login").count() >= 2 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "credential_changed"
                && l["detail"].as_str().is_some_and(|d| d.contains("generation 2"))),
        "no credential_changed line: {lines:#?}"
    );
    let relogin = lines
        .iter()
        .rfind(|l| l["event"] == "backend_login")
        .unwrap_or_else(|| panic!("no backend_login line: {lines:#?}"));
    assert_eq!(relogin["result"], "CKR_OK");
    assert!(
        relogin["detail"].as_str().is_some_and(|d| d.contains("generation 2")),
        "{relogin}"
    );
    let everything = sidecar.stdout() + &sidecar.stderr();
    assert!(
        !everything.contains(NEW_PIN) && !everything.contains(USER_PIN),
        "a PIN was written out"
    );
}
