//! Which pods of a partition to ask, and how they count: `current` (the sidecar runs the
//! partition's credential and configuration generations, or newer ones the status has not
//! caught up with), `behind` (either is older), `unknown` (no answer, no usable page, no metrics
//! port, or past the per-pass cap).

use std::net::{IpAddr, SocketAddr};

use hsmbridge_contract::METRICS_PORT_NAME;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::sample::Reported;
use crate::webhook::annotations::PARTITION;

/// Pods asked per partition and pass; the rest count as unknown.
pub const MAX_SCRAPES: usize = 200;

/// The generations a partition is at (its status; 0 when it shows none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub credential: i64,
    pub config: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Current,
    Behind,
    Unknown,
}

impl State {
    pub const ALL: [State; 3] = [State::Current, State::Behind, State::Unknown];

    pub fn label(self) -> &'static str {
        match self {
            State::Current => "current",
            State::Behind => "behind",
            State::Unknown => "unknown",
        }
    }
}

/// How one sidecar's answer counts.
pub fn state(expected: Expected, reported: Option<Reported>) -> State {
    match reported {
        None => State::Unknown,
        Some(r) if r.credential < expected.credential || r.config < expected.config => State::Behind,
        Some(_) => State::Current,
    }
}

/// Pods by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub current: u64,
    pub behind: u64,
    pub unknown: u64,
}

impl Counts {
    pub fn add(&mut self, state: State) {
        match state {
            State::Current => self.current += 1,
            State::Behind => self.behind += 1,
            State::Unknown => self.unknown += 1,
        }
    }

    pub fn get(&self, state: State) -> u64 {
        match state {
            State::Current => self.current,
            State::Behind => self.behind,
            State::Unknown => self.unknown,
        }
    }
}

/// What to do about the partition's pods in one pass: the sidecars to ask, and how many pods
/// count as unknown without asking.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub scrape: Vec<SocketAddr>,
    pub unknown: u64,
}

/// The plan for partition `name` over `pods` (the namespace's pods labelled for injection): pods
/// whose `hsmbridge.io/partition` names it and that run (phase Running). A running pod without
/// an IP or without the partition's metrics port counts as unknown, and so do those past
/// [`MAX_SCRAPES`].
pub fn plan<'a>(pods: impl IntoIterator<Item = &'a Pod>, name: &str) -> Plan {
    let mut plan = Plan::default();
    for pod in pods {
        let Some(index) = partition_index(pod, name) else {
            continue;
        };
        let status = pod.status.as_ref();
        if status.and_then(|s| s.phase.as_deref()) != Some("Running") {
            continue;
        }
        let ip = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        match (ip, metrics_port(pod, index)) {
            (Some(ip), Some(port)) if plan.scrape.len() < MAX_SCRAPES => {
                plan.scrape.push(SocketAddr::new(ip, port));
            }
            _ => plan.unknown += 1,
        }
    }
    plan
}

/// The place of `name` in the pod's `hsmbridge.io/partition` list (its sidecar's index).
fn partition_index(pod: &Pod, name: &str) -> Option<usize> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(PARTITION)?
        .split(',')
        .map(str::trim)
        .position(|p| p == name)
}

/// The container port the webhook named for sidecar `index`: `hsm-metrics`, `hsm-metrics-<i>`.
fn metrics_port(pod: &Pod, index: usize) -> Option<u16> {
    let wanted = if index == 0 {
        METRICS_PORT_NAME.to_owned()
    } else {
        format!("{METRICS_PORT_NAME}-{index}")
    };
    let spec = pod.spec.as_ref()?;
    // A native sidecar is an init container.
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    containers
        .flat_map(|c: &Container| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(wanted.as_str()))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .filter(|port| *port != 0)
}

#[cfg(test)]
#[path = "tally_tests.rs"]
mod tests;
