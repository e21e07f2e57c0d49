//! One reconciliation of an `HsmPartition` (controller-rs shape): `reconcile` runs the finalizer
//! helper, `apply` drives the partition towards Ready, `cleanup` deletes what the operator
//! created, `error_policy` requeues with per-object exponential backoff.
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

/// The `Enrolled` condition, the enrollment bookkeeping and the credential's generation (as
/// last read); creates the Job when needed. `secret` is the partition's credential Secret;
/// `valid` is `None` while the provider config is not rendered (invalid spec, or its ConfigMap
/// is someone else's).
async fn enroll(
    target: &Target<'_>,
    ctx: &Context,
    valid: Option<&ValidSpec>,
    secret: &Secret,
) -> Result<(Cond, Option<EnrollmentStatus>, Option<i64>), Error> {
    let mut generation = 0;
    let (cond, status) = decide_enrollment(target, ctx, valid, secret, &mut generation).await?;
    Ok((cond, status, Some(generation)))
}

/// [`enroll`]; `generation` is set from each read of the credential Secret.
async fn decide_enrollment(
    target: &Target<'_>,
    ctx: &Context,
    valid: Option<&ValidSpec>,
    secret: &Secret,
    generation: &mut i64,
) -> Result<(Cond, Option<EnrollmentStatus>), Error> {
    let previous = target.status.enrollment.clone();
    let bookkeeping = previous.clone().unwrap_or_default();
    let setup_ref = &target.partition.spec.enrollment.setup_password_secret_ref;
    let name = &target.owner.name;
    let credential = credential_view(secret);
    *generation = credential.generation;

    if credential.has_pin {
        return Ok((enrollment::enrolled(name), previous));
    }
    let Some(valid) = valid else {
        return Ok((
            enrollment::pending("the provider config is not rendered (see condition ConfigRendered)"),
            previous,
        ));
    };

    let setup = read_setup(&target.api::<Secret>(ctx), setup_ref).await?;
    let (version, job_name) = match enrollment::plan(name, &credential, &setup, &bookkeeping, setup_ref) {
        Plan::Report(cond) => return Ok((cond, previous)),
        Plan::RunJob { version, job } => (version, job),
    };

    let jobs: Api<Job> = target.api(ctx);
    let job_view = match read_job(&jobs, &job_name, &target.owner).await? {
        Ok(Some(view)) => view,
        Ok(None) => JobView::absent(&job_name, &bookkeeping),
        Err(conflict) => {
            return Ok((conflict_condition(ENROLLED, target, &conflict), previous));
        }
    };
    // The credential was read before the Job: a Job that stored the pin and finished in
    // between must not look like a lost credential, so read the Secret again.
    let reread;
    let credential = if matches!(job_view, JobView::Succeeded | JobView::Removed) {
        let secret_name = names::credential_secret(name);
        let again = target
            .api::<Secret>(ctx)
            .get_opt(&secret_name)
            .await
            .map_err(Error::kube("get", "Secret", secret_name))?;
        let adoption = Adoption::Credential {
            retained: target.partition.spec.retain_credentials_on_delete,
        };
        reread = match again {
            Some(s) => match ownership::check(&s, &target.owner, adoption) {
                Some(conflict) => return Ok((conflict_condition(ENROLLED, target, &conflict), previous)),
                None => credential_view(&s),
            },
            None => CredentialView::default(),
        };
        *generation = reread.generation;
        if reread.has_pin {
            return Ok((enrollment::enrolled(name), previous));
        }
        &reread
    } else {
        &credential
    };
    if let Some(cond) = enrollment::job_outcome(&job_name, job_view, credential, setup_ref) {
        return Ok((
            cond,
            Some(enrollment::record_attempt(&bookkeeping, &job_name, &version, false)),
        ));
    }

    // No Job for this setup-password version yet: start one.
    if let Some(conflict) = ensure_enroll_identity(target, ctx).await? {
        return Ok((conflict_condition(ENROLLED, target, &conflict), previous));
    }
    if credential.error.is_some() {
        // The annotations describe an older setup password's Job; they must not be read as this one's.
        clear_enrollment_error(&target.api::<Secret>(ctx), secret).await?;
    }
    let job = owned::enrollment_job(&target.owner, &valid.enrollment, &job_name, &version);
    let created = match ownership::create(&jobs, &job).await {
        Ok(_) => {
            info!(partition = %format!("{}/{}", target.owner.namespace, name), job = %job_name, "created enrollment Job");
            true
        }
        // Created by an earlier run that stopped before recording it, or by someone else.
        Err(Error::Kube { source, .. }) if api_code(&source) == Some(409) => {
            match read_job(&jobs, &job_name, &target.owner).await? {
                Ok(Some(_)) => false,
                Ok(None) => return Err(Error::kube("create", "Job", job_name.clone())(source)),
                Err(conflict) => return Ok((conflict_condition(ENROLLED, target, &conflict), previous)),
            }
        }
        Err(e) => return Err(e),
    };
    if bookkeeping.job.as_deref().is_some_and(|previous| previous != job_name) {
        // Jobs of earlier setup-password versions: finished or hopeless.
        ownership::delete_jobs(&jobs, &names::partition_selector(name), &target.owner, Some(&job_name)).await?;
    }
    Ok((
        enrollment::running(&job_name),
        Some(enrollment::record_attempt(&bookkeeping, &job_name, &version, created)),
    ))
}

