//! How many injected pods run an older generation: `hsm_operator_partition_pods{namespace,
//! partition,state}` with state `current`, `behind` or `unknown` (`tally.rs`). On the leader
//! only, every [`PERIOD`] (`hsm-operator run --partition-pods-interval-secs`, hidden, for tests):
//! per partition, the Running pods of its namespace labelled
//! `hsmbridge.io/inject=true` whose `hsmbridge.io/partition` names it are asked for their
//! sidecar's `/metrics` (`scrape.rs`: the sidecar's `hsm-metrics(-<i>)` port on the pod IP), and
//! the generations it reports (`sample.rs`) are compared with the partition's status
//! (`credentialGeneration`, `configGeneration`).
//!
//! RBAC: pods `list` in every namespace (a partition may live in any). The operator reaches the
//! pods over the pod network: a NetworkPolicy that isolates app namespaces must let it in to
//! the sidecars' metrics ports, or they count as unknown.

mod sample;
mod scrape;
mod tally;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use tracing::{debug, warn};

use self::scrape::Scraper;
use self::tally::{Counts, Expected, State};
use crate::crd::HsmPartition;
use crate::metrics::Metrics;
use crate::webhook::annotations::LABEL_INJECT;

/// Time between two passes.
pub const PERIOD: Duration = Duration::from_secs(60);
/// Sidecars asked at once (each answer takes at most `scrape::TIMEOUT`).
const CONCURRENCY: usize = 16;

/// Counts every `period` (the first time at once) until the task is aborted (when this replica
/// stops leading; the caller then clears the gauges).
pub async fn run(client: Client, metrics: Arc<Metrics>, period: Duration) {
    let scraper = Scraper::default();
    let mut shown: BTreeSet<(String, String)> = BTreeSet::new();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let counted = pass(&client, &scraper, &metrics).await;
        let Some(counted) = counted else { continue };
        // Partitions gone since the last pass: their series go too.
        for (namespace, partition) in shown.difference(&counted) {
            metrics.forget_partition_pods(namespace, partition);
        }
        shown = counted;
    }
}

/// One pass; the partitions whose series it set or kept (`None`: partitions not listed, every
/// series left as it was).
async fn pass(client: &Client, scraper: &Scraper, metrics: &Metrics) -> Option<BTreeSet<(String, String)>> {
    let partitions = match Api::<HsmPartition>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            warn!(error = %e, "cannot list HsmPartitions to count their pods");
            return None;
        }
    };
    let mut by_namespace: BTreeMap<String, Vec<HsmPartition>> = BTreeMap::new();
    for p in partitions {
        if let Some(namespace) = p.namespace() {
            by_namespace.entry(namespace).or_default().push(p);
        }
    }
    let mut counted = BTreeSet::new();
    let selector = ListParams::default().labels(&format!("{LABEL_INJECT}=true"));
    for (namespace, partitions) in by_namespace {
        let names = partitions.iter().map(|p| (namespace.clone(), p.name_any()));
        let pods = match Api::<Pod>::namespaced(client.clone(), &namespace).list(&selector).await {
            Ok(list) => list.items,
            Err(e) => {
                // Keep what was shown: a passing API error says nothing about the pods.
                warn!(%namespace, error = %e, "cannot list injected pods");
                counted.extend(names);
                continue;
            }
        };
        for partition in &partitions {
            let name = partition.name_any();
            let counts = count(scraper, &pods, &name, expected(partition)).await;
            debug!(%namespace, partition = %name, ?counts, "injected pods by generation");
            metrics.set_partition_pods(
                &namespace,
                &name,
                State::ALL.map(|state| (state.label(), counts.get(state))),
            );
        }
        counted.extend(names);
    }
    Some(counted)
}

/// The generations the partition is at, from its status (0 when it shows none).
fn expected(partition: &HsmPartition) -> Expected {
    let status = partition.status.as_ref();
    Expected {
        credential: status.and_then(|s| s.credential_generation).unwrap_or(0),
        config: status.and_then(|s| s.config_generation).unwrap_or(0),
    }
}

async fn count(scraper: &Scraper, pods: &[Pod], name: &str, expected: Expected) -> Counts {
    let plan = tally::plan(pods, name);
    let mut counts = Counts {
        unknown: plan.unknown,
        ..Counts::default()
    };
    let answers: Vec<_> = futures::stream::iter(plan.scrape)
        .map(|addr| async move { (addr, scraper.reported(addr).await) })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (addr, answer) in answers {
        if let Err(why) = &answer {
            debug!(partition = %name, %addr, "sidecar metrics: {why}");
        }
        counts.add(tally::state(expected, answer.ok()));
    }
    counts
}
