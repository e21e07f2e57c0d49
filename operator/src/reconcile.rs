//! One reconciliation of an `HsmPartition` (controller-rs shape): `reconcile` runs the finalizer
//! helper, `apply` drives the partition towards Ready, `cleanup` deletes what the operator
//! created, `error_policy` requeues with per-object exponential backoff.
//!
//! `apply`, in order: validate the spec → apply the ConfigMap `<name>-provider` → apply the
//! (metadata of the) credential Secret `<name>-credentials` → decide enrollment from the
//! credential Secret, the setup-password Secret's resourceVersion and the Job (`enrollment.rs`)
//! → if needed, apply the Job's ServiceAccount/Role/RoleBinding and create its Job → apply the
//! status if it changed, with an Event per condition transition. Every step is idempotent.
//!
//! Secrets: the operator looks at the credential Secret only for the presence of `pin` and the
//! error annotations, and at the setup-password Secret only for the presence of the key and its
//! resourceVersion. No Secret value is logged, put in status, in an Event or in an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer, Event as FinalizerEvent};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::conditions::{self, reason, Cond, CONFIG_RENDERED, READY};
use crate::crd::{EnrollmentStatus, HsmPartition, HsmPartitionStatus, FINALIZER};
use crate::enrollment::{self, CredentialView, JobView, Plan, ReportedError, SetupView};
use crate::error::{api_code, Error};
use crate::metrics::Metrics;
use crate::names::{
    self, ANNOTATION_ENROLLMENT_ERROR, ANNOTATION_ENROLLMENT_MESSAGE, KEY_PIN, MANAGER,
};
use crate::owned::{self, Owner};
use crate::validate::{self, ValidSpec};

/// Requeue while a Job runs (watch events normally come first).
const REQUEUE_RUNNING: Duration = Duration::from_secs(60);
/// Requeue while waiting for a human (the setup Secret is watched, so this is a safety net).
const REQUEUE_WAITING: Duration = Duration::from_secs(300);
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
    let namespace = partition
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
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
        Err(finalizer::Error::RemoveFinalizer(e)) if api_code(&e) == Some(404) => {
            Ok(Action::await_change())
        }
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
        let n = map
            .entry(ObjectRef::from_obj(partition.as_ref()))
            .or_insert(0);
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
    let namespace = partition
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let reference = partition
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let target = Target {
        partition,
        owner: Owner {
            name: name.clone(),
            namespace: namespace.clone(),
            reference,
        },
        status: partition.status.clone().unwrap_or_default(),
    };

    let valid = validate::validate(&namespace, &name, &partition.spec);
    let config = match &valid {
        Ok(v) => {
            let cm = owned::provider_config_map(&target.owner, v.provider_config.clone());
            server_side_apply(&target.api::<ConfigMap>(ctx), &cm, "ConfigMap").await?;
            let cm_name = names::provider_config_map(&name);
            let message = match partition.spec.cluster.as_ref() {
                Some(cluster) if !v.provider_config.is_empty() => {
                    format!(
                        "ConfigMap {cm_name} holds primus.cfg for {} HSM(s)",
                        cluster.members.len()
                    )
                }
                _ => format!("ConfigMap {cm_name} rendered (provider pkcs11 needs no config file)"),
            };
            Cond::new(CONFIG_RENDERED, true, reason::RENDERED, message)
        }
        Err(invalid) => Cond::new(
            CONFIG_RENDERED,
            false,
            reason::INVALID_SPEC,
            format!("Invalid spec: {invalid}"),
        ),
    };

    let credential_name = names::credential_secret(&name);
    let secret =
        owned::credential_secret(&target.owner, partition.spec.retain_credentials_on_delete);
    let credential =
        ensure_credential_secret(&target.api::<Secret>(ctx), &secret, &target.owner).await?;

    let (enrolled, enrollment) = enroll(&target, ctx, valid.as_ref().ok(), &credential).await?;
    let ready = conditions::ready(&config, &enrolled);
    let requeue = if ready.status {
        REQUEUE_READY
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
        enrollment,
        conditions: conditions::merge(
            &target.status.conditions,
            &desired,
            partition.metadata.generation,
            &now,
        ),
    };
    if partition.status.as_ref() != Some(&status) {
        patch_status(ctx, &target, &status).await?;
    }
    publish_transitions(ctx, partition, &target.status, &desired).await;
    Ok(Action::requeue(requeue))
}

