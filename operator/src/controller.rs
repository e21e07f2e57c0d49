//! Wires the `HsmPartition` controller: what it watches and how a watch event maps to the
//! partitions to reconcile.
//!
//! - HsmPartitions: all namespaces (the reflector store the Secret mapper reads).
//! - ConfigMaps and Jobs the operator created (label `app.kubernetes.io/managed-by=hsm-operator`),
//!   mapped by ownerReference (metadata-only watches).
//! - Secrets, metadata only (no Secret's data is listed, watched or cached; reconcile reads the
//!   two Secrets it needs with targeted GETs): the credential Secret (written by the
//!   enrollment Job) maps to its partition by ownerReference, label or name (a Secret of that
//!   name that is someone else's is an ownership conflict, resolved when it goes); a
//!   setup-password Secret maps to every partition of its namespace that references it (looked
//!   up in the store), so a new setup password triggers a retry.

use std::future::Future;
use std::sync::Arc;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::{debug, warn};

use crate::crd::HsmPartition;
use crate::http::Health;
use crate::names::{self, LABEL_MANAGED_BY, LABEL_PARTITION, MANAGER};
use crate::reconcile::{error_policy, reconcile, Context};

const READY_RETRY: Duration = Duration::from_secs(2);
/// Coalesces the burst of watch events one reconcile causes (its own status write, the
/// ConfigMap, Secret and Job it created) into one follow-up reconcile instead of several.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Runs the controller until `stop` resolves (in-flight reconciliations finish first).
pub async fn run(
    client: Client,
    ctx: Arc<Context>,
    concurrency: u16,
    health: Arc<Health>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let partitions: Api<HsmPartition> = Api::all(client.clone());
    let managed = watcher::Config::default().labels(&names::managed_selector());
    let controller = Controller::new(partitions, watcher::Config::default());
    let store = controller.store();

    // Readiness: the API answers the LIST the partition cache starts from. (Not
    // `Store::wait_until_ready`: in kube-runtime 5 a second concurrent waiter can steal the
    // wake-up of the controller's own waiter and stall it.)
    let ready = {
        let partitions: Api<HsmPartition> = Api::all(client.clone());
        tokio::spawn(async move {
            loop {
                match partitions.list_metadata(&ListParams::default().limit(1)).await {
                    Ok(_) => {
                        health.set_ready(true);
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot list HsmPartitions; not ready");
                        tokio::time::sleep(READY_RETRY).await;
                    }
                }
            }
        })
    };

    let mapper_store = store.clone();
    controller
        .owns(Api::<ConfigMap>::all(client.clone()), managed.clone())
        .owns(Api::<Job>::all(client.clone()), managed)
        .watches(
            Api::<PartialObjectMeta<Secret>>::all(client),
            watcher::Config::default(),
            move |secret| partitions_for_secret(&mapper_store, &secret),
        )
        .with_config(Config::default().concurrency(concurrency).debounce(DEBOUNCE))
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(partition = %object, "reconciled"),
                // Reconciler failures are logged (with backoff) by error_policy.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
                    debug!(partition = %object, "reconcile of a deleted partition skipped")
                }
                Err(e) => warn!(error = %e, "controller"),
            }
        })
        .await;
    ready.abort();
}

/// The partitions a Secret event concerns (from the Secret's metadata alone).
fn partitions_for_secret(
    store: &Store<HsmPartition>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<HsmPartition>> {
    let Some(namespace) = secret.namespace() else {
        return Vec::new();
    };
    let name = secret.name_any();
    let mut refs: Vec<ObjectRef<HsmPartition>> = secret
        .owner_references()
        .iter()
        .filter(|o| o.kind == "HsmPartition" && o.api_version == "hsmbridge.io/v1alpha1")
        .map(|o| ObjectRef::new(&o.name).within(&namespace))
        .collect();
    let labels = secret.labels();
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGER) {
        if let Some(partition) = labels.get(LABEL_PARTITION) {
            refs.push(ObjectRef::new(partition).within(&namespace));
        }
    }
    if let Some(partition) = name.strip_suffix(names::CREDENTIALS_SUFFIX) {
        let candidate = ObjectRef::new(partition).within(&namespace);
        if store.get(&candidate).is_some() {
            refs.push(candidate);
        }
    }
    refs.extend(
        store
            .state_filter(|p| {
                p.namespace().as_deref() == Some(namespace.as_str())
                    && p.spec.enrollment.setup_password_secret_ref.name == name
            })
            .iter()
            .map(|p| ObjectRef::from_obj(p.as_ref())),
    );
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    refs.dedup();
    refs
}
