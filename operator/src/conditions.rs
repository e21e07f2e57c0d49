//! The partition's conditions (`ConfigRendered`, `Enrolled`, `Ready`), their reasons, and how a
//! new set is merged into the old one (lastTransitionTime moves only when the status changes).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::HsmPartition;

pub const CONFIG_RENDERED: &str = "ConfigRendered";
pub const ENROLLED: &str = "Enrolled";
pub const READY: &str = "Ready";

/// Condition reasons (CONTRACT.md). Users and tests match on them.
pub mod reason {
    pub const RENDERED: &str = "Rendered";
    pub const INVALID_SPEC: &str = "InvalidSpec";

    pub const ENROLLED: &str = "Enrolled";
    pub const ENROLLMENT_PENDING: &str = "EnrollmentPending";
    pub const ENROLLMENT_RUNNING: &str = "EnrollmentRunning";
    pub const SETUP_PASSWORD_SECRET_MISSING: &str = "SetupPasswordSecretMissing";
    pub const SETUP_PASSWORD_REJECTED: &str = "SetupPasswordRejected";
    pub const ENROLLMENT_FAILED: &str = "EnrollmentFailed";
    pub const CREDENTIAL_LOST: &str = "CredentialLost";

    pub const READY: &str = "Ready";
    pub const NOT_ENROLLED: &str = "NotEnrolled";
    pub const CONFIG_NOT_RENDERED: &str = "ConfigNotRendered";

    /// Any of the three: an object the operator would create for the partition exists and is
    /// not the partition's (no controller ownerReference to it), so the operator leaves it alone.
    pub const OWNERSHIP_CONFLICT: &str = "OwnershipConflict";
}

/// Longest condition message written (the API allows 32 KiB; humans read far less).
const MAX_MESSAGE_LEN: usize = 1024;

/// A condition as the reconciler decides it, before times and generations are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Cond {
    pub fn new(type_: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Cond {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }

    /// Warning-worthy: a False condition that needs a human (as opposed to progress).
    pub fn needs_attention(&self) -> bool {
        !self.status
            && matches!(
                self.reason,
                reason::INVALID_SPEC
                    | reason::OWNERSHIP_CONFLICT
                    | reason::SETUP_PASSWORD_SECRET_MISSING
                    | reason::SETUP_PASSWORD_REJECTED
                    | reason::ENROLLMENT_FAILED
            )
    }
}

/// `Ready` follows from the other two; an ownership conflict in either is Ready's reason too.
pub fn ready(config: &Cond, enrolled: &Cond) -> Cond {
    if let Some(conflict) = [config, enrolled]
        .into_iter()
        .find(|c| !c.status && c.reason == reason::OWNERSHIP_CONFLICT)
    {
        return Cond::new(READY, false, reason::OWNERSHIP_CONFLICT, conflict.message.clone());
    }
    match (config.status, enrolled.status) {
        (true, true) => Cond::new(
            READY,
            true,
            reason::READY,
            "Provider config rendered and credential enrolled",
        ),
        (false, _) => Cond::new(READY, false, reason::CONFIG_NOT_RENDERED, config.message.clone()),
        (true, false) => Cond::new(READY, false, reason::NOT_ENROLLED, enrolled.message.clone()),
    }
}

/// The new condition list: one entry per `desired` condition, in that order. An entry whose
/// status did not change keeps its lastTransitionTime.
pub fn merge(existing: &[Condition], desired: &[Cond], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" };
            let last_transition_time = existing
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: d.type_.to_owned(),
                status: status.to_owned(),
                reason: d.reason.to_owned(),
                message: truncate(&d.message),
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect()
}

/// The desired conditions whose status or reason differ from `existing` (for Events).
pub fn transitions<'a>(existing: &[Condition], desired: &'a [Cond]) -> Vec<&'a Cond> {
    desired
        .iter()
        .filter(|d| {
            let status = if d.status { "True" } else { "False" };
            !existing
                .iter()
                .any(|c| c.type_ == d.type_ && c.status == status && c.reason == d.reason)
        })
        .collect()
}

/// The partition's `Ready` condition, if it has one.
pub fn ready_condition(partition: &HsmPartition) -> Option<&Condition> {
    partition.status.as_ref()?.conditions.iter().find(|c| c.type_ == READY)
}

/// Whether the partition's `Ready` condition is True (the webhook injects only such partitions).
pub fn is_ready(partition: &HsmPartition) -> bool {
    ready_condition(partition).is_some_and(|c| c.status == "True")
}

/// Text fit for a condition message or Event note: no control characters, bounded length.
pub fn truncate(message: &str) -> String {
    let clean: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.len() <= MAX_MESSAGE_LEN {
        return clean;
    }
    let mut end = MAX_MESSAGE_LEN;
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &clean[..end])
}

#[cfg(test)]
#[path = "conditions_tests.rs"]
mod tests;
