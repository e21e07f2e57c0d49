//! The only writes and deletes the reconciler makes: each judges what is there first (`mod.rs`
//! `judge`) and leaves anything that is not the partition's alone.

use super::*;

/// What [`ensure`] found.
#[derive(Debug)]
pub enum Claimed<K> {
    /// The partition's object, as it is now.
    Ours(K),
    /// Someone else's, left alone.
    Conflict(Conflict),
}

fn name_of<K: Managed>(object: &K) -> Result<String, Error> {
    object
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("name of an owned object"))
}

fn conflict<K: Managed>(name: &str, why: Why) -> Conflict {
    Conflict {
        kind: K::KIND,
        name: name.to_owned(),
        why,
    }
}

/// Makes `desired` exist as the partition's: creates it when absent, updates it when it is the
/// partition's, and otherwise leaves it alone and says so.
pub async fn ensure<K: Managed>(
    api: &Api<K>,
    desired: &K,
    owner: &Owner,
    adoption: Adoption,
) -> Result<Claimed<K>, Error> {
    let name = name_of(desired)?;
    match api.get_opt(&name).await.map_err(Error::kube("get", K::KIND, &name))? {
        None => Ok(Claimed::Ours(create(api, desired).await?)),
        Some(existing) => update(api, existing, desired, owner, adoption).await,
    }
}

/// Like [`ensure`], with the desired object `name` made from the one that exists (`None`:
/// absent), e.g. to carry a counter forward. `make` may see an object that is not the
/// partition's; what it returns is then not written.
pub async fn ensure_with<K: Managed>(
    api: &Api<K>,
    name: &str,
    make: impl FnOnce(Option<&K>) -> K,
    owner: &Owner,
    adoption: Adoption,
) -> Result<Claimed<K>, Error> {
    match api.get_opt(name).await.map_err(Error::kube("get", K::KIND, name))? {
        None => Ok(Claimed::Ours(create(api, &make(None)).await?)),
        Some(existing) => {
            let desired = make(Some(&existing));
            update(api, existing, &desired, owner, adoption).await
        }
    }
}

/// Like [`ensure`] without creating: `None` when the object does not exist.
pub async fn update_existing<K: Managed>(
    api: &Api<K>,
    desired: &K,
    owner: &Owner,
    adoption: Adoption,
) -> Result<Option<Claimed<K>>, Error> {
    let name = name_of(desired)?;
    match api.get_opt(&name).await.map_err(Error::kube("get", K::KIND, &name))? {
        None => Ok(None),
        Some(existing) => update(api, existing, desired, owner, adoption).await.map(Some),
    }
}

async fn update<K: Managed>(
    api: &Api<K>,
    existing: K,
    desired: &K,
    owner: &Owner,
    adoption: Adoption,
) -> Result<Claimed<K>, Error> {
    let name = name_of(desired)?;
    if let Err(why) = may_write(judge(existing.meta(), owner, adoption), adoption) {
        return Ok(Claimed::Conflict(conflict::<K>(&name, why)));
    }
    let ops = update_ops(&existing, desired, &owner.reference.uid)
        .map_err(|source| Error::Encode { kind: K::KIND, source })?;
    if ops.is_empty() {
        return Ok(Claimed::Ours(existing));
    }
    let patched = api
        .patch(
            &name,
            &PatchParams {
                field_manager: Some(MANAGER.to_owned()),
                ..PatchParams::default()
            },
            &Patch::Json::<()>(json_patch::Patch(ops)),
        )
        .await
        .map_err(Error::kube("patch", K::KIND, &name))?;
    debug!(kind = K::KIND, name = %name, "updated");
    Ok(Claimed::Ours(patched))
}

/// Creates `desired` (never over an existing object: 409 is an error, judged next time).
pub async fn create<K: Managed>(api: &Api<K>, desired: &K) -> Result<K, Error> {
    let name = name_of(desired)?;
    let created = api
        .create(
            &PostParams {
                field_manager: Some(MANAGER.to_owned()),
                ..PostParams::default()
            },
            desired,
        )
        .await
        .map_err(Error::kube("create", K::KIND, &name))?;
    debug!(kind = K::KIND, name = %name, "created");
    Ok(created)
}

/// The conflict an existing object is, if it is not the partition's.
pub fn check<K: Managed>(object: &K, owner: &Owner, adoption: Adoption) -> Option<Conflict> {
    let name = object.meta().name.clone().unwrap_or_default();
    may_write(judge(object.meta(), owner, adoption), adoption)
        .err()
        .map(|why| conflict::<K>(&name, why))
}

/// What [`delete`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    Done,
    Absent,
    /// Not the partition's: left alone.
    NotOurs(Conflict),
}

/// Deletes `name` if it is the partition's (never a retained credential of an earlier one).
pub async fn delete<K: Managed>(api: &Api<K>, name: &str, owner: &Owner, adoption: Adoption) -> Result<Deleted, Error> {
    let Some(found) = api
        .get_metadata_opt(name)
        .await
        .map_err(Error::kube("get", K::KIND, name))?
    else {
        return Ok(Deleted::Absent);
    };
    delete_judged(api, &found.metadata, owner, adoption).await
}

/// Deletes the partition's Jobs (by label, each judged), except `keep`.
pub async fn delete_jobs(api: &Api<Job>, selector: &str, owner: &Owner, keep: Option<&str>) -> Result<(), Error> {
    let list = api
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .map_err(Error::kube("list", "Job", &owner.name))?;
    for job in list.items {
        if job.metadata.name.as_deref() == keep {
            continue;
        }
        if let Deleted::NotOurs(c) = delete_judged(api, &job.metadata, owner, Adoption::Controlled).await? {
            info!(partition = %format!("{}/{}", owner.namespace, owner.name), "{c}; not deleting it");
        }
    }
    Ok(())
}

async fn delete_judged<K: Managed>(
    api: &Api<K>,
    meta: &ObjectMeta,
    owner: &Owner,
    adoption: Adoption,
) -> Result<Deleted, Error> {
    let name = meta.name.clone().unwrap_or_default();
    match judge(meta, owner, adoption) {
        Verdict::Ours => {}
        Verdict::Retained => return Ok(Deleted::NotOurs(conflict::<K>(&name, Why::Retained))),
        Verdict::Foreign(why) => return Ok(Deleted::NotOurs(conflict::<K>(&name, why))),
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            debug!(kind = K::KIND, name = %name, "deleted");
            Ok(Deleted::Done)
        }
        Err(e) if api_code(&e) == Some(404) => Ok(Deleted::Absent),
        Err(e) => Err(Error::kube("delete", K::KIND, name)(e)),
    }
}
