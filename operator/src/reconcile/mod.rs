//! One reconciliation of an `HsmPartition` (controller-rs shape): `reconcile` runs the finalizer
//! helper, `apply` drives the partition towards Ready (its enrollment steps in `enroll.rs`),
//! `cleanup` (`cleanup.rs`) deletes what the operator created, `error_policy` requeues with
//! per-object exponential backoff.
//!
//! `apply`, in order: validate the spec → ensure the ConfigMap `<name>-provider` → ensure the
//! (metadata of the) credential Secret `<name>-credentials` → decide enrollment from the
//! credential Secret, the setup-password Secret's resourceVersion and the Job (`enrollment.rs`)
//! → if needed, ensure the Job's Role/RoleBinding/ServiceAccount and create its Job → apply the
//! status if it changed, with an Event per condition transition. Every step is idempotent.
//!
//! "Ensure" is `ownership::ensure`: an object of that name that is not the partition's (no
//! controller ownerReference to it) is never written or deleted; the partition reports
//! `OwnershipConflict` instead and starts no enrollment.
//!
//! Secrets: the operator looks at the credential Secret only for the presence of `pin`, the
//! error annotations and its generation (a counter, not a secret), and at the setup-password
//! Secret only for the presence of the key and its resourceVersion. No Secret value is logged, put in status, in an Event or in an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer, Event as FinalizerEvent};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use crate::conditions::{self, reason, Cond, CONFIG_RENDERED, ENROLLED, READY};
use crate::crd::{EnrollmentStatus, HsmPartition, HsmPartitionStatus, FINALIZER};
use crate::enrollment::{self, CredentialView, JobView, Plan, ReportedError, SetupView};
use crate::error::{api_code, Error};
use crate::generation;
use crate::metrics::Metrics;
use crate::names::{self, ANNOTATION_ENROLLMENT_ERROR, ANNOTATION_ENROLLMENT_MESSAGE, KEY_PIN, MANAGER};
use crate::owned::{self, Owner};
use crate::ownership::{self, Adoption, Claimed, Conflict, Deleted};
use crate::validate::{self, ValidSpec};

mod cleanup;
mod enroll;

use cleanup::cleanup;
use enroll::enroll;

/// Requeue while a Job runs (watch events normally come first).
const REQUEUE_RUNNING: Duration = Duration::from_secs(60);
/// Requeue while waiting for a human (the setup Secret is watched, so this is a safety net).
const REQUEUE_WAITING: Duration = Duration::from_secs(300);
/// Requeue while an object of the partition's is someone else's (no watch sees it go away).
const REQUEUE_CONFLICT: Duration = Duration::from_secs(60);
/// Resync of a Ready partition.
const REQUEUE_READY: Duration = Duration::from_secs(1800);
/// Error backoff: first retry after this, doubling per consecutive failure, capped.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Shared state of all reconciliations.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per partition. A std Mutex: held only for a map update, never across
    /// an await (error_policy is synchronous).
    failures: Mutex<HashMap<ObjectRef<HsmPartition>, u32>>,
}

