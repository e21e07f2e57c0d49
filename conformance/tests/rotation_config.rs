//! Issue #10, a provider configuration change without a restart (sidecar/src/config_watch.rs,
//! reload.rs): the sidecar re-initializes the module under a running application, whose old
//! handles then fail as after a sidecar restart while new sessions work. One test per file: the
//! shim is process-global.

use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Api, RW};
use hsmbridge_conformance::setup;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::{SoftHsm, USER_PIN};

mod observe_support;
use observe_support::{free_port, scrape, value};

fn ok(rv: CK_RV, what: &str) {
    assert_eq!(rv, CKR_OK, "{what}: {}", hsmbridge_conformance::names::rv(rv));
}

#[test]
fn a_changed_configuration_reinitializes_the_module_and_the_app_recovers_with_new_sessions() {
    let hsm = SoftHsm::new();
    let config = hsm.dir().join("provider");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::write(config.join("primus.cfg"), "hsms = { hsm0 = { host = \"a\"; }; };\n").expect("config");
    std::fs::write(config.join(hsmbridge_contract::GENERATION_KEY), "1").expect("generation");
    let addr = format!("127.0.0.1:{}", free_port());
    let watch = config.display().to_string();
    let sidecar = Sidecar::start_with_args(hsm, None, &["--metrics-addr", &addr, "--watch-config", &watch]);
    for (k, v) in sidecar.shim_env() {
        std::env::set_var(k, v);
    }
    let mut api = Api::load(&sidecar.shim_lib(), false);
    let slot = setup::init(&mut api);
    let old = api.must_open_session(slot, RW);
    ok(api.login(old, CKU_USER, Some(USER_PIN)), "C_Login");
    ok(api.generate_random(old, 16).0, "C_GenerateRandom before");
    assert_eq!(value(&scrape(&addr), "hsmbridge_sidecar_config_generation"), 1.0);

    std::fs::write(config.join("primus.cfg"), "hsms = { hsm0 = { host = \"b\"; }; };\n").expect("config");
    std::fs::write(config.join(hsmbridge_contract::GENERATION_KEY), "2").expect("generation");
    let reinitialized = "hsmbridge_sidecar_module_reinitializations_total{cause=\"config_changed\"}";
    let deadline = Instant::now() + Duration::from_secs(20);
    while value(&scrape(&addr), reinitialized) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no re-initialization after the config changed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(value(&scrape(&addr), "hsmbridge_sidecar_config_generation"), 2.0);

    // The old session is gone, as after a sidecar restart: the first call may meet the closed
    // connection (CKR_DEVICE_ERROR), none succeeds, and then it is CKR_SESSION_HANDLE_INVALID.
    let mut answers = Vec::new();
    for _ in 0..2 {
        answers.push(api.generate_random(old, 16).0);
    }
    assert!(
        answers.iter().all(|rv| *rv != CKR_OK) && answers.last() == Some(&CKR_SESSION_HANDLE_INVALID),
        "old session after the re-initialization: {answers:x?}"
    );
    let new = api.must_open_session(slot, RW);
    ok(api.login(new, CKU_USER, Some(USER_PIN)), "C_Login in a new session");
    ok(api.generate_random(new, 16).0, "C_GenerateRandom in a new session");
    ok(api.finalize(), "C_Finalize");
    let lines = sidecar.stdout();
    assert!(
        lines.contains("\"event\":\"module_reinitialized\"") && lines.contains("generation 2"),
        "no audit line for the re-initialization:\n{lines}"
    );
}