/// The enrollment Job's Role, RoleBinding and ServiceAccount (the ServiceAccount last, so that
/// a conflict on the others leaves no identity behind); the first conflict, if any.
async fn ensure_enroll_identity(target: &Target<'_>, ctx: &Context) -> Result<Option<Conflict>, Error> {
    let owner = &target.owner;
    let role = owned::enroll_role(owner);
    let api = target.api::<Role>(ctx);
    if let Claimed::Conflict(c) = ownership::ensure(&api, &role, owner, Adoption::Controlled).await? {
        return Ok(Some(c));
    }
    let binding = owned::enroll_role_binding(owner);
    let api = target.api::<RoleBinding>(ctx);
    if let Claimed::Conflict(c) = ownership::ensure(&api, &binding, owner, Adoption::Controlled).await? {
        return Ok(Some(c));
    }
    let account = owned::enroll_service_account(owner);
    let api = target.api::<ServiceAccount>(ctx);
    if let Claimed::Conflict(c) = ownership::ensure(&api, &account, owner, Adoption::Controlled).await? {
        return Ok(Some(c));
    }
    Ok(None)
}

/// Presence of `pin`, the error annotations and the generation; the pin's value is not kept.
fn credential_view(secret: &Secret) -> CredentialView {
    let has_pin = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEY_PIN))
        .is_some_and(|v| !v.0.is_empty());
    let annotations = secret.annotations();
    let error = annotations.get(ANNOTATION_ENROLLMENT_ERROR).map(|kind| ReportedError {
        kind: kind.clone(),
        message: annotations
            .get(ANNOTATION_ENROLLMENT_MESSAGE)
            .map(|m| conditions::truncate(m)),
    });
    CredentialView {
        has_pin,
        error,
        generation: generation::of_secret(secret.data.as_ref()),
    }
}

/// Only the key's presence and the Secret's resourceVersion; the value is dropped unread.
async fn read_setup(secrets: &Api<Secret>, setup_ref: &crate::crd::SecretKeyRef) -> Result<SetupView, Error> {
    let Some(secret) = secrets
        .get_opt(&setup_ref.name)
        .await
        .map_err(Error::kube("get", "Secret", &setup_ref.name))?
    else {
        return Ok(SetupView::SecretMissing);
    };
    let has_key = secret.data.as_ref().is_some_and(|d| d.contains_key(&setup_ref.key));
    match (has_key, secret.resource_version()) {
        (true, Some(version)) => Ok(SetupView::Present { version }),
        _ => Ok(SetupView::KeyMissing),
    }
}

