//! The enrollment state machine, as pure functions of what the reconciler observed.
//!
//! Rules (CONTRACT.md): a credential Secret holding `pin` is enrolled and kept; a setup password
//! the HSM rejected (or any failure the Job reported) is not retried until the setup-password
//! Secret's resourceVersion changes; the Job for one setup-password version is created at most
//! once (its name is derived from the version), so a failed Job is never re-run by itself.

use crate::conditions::{reason, Cond, ENROLLED};
use crate::crd::{EnrollmentStatus, SecretKeyRef};
use crate::names;

/// What the credential Secret says, without its values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CredentialView {
    /// The Secret exists and has a non-empty `pin`.
    pub has_pin: bool,
    /// The failure the enrollment Job reported in the Secret's annotations.
    pub error: Option<ReportedError>,
    /// The Secret's `generation` (written by each enrollment): 0 when absent.
    pub generation: i64,
}

/// `hsmbridge.io/enrollment-error` and `hsmbridge.io/enrollment-message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedError {
    pub kind: String,
    pub message: Option<String>,
}

/// The setup-password Secret, as far as the operator may look at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupView {
    SecretMissing,
    KeyMissing,
    /// The Secret exists and has the key; `version` is its resourceVersion.
    Present {
        version: String,
    },
}

/// The enrollment Job for the current setup-password version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobView {
    Absent,
    /// Created, not finished (or no Job controller has reported on it yet).
    Pending,
    Succeeded,
    Failed,
    /// Gone although the status names it: it ran and was removed since (its
    /// `ttlSecondsAfterFinished`, or a person). Never re-created for the same setup password.
    Removed,
}

impl JobView {
    /// What a missing Job means: never created yet, or created and removed since (the status
    /// recorded it as the last Job).
    pub fn absent(job: &str, status: &EnrollmentStatus) -> JobView {
        if status.job.as_deref() == Some(job) {
            JobView::Removed
        } else {
            JobView::Absent
        }
    }
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to run: report this `Enrolled` condition.
    Report(Cond),
    /// Look at (and if absent create) the Job for this setup-password version.
    RunJob { version: String, job: String },
}

/// The step before looking at the Job.
pub fn plan(
    partition: &str,
    credential: &CredentialView,
    setup: &SetupView,
    status: &EnrollmentStatus,
    setup_ref: &SecretKeyRef,
) -> Plan {
    if credential.has_pin {
        return Plan::Report(enrolled(partition));
    }
    let version = match setup {
        SetupView::SecretMissing => {
            return Plan::Report(Cond::new(
                ENROLLED,
                false,
                reason::SETUP_PASSWORD_SECRET_MISSING,
                format!(
                    "Secret {} not found: create it with key {} holding the one-time setup password from the HSM administrator",
                    setup_ref.name, setup_ref.key
                ),
            ))
        }
        SetupView::KeyMissing => {
            return Plan::Report(Cond::new(
                ENROLLED,
                false,
                reason::SETUP_PASSWORD_SECRET_MISSING,
                format!(
                    "Secret {} has no key {}: put the one-time setup password from the HSM administrator there",
                    setup_ref.name, setup_ref.key
                ),
            ))
        }
        SetupView::Present { version } => version,
    };
    let job = names::enrollment_job(partition, version);
    if let Some(error) = &credential.error {
        if status.setup_password_version.as_deref() == Some(version.as_str()) {
            return Plan::Report(reported_failure(
                error,
                status.job.as_deref().unwrap_or(&job),
                setup_ref,
            ));
        }
    }
    Plan::RunJob {
        version: version.clone(),
        job,
    }
}

