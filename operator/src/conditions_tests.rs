use super::*;
use k8s_openapi::jiff::Timestamp;

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).expect("valid timestamp"))
}

#[test]
fn transition_time_moves_only_when_status_changes() {
    let first = merge(
        &[],
        &[Cond::new(ENROLLED, false, reason::ENROLLMENT_RUNNING, "running")],
        Some(1),
        &at(100),
    );
    assert_eq!(first[0].last_transition_time, at(100));
    assert_eq!(first[0].status, "False");

    // Same status, new reason: time kept.
    let second = merge(
        &first,
        &[Cond::new(ENROLLED, false, reason::SETUP_PASSWORD_REJECTED, "rejected")],
        Some(2),
        &at(200),
    );
    assert_eq!(second[0].last_transition_time, at(100));
    assert_eq!(second[0].reason, "SetupPasswordRejected");
    assert_eq!(second[0].observed_generation, Some(2));

    // Status flips: time moves.
    let third = merge(
        &second,
        &[Cond::new(ENROLLED, true, reason::ENROLLED, "ok")],
        Some(2),
        &at(300),
    );
    assert_eq!(third[0].last_transition_time, at(300));
    assert_eq!(third[0].status, "True");
}

#[test]
fn transitions_report_status_or_reason_changes() {
    let old = merge(
        &[],
        &[
            Cond::new(CONFIG_RENDERED, true, reason::RENDERED, ""),
            Cond::new(ENROLLED, false, reason::ENROLLMENT_RUNNING, "running"),
        ],
        Some(1),
        &at(1),
    );
    let new = [
        Cond::new(CONFIG_RENDERED, true, reason::RENDERED, "other message"),
        Cond::new(ENROLLED, false, reason::SETUP_PASSWORD_REJECTED, "rejected"),
    ];
    let changed = transitions(&old, &new);
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].reason, reason::SETUP_PASSWORD_REJECTED);
    assert!(changed[0].needs_attention());
}

#[test]
fn ready_follows_config_and_enrollment() {
    let rendered = Cond::new(CONFIG_RENDERED, true, reason::RENDERED, "");
    let invalid = Cond::new(CONFIG_RENDERED, false, reason::INVALID_SPEC, "bad spec");
    let enrolled = Cond::new(ENROLLED, true, reason::ENROLLED, "");
    let running = Cond::new(ENROLLED, false, reason::ENROLLMENT_RUNNING, "job running");
    assert_eq!(ready(&rendered, &enrolled).reason, reason::READY);
    assert!(ready(&rendered, &enrolled).status);
    assert_eq!(ready(&invalid, &enrolled).reason, reason::CONFIG_NOT_RENDERED);
    assert_eq!(ready(&invalid, &enrolled).message, "bad spec");
    assert_eq!(ready(&rendered, &running).reason, reason::NOT_ENROLLED);
    assert!(!ready(&rendered, &running).status);
}

#[test]
fn messages_are_bounded_and_single_line() {
    let long = "é".repeat(2000);
    let t = truncate(&long);
    assert!(t.len() <= 1024 + '…'.len_utf8());
    assert_eq!(truncate("a\nb"), "a b");
}

#[test]
fn an_ownership_conflict_is_readys_reason() {
    let rendered = Cond::new(CONFIG_RENDERED, true, reason::RENDERED, "");
    let cm_conflict = Cond::new(
        CONFIG_RENDERED,
        false,
        reason::OWNERSHIP_CONFLICT,
        "ConfigMap p-provider",
    );
    let running = Cond::new(ENROLLED, false, reason::ENROLLMENT_RUNNING, "job running");
    let secret_conflict = Cond::new(ENROLLED, false, reason::OWNERSHIP_CONFLICT, "Secret p-credentials");
    let r = ready(&rendered, &secret_conflict);
    assert_eq!(
        (r.status, r.reason, r.message.as_str()),
        (false, reason::OWNERSHIP_CONFLICT, "Secret p-credentials")
    );
    let r = ready(&cm_conflict, &running);
    assert_eq!(
        (r.status, r.reason, r.message.as_str()),
        (false, reason::OWNERSHIP_CONFLICT, "ConfigMap p-provider")
    );
    assert!(secret_conflict.needs_attention());
}