/// The Job `name`: `Ok(None)` when absent, `Err` when it is not the partition's.
async fn read_job(jobs: &Api<Job>, name: &str, owner: &Owner) -> Result<Result<Option<JobView>, Conflict>, Error> {
    let Some(job) = jobs.get_opt(name).await.map_err(Error::kube("get", "Job", name))? else {
        return Ok(Ok(None));
    };
    if let Some(conflict) = ownership::check(&job, owner, Adoption::Controlled) {
        return Ok(Err(conflict));
    }
    let status = job.status.unwrap_or_default();
    Ok(Ok(Some(if status.failed.unwrap_or(0) > 0 {
        JobView::Failed
    } else if status.succeeded.unwrap_or(0) > 0 {
        JobView::Succeeded
    } else {
        JobView::Pending
    })))
}

/// Removes the failure annotations from the partition's credential Secret, as it was read
/// (its resourceVersion is the precondition).
async fn clear_enrollment_error(secrets: &Api<Secret>, secret: &Secret) -> Result<(), Error> {
    let name = secret.name_any();
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": secret.resource_version(),
            "annotations": {ANNOTATION_ENROLLMENT_ERROR: null, ANNOTATION_ENROLLMENT_MESSAGE: null}
        }
    });
    secrets
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube("patch", "Secret", name.clone()))?;
    Ok(())
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

/// Deletes the object `name` of kind `K` if it is the partition's (by a
/// controller ownerReference); anything else is left alone and said so.
async fn delete_controlled<K: ownership::Managed>(
    client: &Client,
    namespace: &str,
    name: &str,
    owner: &Owner,
) -> Result<Deleted, Error> {
    ownership::delete(
        &Api::<K>::namespaced(client.clone(), namespace),
        name,
        owner,
        Adoption::Controlled,
    )
    .await
}

/// Deletes what the operator made for the partition, and only that: each object is judged
/// first (ownership.rs), and one that is not the partition's is left where it is.
async fn cleanup(partition: &HsmPartition, ctx: &Context) -> Result<Action, Error> {
    let owner = owner_of(partition)?;
    let (name, namespace) = (owner.name.clone(), owner.namespace.clone());
    let client = &ctx.client;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    ownership::delete_jobs(&jobs, &names::partition_selector(&name), &owner, None).await?;

    let identity = names::enroll_identity(&name);
    let mut left_alone = vec![
        delete_controlled::<RoleBinding>(client, &namespace, &identity, &owner).await?,
        delete_controlled::<Role>(client, &namespace, &identity, &owner).await?,
        delete_controlled::<ServiceAccount>(client, &namespace, &identity, &owner).await?,
        delete_controlled::<ConfigMap>(client, &namespace, &names::provider_config_map(&name), &owner).await?,
    ];

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let credential = names::credential_secret(&name);
    // Only the partition's own credential: never one kept from an earlier partition.
    let adoption = Adoption::Credential { retained: false };
    if partition.spec.retain_credentials_on_delete {
        // Drop the ownerReference so no garbage collector deletes the retained credential.
        let kept = owned::credential_secret(&owner, true);
        if let Some(Claimed::Conflict(c)) = ownership::update_existing(&secrets, &kept, &owner, adoption).await? {
            left_alone.push(Deleted::NotOurs(c));
        }
        info!(partition = %format!("{namespace}/{name}"), secret = %credential, "cleaned up; credential Secret retained");
    } else {
        left_alone.push(ownership::delete(&secrets, &credential, &owner, adoption).await?);
        info!(partition = %format!("{namespace}/{name}"), "cleaned up, credential Secret deleted");
    }
    for outcome in left_alone {
        if let Deleted::NotOurs(c) = outcome {
            info!(partition = %format!("{namespace}/{name}"), "left alone on deletion: {c}");
        }
    }
    Ok(Action::await_change())
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