/// The `Enrolled` condition and the enrollment bookkeeping; creates the Job when needed.
async fn enroll(
    target: &Target<'_>,
    ctx: &Context,
    valid: Option<&ValidSpec>,
    credential: &CredentialView,
) -> Result<(Cond, Option<EnrollmentStatus>), Error> {
    let previous = target.status.enrollment.clone();
    let bookkeeping = previous.clone().unwrap_or_default();
    let setup_ref = &target.partition.spec.enrollment.setup_password_secret_ref;
    let name = &target.owner.name;

    if credential.has_pin {
        return Ok((enrollment::enrolled(name), previous));
    }
    let Some(valid) = valid else {
        return Ok((
            enrollment::pending("the spec is invalid (see condition ConfigRendered)"),
            previous,
        ));
    };

    let setup = read_setup(&target.api::<Secret>(ctx), setup_ref).await?;
    let (version, job_name) =
        match enrollment::plan(name, credential, &setup, &bookkeeping, setup_ref) {
            Plan::Report(cond) => return Ok((cond, previous)),
            Plan::RunJob { version, job } => (version, job),
        };

    let jobs: Api<Job> = target.api(ctx);
    let job_view = read_job(&jobs, &job_name).await?;
    // The credential was read before the Job: a Job that stored the pin and completed in
    // between must not look like a lost credential, so read the Secret again.
    let reread;
    let credential = if job_view == JobView::Succeeded {
        let secret_name = names::credential_secret(name);
        let secret = target
            .api::<Secret>(ctx)
            .get_opt(&secret_name)
            .await
            .map_err(Error::kube("get", "Secret", secret_name))?;
        reread = secret.as_ref().map(credential_view).unwrap_or_default();
        if reread.has_pin {
            return Ok((enrollment::enrolled(name), previous));
        }
        &reread
    } else {
        credential
    };
    if let Some(cond) = enrollment::job_outcome(&job_name, job_view, credential, setup_ref) {
        return Ok((
            cond,
            Some(enrollment::record_attempt(
                &bookkeeping,
                &job_name,
                &version,
                false,
            )),
        ));
    }

    // No Job for this setup-password version yet: start one.
    if credential.error.is_some() {
        // The annotations describe an older setup password's Job; they must not be read as this one's.
        clear_enrollment_error(&target.api::<Secret>(ctx), &names::credential_secret(name)).await?;
    }
    ensure_enroll_identity(target, ctx).await?;
    let job = owned::enrollment_job(&target.owner, &valid.enrollment, &job_name, &version);
    let created = match jobs
        .create(
            &PostParams {
                field_manager: Some(MANAGER.to_owned()),
                ..Default::default()
            },
            &job,
        )
        .await
    {
        Ok(_) => {
            info!(partition = %format!("{}/{}", target.owner.namespace, name), job = %job_name, "created enrollment Job");
            true
        }
        // Created by an earlier run that stopped before recording it.
        Err(e) if api_code(&e) == Some(409) => false,
        Err(e) => return Err(Error::kube("create", "Job", job_name.clone())(e)),
    };
    if bookkeeping
        .job
        .as_deref()
        .is_some_and(|previous| previous != job_name)
    {
        delete_stale_jobs(&jobs, name, &job_name).await?;
    }
    Ok((
        enrollment::running(&job_name),
        Some(enrollment::record_attempt(
            &bookkeeping,
            &job_name,
            &version,
            created,
        )),
    ))
}

/// The enrollment Job's ServiceAccount, Role and RoleBinding.
async fn ensure_enroll_identity(target: &Target<'_>, ctx: &Context) -> Result<(), Error> {
    server_side_apply(
        &target.api::<ServiceAccount>(ctx),
        &owned::enroll_service_account(&target.owner),
        "ServiceAccount",
    )
    .await?;
    server_side_apply(
        &target.api::<Role>(ctx),
        &owned::enroll_role(&target.owner),
        "Role",
    )
    .await?;
    server_side_apply(
        &target.api::<RoleBinding>(ctx),
        &owned::enroll_role_binding(&target.owner),
        "RoleBinding",
    )
    .await?;
    Ok(())
}

/// Makes sure the credential Secret exists with our labels and ownerReference (never touching
/// its data) and returns what it says. Applies only when something is missing, so a steady-state
/// reconcile costs one GET.
async fn ensure_credential_secret(
    secrets: &Api<Secret>,
    desired: &Secret,
    owner: &Owner,
) -> Result<CredentialView, Error> {
    let name = desired.metadata.name.clone().unwrap_or_default();
    let existing =
        secrets
            .get_opt(&name)
            .await
            .map_err(Error::kube("get", "Secret", name.clone()))?;
    let secret = match existing {
        Some(s)
            if owned::metadata_current(&s.metadata, &desired.metadata, &owner.reference.uid) =>
        {
            s
        }
        _ => secrets
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(desired),
            )
            .await
            .map_err(Error::kube("apply", "Secret", name.clone()))?,
    };
    Ok(credential_view(&secret))
}

/// Presence of `pin` and the error annotations; the values are not kept.
fn credential_view(secret: &Secret) -> CredentialView {
    let has_pin = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEY_PIN))
        .is_some_and(|v| !v.0.is_empty());
    let annotations = secret.annotations();
    let error = annotations
        .get(ANNOTATION_ENROLLMENT_ERROR)
        .map(|kind| ReportedError {
            kind: kind.clone(),
            message: annotations
                .get(ANNOTATION_ENROLLMENT_MESSAGE)
                .map(|m| conditions::truncate(m)),
        });
    CredentialView { has_pin, error }
}