impl Context {
    pub fn new(client: Client, recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        Context {
            client,
            recorder,
            metrics,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<HsmPartition>, u32>> {
        match self.failures.lock() {
            Ok(guard) => guard,
            // A panic while holding the lock cannot leave a counter map inconsistent.
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Reconciles one partition.
pub async fn reconcile(partition: Arc<HsmPartition>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = partition.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let key = ObjectRef::from_obj(partition.as_ref());
    let api: Api<HsmPartition> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, partition, |event| async {
        match event {
            FinalizerEvent::Apply(p) => apply(&p, &ctx).await,
            FinalizerEvent::Cleanup(p) => cleanup(&p, &ctx).await,
        }
    })
    .await;
    let result = match result {
        Ok(action) => Ok(action),
        // A reconcile queued before the deletion finished ran on a cached copy: the partition is
        // already gone, so there is nothing left to clean up.
        Err(finalizer::Error::RemoveFinalizer(e)) if api_code(&e) == Some(404) => Ok(Action::await_change()),
        Err(e) => Err(Error::Finalizer(Box::new(e))),
    };
    ctx.metrics.reconciled(started.elapsed());
    if result.is_ok() {
        ctx.failures().remove(&key);
    }
    result
}

/// Requeues a failed reconciliation after 1 s, 2 s, 4 s, … up to 5 min, per partition.
pub fn error_policy(partition: Arc<HsmPartition>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(error.metric_reason());
    let failures = {
        let mut map = ctx.failures();
        let n = map.entry(ObjectRef::from_obj(partition.as_ref())).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(failures);
    warn!(
        partition = %format!("{}/{}", partition.namespace().unwrap_or_default(), partition.name_any()),
        %error, failures, retry_in = ?delay, "reconcile failed"
    );
    Action::requeue(delay)
}

fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

/// Everything one `apply` needs about the partition.
struct Target<'a> {
    partition: &'a HsmPartition,
    owner: Owner,
    status: HsmPartitionStatus,
}

impl Target<'_> {
    fn api<K>(&self, ctx: &Context) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(ctx.client.clone(), &self.owner.namespace)
    }
}

async fn apply(partition: &HsmPartition, ctx: &Context) -> Result<Action, Error> {
    let name = partition.name_any();
    let namespace = partition.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let target = Target {
        partition,
        owner: owner_of(partition)?,
        status: partition.status.clone().unwrap_or_default(),
    };

    let valid = validate::validate(&namespace, &name, &partition.spec);
    // While the spec is invalid the ConfigMap is left as it is, and so is its generation.
    let mut config_generation = target.status.config_generation;
    let (config, rendered) = match &valid {
        Ok(v) => {
            let api = target.api::<ConfigMap>(ctx);
            let cm_name = names::provider_config_map(&name);
            let make = |existing: Option<&ConfigMap>| {
                let current = existing.and_then(|cm| cm.data.as_ref());
                let (data, _) = generation::stamp_config(v.provider_config.clone(), current);
                owned::provider_config_map(&target.owner, data)
            };
            match ownership::ensure_with(&api, &cm_name, make, &target.owner, Adoption::Controlled).await? {
                Claimed::Ours(cm) => {
                    config_generation = generation::of_config(cm.data.as_ref());
                    let message = match partition.spec.cluster.as_ref() {
                        Some(cluster) if !v.provider_config.is_empty() => format!(
                            "ConfigMap {cm_name} holds primus.cfg for {} HSM(s)",
                            cluster.members.len()
                        ),
                        _ => format!("ConfigMap {cm_name} rendered (provider pkcs11 needs no config file)"),
                    };
                    (Cond::new(CONFIG_RENDERED, true, reason::RENDERED, message), Some(v))
                }
                Claimed::Conflict(c) => {
                    config_generation = None;
                    (conflict_condition(CONFIG_RENDERED, &target, &c), None)
                }
            }
        }
        Err(invalid) => (
            Cond::new(
                CONFIG_RENDERED,
                false,
                reason::INVALID_SPEC,
                format!("Invalid spec: {invalid}"),
            ),
            None,
        ),
    };

    let credential_name = names::credential_secret(&name);
    let retain = partition.spec.retain_credentials_on_delete;
    let desired_secret = owned::credential_secret(&target.owner, retain);
    let adoption = Adoption::Credential { retained: retain };
    let secrets = target.api::<Secret>(ctx);
    let (enrolled, enrollment, credential_generation) =
        match ownership::ensure(&secrets, &desired_secret, &target.owner, adoption).await? {
            Claimed::Ours(secret) => enroll(&target, ctx, rendered, &secret).await?,
            Claimed::Conflict(c) => (
                conflict_condition(ENROLLED, &target, &c),
                target.status.enrollment.clone(),
                None,
            ),
        };
    let ready = conditions::ready(&config, &enrolled);
    let requeue = if ready.status {
        REQUEUE_READY
    } else if ready.reason == reason::OWNERSHIP_CONFLICT {
        REQUEUE_CONFLICT
    } else if enrolled.reason == reason::ENROLLMENT_RUNNING {
        REQUEUE_RUNNING
    } else {
        REQUEUE_WAITING
    };

    let desired = [config, enrolled, ready];
    let now = Time(Timestamp::now());
    let status = HsmPartitionStatus {
        observed_generation: partition.metadata.generation,
        credential_secret: Some(credential_name),
        credential_generation,
        config_generation,
        enrollment,
        conditions: conditions::merge(&target.status.conditions, &desired, partition.metadata.generation, &now),
    };
    if partition.status.as_ref() != Some(&status) {
        patch_status(ctx, &target, &status).await?;
    }
    publish_transitions(ctx, partition, &target.status, &desired).await;
    Ok(Action::requeue(requeue))
}

/// The partition's identity as the owner of what the operator makes for it.
fn owner_of(partition: &HsmPartition) -> Result<Owner, Error> {
    Ok(Owner {
        name: partition.name_any(),
        namespace: partition.namespace().ok_or(Error::MissingField("metadata.namespace"))?,
        reference: partition
            .controller_owner_ref(&())
            .ok_or(Error::MissingField("metadata.uid"))?,
    })
}

/// `type_=False OwnershipConflict`, naming the object (never its content).
fn conflict_condition(type_: &'static str, target: &Target<'_>, conflict: &Conflict) -> Cond {
    debug!(
        partition = %format!("{}/{}", target.owner.namespace, target.owner.name),
        kind = conflict.kind, name = %conflict.name, "not the partition's; left alone"
    );
    Cond::new(type_, false, reason::OWNERSHIP_CONFLICT, conflict.to_string())
}

async fn patch_status(ctx: &Context, target: &Target<'_>, status: &HsmPartitionStatus) -> Result<(), Error> {
    let api: Api<HsmPartition> = target.api(ctx);
    let body = serde_json::json!({
        "apiVersion": "hsmbridge.io/v1alpha1",
        "kind": "HsmPartition",
        "status": status,
    });
    api.patch_status(
        &target.owner.name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube(
        "apply status of",
        "HsmPartition",
        target.owner.name.clone(),
    ))?;
    Ok(())
}

/// One Event per changed condition (Ready=False only repeats its cause, so it is skipped).
/// Events are best effort: a failure is logged, not retried.
async fn publish_transitions(ctx: &Context, partition: &HsmPartition, old: &HsmPartitionStatus, desired: &[Cond]) {
    let reference = partition.object_ref(&());
    for cond in conditions::transitions(&old.conditions, desired) {
        if cond.type_ == READY && !cond.status {
            continue;
        }
        let event = KubeEvent {
            type_: if cond.needs_attention() {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: cond.reason.to_owned(),
            note: Some(conditions::truncate(&cond.message)),
            action: cond.type_.to_owned(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            warn!(partition = %partition.name_any(), error = %e, "could not publish Event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
