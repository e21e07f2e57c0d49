use super::*;

fn setup_ref() -> SecretKeyRef {
    SecretKeyRef {
        name: "payments-setup".to_owned(),
        key: "setup-password".to_owned(),
    }
}

fn present(v: &str) -> SetupView {
    SetupView::Present { version: v.to_owned() }
}

fn rejected() -> CredentialView {
    CredentialView {
        has_pin: false,
        error: Some(ReportedError {
            kind: "SetupPasswordRejected".to_owned(),
            message: Some("SO login: CKR_PIN_INCORRECT".to_owned()),
        }),
        generation: 0,
    }
}

fn report(p: Plan) -> Cond {
    match p {
        Plan::Report(c) => c,
        Plan::RunJob { .. } => panic!("expected a report, got {p:?}"),
    }
}

#[test]
fn a_pin_means_enrolled_whatever_else_is_true() {
    let cred = CredentialView {
        has_pin: true,
        ..rejected()
    };
    let c = report(plan(
        "payments",
        &cred,
        &SetupView::SecretMissing,
        &EnrollmentStatus::default(),
        &setup_ref(),
    ));
    assert!(c.status);
    assert_eq!(c.reason, reason::ENROLLED);
    assert!(c.message.contains("payments-credentials"));
}

#[test]
fn missing_setup_secret_or_key() {
    let cred = CredentialView::default();
    let c = report(plan(
        "p",
        &cred,
        &SetupView::SecretMissing,
        &EnrollmentStatus::default(),
        &setup_ref(),
    ));
    assert_eq!(c.reason, reason::SETUP_PASSWORD_SECRET_MISSING);
    assert!(c.message.contains("Secret payments-setup not found"));
    let c = report(plan(
        "p",
        &cred,
        &SetupView::KeyMissing,
        &EnrollmentStatus::default(),
        &setup_ref(),
    ));
    assert_eq!(c.reason, reason::SETUP_PASSWORD_SECRET_MISSING);
    assert!(c.message.contains("has no key setup-password"));
}

#[test]
fn first_enrollment_runs_the_job_named_after_the_setup_version() {
    let p = plan(
        "payments",
        &CredentialView::default(),
        &present("12345"),
        &EnrollmentStatus::default(),
        &setup_ref(),
    );
    assert_eq!(
        p,
        Plan::RunJob {
            version: "12345".to_owned(),
            job: "payments-enroll-5994471a".to_owned()
        }
    );
}

#[test]
fn rejected_setup_password_is_not_retried_for_the_same_version() {
    let status = EnrollmentStatus {
        attempts: 1,
        setup_password_version: Some("12345".to_owned()),
        job: Some("payments-enroll-5994471a".to_owned()),
    };
    let c = report(plan("payments", &rejected(), &present("12345"), &status, &setup_ref()));
    assert_eq!(c.reason, reason::SETUP_PASSWORD_REJECTED);
    assert!(!c.status);
    assert!(c.message.contains("put a new setup password"), "{}", c.message);
    assert!(
        c.message.contains("Secret payments-setup key setup-password"),
        "{}",
        c.message
    );
    assert!(c.message.contains("CKR_PIN_INCORRECT"));
}

#[test]
fn a_new_setup_version_runs_a_new_job() {
    let status = EnrollmentStatus {
        attempts: 1,
        setup_password_version: Some("12345".to_owned()),
        job: Some("payments-enroll-5994471a".to_owned()),
    };
    match plan("payments", &rejected(), &present("12399"), &status, &setup_ref()) {
        Plan::RunJob { version, job } => {
            assert_eq!(version, "12399");
            assert_ne!(job, "payments-enroll-5994471a");
        }
        other => panic!("expected RunJob, got {other:?}"),
    }
}

#[test]
fn job_outcomes() {
    let none = CredentialView::default();
    assert_eq!(job_outcome("j", JobView::Absent, &none, &setup_ref()), None);
    assert_eq!(
        job_outcome("j", JobView::Pending, &none, &setup_ref()).map(|c| c.reason),
        Some(reason::ENROLLMENT_RUNNING)
    );
    let failed = job_outcome("j", JobView::Failed, &none, &setup_ref());
    assert_eq!(failed.as_ref().map(|c| c.reason), Some(reason::ENROLLMENT_FAILED));
    assert!(failed
        .map(|c| c.message)
        .unwrap_or_default()
        .contains("kubectl logs job/j"));
    // A Job that exists and whose failure is in the annotations: the annotation wins, even when
    // the status does not record the version yet (operator restarted mid-way).
    assert_eq!(
        job_outcome("j", JobView::Pending, &rejected(), &setup_ref()).map(|c| c.reason),
        Some(reason::SETUP_PASSWORD_REJECTED)
    );
}

