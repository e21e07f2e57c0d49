//! What a pod asks of the webhook, read from its `hsmbridge.io/inject` label and its
//! `hsmbridge.io/*` annotations ("parse, don't validate": the result carries only well-formed
//! names, so `mutate` never looks at raw strings again).
//!
//! Whether the named partitions and containers exist is `mutate`'s business: it needs the pod
//! and the partitions for that.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::limits::{MAX_CONTAINERS, MAX_PARTITIONS};

/// Opt-in label (a label, so the MutatingWebhookConfiguration's objectSelector filters at the
/// API server).
pub const LABEL_INJECT: &str = "hsmbridge.io/inject";
/// Which HsmPartitions of the pod's namespace the pod uses: `NAME[,NAME…]`.
pub const PARTITION: &str = "hsmbridge.io/partition";
/// Which containers get the shim: `a,b` (default: every container of `spec.containers`).
pub const CONTAINERS: &str = "hsmbridge.io/containers";
/// Forces the sidecar style: `native` (init container with `restartPolicy: Always`) or
/// `container` (a regular container). Default: native on Kubernetes 1.29+.
pub const SIDECAR_MODE: &str = "hsmbridge.io/sidecar-mode";
/// Done marker; a pod carrying it is left alone.
pub const INJECT_STATUS: &str = "hsmbridge.io/inject-status";
/// The only value of [`INJECT_STATUS`].
pub const INJECTED: &str = "injected";

const PREFIX: &str = "hsmbridge.io/";
const KNOWN: [&str; 4] = [PARTITION, CONTAINERS, SIDECAR_MODE, INJECT_STATUS];

/// What the pod asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// No `hsmbridge.io/inject: "true"` label: not ours.
    NotOptedIn,
    /// Carries `hsmbridge.io/inject-status: injected`: done before, left alone.
    AlreadyInjected,
    /// Inject this.
    Inject(InjectRequest),
}

/// A well-formed injection request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectRequest {
    /// At least one, no duplicates, each a valid object name, in annotation order.
    pub partitions: Vec<String>,
    /// `None`: every app container. `Some`: at least one, no duplicates, valid container names.
    pub containers: Option<Vec<String>>,
    /// `None`: decided by the server version.
    pub sidecar_mode: Option<SidecarMode>,
}

/// How the sidecar runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SidecarMode {
    /// An init container with `restartPolicy: Always` (Kubernetes 1.29+).
    Native,
    /// A regular container next to the app.
    Container,
}

/// An annotation the pod got wrong. The text is shown to whoever created the pod.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error("unknown annotation {0:?}: the hsmbridge.io/ annotations are {known}{hint}",
        known = KNOWN.join(", "),
        hint = if .0 == LABEL_INJECT { " (hsmbridge.io/inject is a label, not an annotation)" } else { "" })]
    Unknown(String),
    #[error("the pod is labelled {LABEL_INJECT}=true but has no {PARTITION} annotation: name the HsmPartitions it uses, e.g. {PARTITION}: payments")]
    MissingPartition,
    #[error("annotation {key}: {problem} (value {value:?})")]
    Malformed {
        key: &'static str,
        /// The value, shortened to [`MAX_QUOTED`] characters.
        value: String,
        problem: String,
    },
    #[error("annotation {key} lists more than {max} {what}s; a pod may use at most {max}")]
    TooMany {
        key: &'static str,
        what: &'static str,
        max: usize,
    },
}

/// Longest part of an annotation value quoted back in a denial.
pub const MAX_QUOTED: usize = 256;

/// Reads the label and annotations of a pod.
pub fn parse(meta: &ObjectMeta) -> Result<Parsed, AnnotationError> {
    let opted_in = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_INJECT))
        .is_some_and(|v| v == "true");
    if !opted_in {
        return Ok(Parsed::NotOptedIn);
    }
    let empty = BTreeMap::new();
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);

    if let Some(status) = annotations.get(INJECT_STATUS) {
        return if status == INJECTED {
            Ok(Parsed::AlreadyInjected)
        } else {
            Err(malformed(
                INJECT_STATUS,
                status,
                format!("the only value is {INJECTED:?}, set by the webhook; remove the annotation"),
            ))
        };
    }
    if let Some(unknown) = annotations
        .keys()
        .find(|k| k.starts_with(PREFIX) && !KNOWN.contains(&k.as_str()))
    {
        return Err(AnnotationError::Unknown(shorten(unknown)));
    }

    // Bounded before anything else looks at the lists.
    let partition_value = annotations.get(PARTITION).ok_or(AnnotationError::MissingPartition)?;
    check_count(PARTITION, partition_value, "partition", MAX_PARTITIONS)?;
    let container_value = annotations.get(CONTAINERS);
    if let Some(value) = container_value {
        check_count(CONTAINERS, value, "container", MAX_CONTAINERS)?;
    }
    let partitions = name_list(PARTITION, partition_value, "partition", is_object_name)?;
    let containers = container_value
        .map(|value| name_list(CONTAINERS, value, "container", is_dns_label))
        .transpose()?;
    let sidecar_mode = annotations
        .get(SIDECAR_MODE)
        .map(|value| match value.trim() {
            "native" => Ok(SidecarMode::Native),
            "container" => Ok(SidecarMode::Container),
            _ => Err(malformed(
                SIDECAR_MODE,
                value,
                "expected \"native\" or \"container\"".to_owned(),
            )),
        })
        .transpose()?;
    Ok(Parsed::Inject(InjectRequest {
        partitions,
        containers,
        sidecar_mode,
    }))
}

/// At most `max` comma-separated entries; looks at no more than the first `max + 1`.
fn check_count(key: &'static str, value: &str, what: &'static str, max: usize) -> Result<(), AnnotationError> {
    if value.split(',').nth(max).is_some() {
        return Err(AnnotationError::TooMany { key, what, max });
    }
    Ok(())
}

/// `a, b,c` → `["a", "b", "c"]`: non-empty, no empty entries, no duplicates, each `valid`.
fn name_list(
    key: &'static str,
    value: &str,
    what: &str,
    valid: fn(&str) -> bool,
) -> Result<Vec<String>, AnnotationError> {
    if value.trim().is_empty() {
        return Err(malformed(key, value, format!("names no {what}")));
    }
    let mut names: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for name in value.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(malformed(key, value, format!("empty {what} name (stray comma?)")));
        }
        if !valid(name) {
            return Err(malformed(
                key,
                value,
                format!(
                    "{:?} is not a valid {what} name (lowercase letters, digits and '-')",
                    shorten(name)
                ),
            ));
        }
        if !seen.insert(name) {
            return Err(malformed(key, value, format!("{what} {name:?} is listed twice")));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

fn malformed(key: &'static str, value: &str, problem: String) -> AnnotationError {
    AnnotationError::Malformed {
        key,
        value: shorten(value),
        problem,
    }
}

/// `value`, or its first [`MAX_QUOTED`] characters and `…`.
fn shorten(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED) {
        None => value.to_owned(),
        Some((end, _)) => format!("{}…", &value[..end]),
    }
}

/// RFC 1123 label: container names.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: object names (HsmPartitions).
fn is_object_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
#[path = "annotations_tests.rs"]
mod tests;
