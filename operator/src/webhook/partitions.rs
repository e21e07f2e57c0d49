//! Finding the HsmPartitions a pod names: a watch-fed cache answers the common case (a Ready
//! partition) without a round trip to the API server; anything else (not cached, not Ready in
//! the cache) is read from the API server, so a partition that just became Ready is not
//! refused because the watch lags.

use std::future::Future;

use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tracing::warn;

use crate::conditions::is_ready;
use crate::crd::HsmPartition;

/// Where the webhook reads partitions from (the API server, or a map in tests).
pub trait PartitionLookup: Send + Sync {
    /// The partition `namespace/name`; `Ok(None)` when it does not exist.
    fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<HsmPartition>, kube::Error>> + Send;
}

/// The API server, behind a cache of Ready partitions.
#[derive(Clone)]
pub struct Partitions {
    client: Client,
    cache: Store<HsmPartition>,
}

impl Partitions {
    /// The lookup, and the watch that feeds its cache (spawn it; it runs until dropped).
    pub fn new(client: Client) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (cache, writer) = reflector::store();
        let api: Api<HsmPartition> = Api::all(client.clone());
        let events = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
        let feed = async move {
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                if let Err(e) = event {
                    warn!(error = %e, "HsmPartition watch failed; partitions are read from the API server meanwhile");
                }
            }
        };
        (Partitions { client, cache }, feed)
    }
}

impl PartitionLookup for Partitions {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<HsmPartition>, kube::Error> {
        if let Some(cached) = self.cache.get(&ObjectRef::new(name).within(namespace)) {
            if is_ready(&cached) {
                return Ok(Some((*cached).clone()));
            }
        }
        Api::<HsmPartition>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
    }
}