#[test]
fn a_completed_job_without_a_pin_means_the_credential_was_lost() {
    let c = job_outcome("j", JobView::Succeeded, &CredentialView::default(), &setup_ref())
        .unwrap_or_else(|| panic!("outcome"));
    assert_eq!(c.reason, reason::CREDENTIAL_LOST);
    assert!(!c.status);
    assert!(c.message.contains("spent"), "{}", c.message);
    assert!(
        c.message.contains("Secret payments-setup key setup-password"),
        "{}",
        c.message
    );
}

#[test]
fn the_rejected_message_says_its_advice_once() {
    let c = job_outcome("j", JobView::Failed, &rejected(), &setup_ref()).unwrap_or_else(|| panic!("outcome"));
    assert_eq!(c.message.matches("setup password").count(), 2, "{}", c.message);
    assert!(
        c.message
            .starts_with("The HSM rejected the setup password: SO login: CKR_PIN_INCORRECT. It is not retried"),
        "{}",
        c.message
    );
}

#[test]
fn no_token_and_other_failures_are_enrollment_failed() {
    let cred = CredentialView {
        has_pin: false,
        error: Some(ReportedError {
            kind: "NoToken".to_owned(),
            message: Some("no token labelled x".to_owned()),
        }),
        generation: 0,
    };
    let c = job_outcome("j", JobView::Failed, &cred, &setup_ref()).unwrap_or_else(|| panic!("outcome"));
    assert_eq!(c.reason, reason::ENROLLMENT_FAILED);
    assert!(
        c.message
            .contains("j failed: no token labelled x. Check spec.token.label"),
        "{}",
        c.message
    );
    let cred = CredentialView {
        has_pin: false,
        error: Some(ReportedError {
            kind: "EnrollmentFailed".to_owned(),
            message: None,
        }),
        generation: 0,
    };
    let c = job_outcome("j", JobView::Pending, &cred, &setup_ref()).unwrap_or_else(|| panic!("outcome"));
    assert_eq!(c.reason, reason::ENROLLMENT_FAILED);
    assert!(c.message.contains("hsmbridge.io/retry"));
}

#[test]
fn attempts_count_each_job_once() {
    let s0 = EnrollmentStatus::default();
    let s1 = record_attempt(&s0, "p-enroll-aaaa", "1", true);
    assert_eq!(s1.attempts, 1);
    // Reconciling again: the Job already exists and is recorded.
    let s1b = record_attempt(&s1, "p-enroll-aaaa", "1", false);
    assert_eq!(s1b, s1);
    // Operator stopped after creating the Job, before recording it: counted on restart.
    let restarted = record_attempt(&s0, "p-enroll-aaaa", "1", false);
    assert_eq!(restarted.attempts, 1);
    // A new setup password: a second Job.
    let s2 = record_attempt(&s1, "p-enroll-bbbb", "2", true);
    assert_eq!(s2.attempts, 2);
    assert_eq!(s2.setup_password_version.as_deref(), Some("2"));
}

#[test]
fn a_removed_job_is_not_run_again() {
    let recorded = record_attempt(&EnrollmentStatus::default(), "p-enroll-aaaa", "1", true);
    // Never created: create it. Created and gone (ttlSecondsAfterFinished): report, do not re-run.
    assert_eq!(
        JobView::absent("p-enroll-aaaa", &EnrollmentStatus::default()),
        JobView::Absent
    );
    assert_eq!(JobView::absent("p-enroll-bbbb", &recorded), JobView::Absent);
    assert_eq!(JobView::absent("p-enroll-aaaa", &recorded), JobView::Removed);
    let c = job_outcome(
        "p-enroll-aaaa",
        JobView::Removed,
        &CredentialView::default(),
        &setup_ref(),
    )
    .unwrap_or_else(|| panic!("a removed Job must not be re-created"));
    assert_eq!((c.status, c.reason), (false, reason::ENROLLMENT_FAILED));
    assert!(c.message.contains("not run again"), "{}", c.message);
    assert_eq!(record_attempt(&recorded, "p-enroll-aaaa", "1", false), recorded);
}
