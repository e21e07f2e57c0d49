//! One audit line as JSON (README "Audit trail" shows the fields).

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{Event, KeyName};

/// The pod and partition a sidecar serves (the webhook sets them from the downward API).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub partition: String,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    event: &'static str,
    pod: &'a Pod,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<Process>,
    function: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mechanism: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<Name<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<Name<'a>>,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

#[derive(Serialize)]
struct Process {
    uid: u32,
    gid: u32,
    /// As the application's Hello claims it (its own PID namespace).
    pid: u32,
    /// As the kernel gives it (`SO_PEERCRED`); absent when the peer is in another PID namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_pid: Option<u32>,
}

#[derive(Serialize)]
struct Name<'a> {
    handle: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

impl<'a> Name<'a> {
    fn of(k: &'a KeyName) -> Self {
        Name {
            handle: k.handle,
            class: k.class_name(),
            label: k.label.as_deref(),
            id: k.id.as_deref(),
        }
    }
}

/// Appends `event` as one JSON line (with its newline) to `out`.
pub fn write(out: &mut Vec<u8>, pod: &Pod, event: &Event) {
    let time = OffsetDateTime::from(event.time)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned());
    let line = Line {
        time,
        event: event.kind.as_str(),
        pod,
        app: event.app,
        container: event
            .caller
            .as_deref()
            .map(|c| c.claimed_container.as_str())
            .filter(|c| !c.is_empty()),
        process: event.caller.as_deref().map(|c| Process {
            uid: c.uid,
            gid: c.gid,
            pid: c.claimed_pid,
            peer_pid: (c.peer_pid != 0).then_some(c.peer_pid),
        }),
        function: event.function,
        mechanism: event.mechanism.map(|m| crate::names::mechanism(m).into_owned()),
        key: event.key.as_deref().map(Name::of),
        object: event.object.as_deref().map(Name::of),
        result: crate::names::rv(event.result),
        detail: event.detail.as_deref(),
    };
    // Serializing plain strings and numbers into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    }
}