/// Only the key's presence and the Secret's resourceVersion; the value is dropped unread.
async fn read_setup(
    secrets: &Api<Secret>,
    setup_ref: &crate::crd::SecretKeyRef,
) -> Result<SetupView, Error> {
    let Some(secret) = secrets.get_opt(&setup_ref.name).await.map_err(Error::kube(
        "get",
        "Secret",
        &setup_ref.name,
    ))?
    else {
        return Ok(SetupView::SecretMissing);
    };
    let has_key = secret
        .data
        .as_ref()
        .is_some_and(|d| d.contains_key(&setup_ref.key));
    match (has_key, secret.resource_version()) {
        (true, Some(version)) => Ok(SetupView::Present { version }),
        _ => Ok(SetupView::KeyMissing),
    }
}

async fn read_job(jobs: &Api<Job>, name: &str) -> Result<JobView, Error> {
    let Some(job) = jobs
        .get_opt(name)
        .await
        .map_err(Error::kube("get", "Job", name))?
    else {
        return Ok(JobView::Absent);
    };
    let status = job.status.unwrap_or_default();
    Ok(if status.failed.unwrap_or(0) > 0 {
        JobView::Failed
    } else if status.succeeded.unwrap_or(0) > 0 {
        JobView::Succeeded
    } else {
        JobView::Pending
    })
}

async fn clear_enrollment_error(secrets: &Api<Secret>, name: &str) -> Result<(), Error> {
    let patch = serde_json::json!({
        "metadata": {"annotations": {ANNOTATION_ENROLLMENT_ERROR: null, ANNOTATION_ENROLLMENT_MESSAGE: null}}
    });
    secrets
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube("patch", "Secret", name))?;
    Ok(())
}

/// Jobs of earlier setup-password versions: finished or hopeless, and holding the old version.
async fn delete_stale_jobs(jobs: &Api<Job>, partition: &str, current: &str) -> Result<(), Error> {
    let list = jobs
        .list_metadata(&ListParams::default().labels(&names::partition_selector(partition)))
        .await
        .map_err(Error::kube("list", "Job", partition))?;
    for job in list.items {
        let name = job.name_any();
        if name != current {
            delete_if_present(jobs, &name, "Job").await?;
        }
    }
    Ok(())
}

async fn patch_status(
    ctx: &Context,
    target: &Target<'_>,
    status: &HsmPartitionStatus,
) -> Result<(), Error> {
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
async fn publish_transitions(
    ctx: &Context,
    partition: &HsmPartition,
    old: &HsmPartitionStatus,
    desired: &[Cond],
) {
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

async fn cleanup(partition: &HsmPartition, ctx: &Context) -> Result<Action, Error> {
    let name = partition.name_any();
    let namespace = partition
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let list = jobs
        .list_metadata(&ListParams::default().labels(&names::partition_selector(&name)))
        .await
        .map_err(Error::kube("list", "Job", name.clone()))?;
    for job in list.items {
        delete_if_present(&jobs, &job.name_any(), "Job").await?;
    }
    let identity = names::enroll_identity(&name);
    delete_if_present(
        &Api::<RoleBinding>::namespaced(ctx.client.clone(), &namespace),
        &identity,
        "RoleBinding",
    )
    .await?;
    delete_if_present(
        &Api::<Role>::namespaced(ctx.client.clone(), &namespace),
        &identity,
        "Role",
    )
    .await?;
    delete_if_present(
        &Api::<ServiceAccount>::namespaced(ctx.client.clone(), &namespace),
        &identity,
        "ServiceAccount",
    )
    .await?;
    delete_if_present(
        &Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace),
        &names::provider_config_map(&name),
        "ConfigMap",
    )
    .await?;

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let credential = names::credential_secret(&name);
    if partition.spec.retain_credentials_on_delete {
        if secrets
            .get_metadata_opt(&credential)
            .await
            .map_err(Error::kube("get", "Secret", credential.clone()))?
            .is_some()
        {
            // Drop the ownerReference so no garbage collector deletes the retained credential.
            let reference = partition
                .controller_owner_ref(&())
                .ok_or(Error::MissingField("metadata.uid"))?;
            let owner = Owner {
                name: name.clone(),
                namespace: namespace.clone(),
                reference,
            };
            server_side_apply(&secrets, &owned::credential_secret(&owner, true), "Secret").await?;
        }
        info!(partition = %format!("{namespace}/{name}"), secret = %credential, "cleaned up; credential Secret retained");
    } else {
        delete_if_present(&secrets, &credential, "Secret").await?;
        info!(partition = %format!("{namespace}/{name}"), "cleaned up, credential Secret deleted");
    }
    Ok(Action::await_change())
}

async fn server_side_apply<K>(api: &Api<K>, object: &K, kind: &'static str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = object
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("name of an owned object"))?;
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(Error::kube("apply", kind, name.clone()))?;
    debug!(kind, name = %name, "applied");
    Ok(())
}

async fn delete_if_present<K>(api: &Api<K>, name: &str, kind: &'static str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            debug!(kind, name, "deleted");
            Ok(())
        }
        Err(e) if api_code(&e) == Some(404) => Ok(()),
        Err(e) => Err(Error::kube("delete", kind, name)(e)),
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
