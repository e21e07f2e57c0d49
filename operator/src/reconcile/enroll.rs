//! The enrollment steps of `apply` (`mod.rs`): read the credential Secret, the setup-password
//! Secret and the Job, let `crate::enrollment` decide, then create the Job's identity and the Job
//! or record what they reported. Of the Secrets it reads only the presence of keys, the error
//! annotations, the credential's generation and the setup Secret's resourceVersion (`mod.rs`).

use super::*;

/// The `Enrolled` condition, the enrollment bookkeeping and the credential's generation (as
/// last read); creates the Job when needed. `secret` is the partition's credential Secret;
/// `valid` is `None` while the provider config is not rendered (invalid spec, or its ConfigMap
/// is someone else's).
pub(super) async fn enroll(
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