/// The step after looking at the Job named in [`Plan::RunJob`]: `None` means "create it".
pub fn job_outcome(
    job_name: &str,
    job: JobView,
    credential: &CredentialView,
    setup_ref: &SecretKeyRef,
) -> Option<Cond> {
    if let Some(error) = &credential.error {
        if job != JobView::Absent {
            // The Job for the current version reported this failure.
            return Some(reported_failure(error, job_name, setup_ref));
        }
    }
    match job {
        JobView::Absent => None,
        JobView::Pending => Some(running(job_name)),
        JobView::Removed => Some(Cond::new(
            ENROLLED,
            false,
            reason::ENROLLMENT_FAILED,
            format!(
                "Enrollment Job {job_name} ran and has been removed since, but the credential Secret holds no pin and no reported error. \
                 It is not run again for the same setup password (HSMs lock a partition out after repeated failures). {}",
                retry_hint(setup_ref)
            ),
        )),
        JobView::Failed => Some(Cond::new(
            ENROLLED,
            false,
            reason::ENROLLMENT_FAILED,
            format!(
                "Enrollment Job {job_name} failed without reporting a reason; see `kubectl logs job/{job_name}`. {}",
                retry_hint(setup_ref)
            ),
        )),
        // The Job stored the pin before it completed (the caller reads the credential again
        // after seeing the Job complete), so the pin was removed since: the setup password it
        // used is spent.
        JobView::Succeeded => Some(Cond::new(
            ENROLLED,
            false,
            reason::CREDENTIAL_LOST,
            format!(
                "Enrollment Job {job_name} completed, but the credential Secret holds no pin any more (emptied or deleted after enrollment). \
                 The setup password it used is spent, so nothing re-enrolls by itself: restore the Secret's pin from a backup, \
                 or put a new setup password from the HSM administrator into Secret {} key {} to enroll again",
                setup_ref.name, setup_ref.key
            ),
        )),
    }
}

/// The `Enrolled` condition once the credential Secret holds `pin`.
pub fn enrolled(partition: &str) -> Cond {
    Cond::new(
        ENROLLED,
        true,
        reason::ENROLLED,
        format!(
            "Secret {} holds the enrolled credential",
            names::credential_secret(partition)
        ),
    )
}

/// The `Enrolled` condition while a Job runs.
pub fn running(job_name: &str) -> Cond {
    Cond::new(
        ENROLLED,
        false,
        reason::ENROLLMENT_RUNNING,
        format!("Enrollment Job {job_name} is exchanging the setup password for the permanent credential"),
    )
}

/// The `Enrolled` condition before enrollment can start (invalid spec).
pub fn pending(why: &str) -> Cond {
    Cond::new(
        ENROLLED,
        false,
        reason::ENROLLMENT_PENDING,
        format!("Enrollment waits: {why}"),
    )
}

/// Status bookkeeping after the Job for `version` was ensured. An attempt is counted when the
/// Job was created now, or when it exists but the status does not name it yet (the operator
/// stopped between creating it and recording it): each Job counts exactly once.
pub fn record_attempt(status: &EnrollmentStatus, job: &str, version: &str, created: bool) -> EnrollmentStatus {
    let new_job = created || status.job.as_deref() != Some(job);
    EnrollmentStatus {
        attempts: if new_job {
            status.attempts.saturating_add(1)
        } else {
            status.attempts
        },
        setup_password_version: Some(version.to_owned()),
        job: Some(job.to_owned()),
    }
}

fn reported_failure(error: &ReportedError, job_name: &str, setup_ref: &SecretKeyRef) -> Cond {
    let detail = error.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
    match error.kind.as_str() {
        "SetupPasswordRejected" => Cond::new(
            ENROLLED,
            false,
            reason::SETUP_PASSWORD_REJECTED,
            format!(
                "The HSM rejected the setup password{detail}. It is not retried (HSMs lock a partition out after repeated failures): put a new setup password from the HSM administrator into Secret {} key {}",
                setup_ref.name, setup_ref.key
            ),
        ),
        "NoToken" => Cond::new(
            ENROLLED,
            false,
            reason::ENROLLMENT_FAILED,
            format!(
                "Enrollment Job {job_name} failed{detail}. Check spec.token.label, then {}",
                retry_hint_lower(setup_ref)
            ),
        ),
        _ => Cond::new(
            ENROLLED,
            false,
            reason::ENROLLMENT_FAILED,
            format!("Enrollment Job {job_name} failed{detail}. {}", retry_hint(setup_ref)),
        ),
    }
}

fn retry_hint(setup_ref: &SecretKeyRef) -> String {
    format!(
        "Fix the cause, then change Secret {} (a new setup password in key {}, or `kubectl annotate secret {} hsmbridge.io/retry=$(date +%s) --overwrite`) to retry",
        setup_ref.name, setup_ref.key, setup_ref.name
    )
}

fn retry_hint_lower(setup_ref: &SecretKeyRef) -> String {
    format!(
        "change Secret {} (`kubectl annotate secret {} hsmbridge.io/retry=$(date +%s) --overwrite`) to retry",
        setup_ref.name, setup_ref.name
    )
}

#[cfg(test)]
#[path = "enrollment_tests.rs"]
mod tests;
