//! The differential oracle of DESIGN.md: the same call sequence against
//! SoftHSM loaded directly and against the shim in front of a sidecar whose
//! SoftHSM token was initialized identically; the transcripts must be equal.
//!
//! A test calls [`differential`] with its call sequence. In the test
//! process that only sets up the fixtures and starts two children (this same
//! test, one per side); in each child it loads the side's module, runs the
//! sequence and prints the transcript.

use crate::calls::Api;
use crate::paths::{shim_lib, softhsm_module};
use crate::process::{self, Output, MODULE_ENV, ROLE_ENV};
use crate::sidecar::Sidecar;
use crate::softhsm::SoftHsm;
use crate::transcript::{self, END_MARKER};

/// What the direct side is compared against: `shim` (default) or `direct`
/// (a second SoftHSM: checks that transcripts leave out everything that
/// legitimately differs between two tokens).
pub const AGAINST_ENV: &str = "HSMBRIDGE_CONFORMANCE_AGAINST";
/// Set to print the direct side's transcript (see it with `--nocapture`).
pub const SHOW_ENV: &str = "HSMBRIDGE_CONFORMANCE_SHOW";

const DIRECT: &str = "direct";
const SHIM: &str = "shim";

/// Runs `body` on both sides and asserts equal transcripts.
pub fn differential(body: impl FnOnce(&mut Api)) {
    match process::role().as_deref() {
        Some(DIRECT) | Some(SHIM) => run_side(body),
        Some(other) => panic!("unexpected {ROLE_ENV}={other} for a differential test"),
        None => compare(&process::test_name()),
    }
}

/// Child: load the module, run the sequence, mark the end.
fn run_side(body: impl FnOnce(&mut Api)) {
    let mut api = Api::load(&process::module_path(), true);
    body(&mut api);
    println!("\n{END_MARKER}");
}

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn direct_env(hsm: &SoftHsm) -> Vec<(String, String)> {
    env(&[
        (ROLE_ENV, DIRECT.into()),
        (MODULE_ENV, softhsm_module().display().to_string()),
        ("SOFTHSM2_CONF", hsm.conf().display().to_string()),
    ])
}

/// Environment for a child that loads the shim in front of `sidecar`.
pub fn shim_env(sidecar: &Sidecar, role: &str) -> Vec<(String, String)> {
    let mut e = env(&[(ROLE_ENV, role.into()), (MODULE_ENV, shim_lib().display().to_string())]);
    e.extend(sidecar.shim_env());
    e
}

/// Parent: fixtures, both children, comparison.
fn compare(test: &str) {
    let direct_hsm = SoftHsm::new();
    let a_cmd = process::self_command(test, &direct_env(&direct_hsm), &[]);
    let against = std::env::var(AGAINST_ENV).unwrap_or_else(|_| SHIM.into());
    // Whatever serves side B must outlive the children.
    let (b_cmd, sidecar, _second_hsm) = match against.as_str() {
        DIRECT => {
            let hsm = SoftHsm::new();
            (process::self_command(test, &direct_env(&hsm), &[]), None, Some(hsm))
        }
        SHIM => {
            let sidecar = Sidecar::start();
            let cmd = process::self_command(test, &shim_env(&sidecar, SHIM), &["SOFTHSM2_CONF"]);
            (cmd, Some(sidecar), None)
        }
        other => panic!("{AGAINST_ENV}={other}: expected {SHIM} or {DIRECT}"),
    };
    let a = std::thread::spawn(move || process::run(a_cmd));
    let b = process::run(b_cmd);
    let a = a.join().expect("direct-side runner thread");
    let sidecar_log = sidecar
        .as_ref()
        .map(|s| process::tail(&s.stderr(), 40))
        .unwrap_or_default();
    verdict(test, &against, &a, &b, &sidecar_log);
}

fn verdict(test: &str, against: &str, a: &Output, b: &Output, sidecar_log: &str) {
    let (a_lines, a_done) = transcript::parse(&a.stdout);
    let (b_lines, b_done) = transcript::parse(&b.stdout);
    if std::env::var_os(SHOW_ENV).is_some() {
        println!("=== {test} (direct side)\n{}", a_lines.join("\n"));
    }
    if !a.success() || !a_done {
        panic!(
            "{test}: the direct SoftHSM side did not complete (a test bug, not a shim bug): {}\n\
             last transcript lines:\n{}",
            a.describe(),
            process::tail(&a_lines.join("\n"), 15)
        );
    }
    let context = format!(
        "--- {against} side: {}\n--- sidecar stderr (tail):\n{sidecar_log}",
        b.describe()
    );
    if let Some(diff) = transcript::diff(&a_lines, &b_lines) {
        panic!("{test}: transcripts differ (- direct SoftHSM, + {against}; line numbers per side):\n{diff}\n{context}");
    }
    if !b.success() || !b_done {
        panic!("{test}: the {against} side failed after an identical transcript:\n{context}");
    }
}

/// A test that runs only through the shim (behaviour that differs from
/// SoftHSM on purpose, or shim-only entry points): `body` runs in a child
/// against the sidecar `sidecar()` makes, and must not panic.
pub fn on_shim(sidecar: impl FnOnce() -> Sidecar, body: impl FnOnce(&mut Api)) {
    match process::role().as_deref() {
        Some(SHIM) => run_side(body),
        Some(other) => panic!("unexpected {ROLE_ENV}={other} for a shim-only test"),
        None => {
            let test = process::test_name();
            let sidecar = sidecar();
            let out = process::run(process::self_command(
                &test,
                &shim_env(&sidecar, SHIM),
                &["SOFTHSM2_CONF"],
            ));
            let (lines, done) = transcript::parse(&out.stdout);
            if std::env::var_os(SHOW_ENV).is_some() {
                println!("=== {test} (shim)\n{}", lines.join("\n"));
            }
            assert!(
                out.success() && done,
                "{test} failed through the shim: {}\ntranscript:\n{}\n--- sidecar stderr (tail):\n{}",
                out.describe(),
                lines.join("\n"),
                process::tail(&sidecar.stderr(), 40)
            );
        }
    }
}
