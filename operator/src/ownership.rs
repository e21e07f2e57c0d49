//! Which objects are a partition's to write and delete, and the only ways the reconciler writes
//! and deletes them.
//!
//! The operator names what it makes for a partition (`<name>-provider`, `<name>-credentials`,
//! `<name>-enroll` ServiceAccount/Role/RoleBinding, `<name>-enroll-<hash>` Jobs), in namespaces
//! where others create objects too, so a name proves nothing. An object is the partition's only
//! when it carries the partition's controller ownerReference (its uid) or, for the credential
//! Secret kept without an ownerReference (`retainCredentialsOnDelete`), the operator's labels and
//! the partition's uid in `hsmbridge.io/partition-uid`. Anything else of that name is left
//! untouched and reported (condition reason `OwnershipConflict`): whoever may only create
//! HsmPartitions must not be able to make the operator adopt, rewrite or delete another object.
//!
//! - absent: created (POST; a create that loses a race gets 409, and the next reconcile judges
//!   what is there);
//! - the partition's: brought to the desired labels, annotations, ownerReferences and fields by
//!   a JSON patch whose first operations test the uid and resourceVersion that were judged, so an
//!   object replaced in between is never written;
//! - deleted only when it is the partition's, with that uid and resourceVersion as preconditions.
//!
//! A credential Secret kept from an earlier partition of the same name (the operator's labels,
//! no controller, another or no uid annotation) is adopted only by a partition that keeps its
//! credential too (`retainCredentialsOnDelete: true`): re-creating the partition picks the
//! credential up, while a partition that would delete it with itself cannot claim it.

use std::collections::BTreeMap;
use std::fmt::Debug;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, TestOperation};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tracing::{debug, info};

use crate::error::{api_code, Error};
use crate::names::{
    ANNOTATION_PARTITION_UID, COMPONENT_CREDENTIALS, LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_PARTITION, MANAGER,
};
use crate::owned::Owner;

/// A kind of object the operator makes for partitions.
pub trait Managed:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned
{
    const KIND: &'static str;
    /// Top-level fields the operator decides, besides labels, annotations and ownerReferences.
    const FIELDS: &'static [&'static str];
}

impl Managed for ConfigMap {
    const KIND: &'static str = "ConfigMap";
    const FIELDS: &'static [&'static str] = &["data", "binaryData"];
}

/// Only the credential Secret's metadata is the operator's; its data is the enrollment Job's.
impl Managed for Secret {
    const KIND: &'static str = "Secret";
    const FIELDS: &'static [&'static str] = &[];
}

impl Managed for ServiceAccount {
    const KIND: &'static str = "ServiceAccount";
    const FIELDS: &'static [&'static str] = &[];
}

impl Managed for Role {
    const KIND: &'static str = "Role";
    const FIELDS: &'static [&'static str] = &["rules"];
}

impl Managed for RoleBinding {
    const KIND: &'static str = "RoleBinding";
    const FIELDS: &'static [&'static str] = &["subjects", "roleRef"];
}

/// Jobs are created and deleted, never updated (their pod template is immutable).
impl Managed for Job {
    const KIND: &'static str = "Job";
    const FIELDS: &'static [&'static str] = &[];
}

/// What counts as the partition's besides its controller ownerReference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// Nothing: every object but the credential Secret.
    Controlled,
    /// The credential Secret: also one kept without ownerReference for this partition, and, when
    /// `retained` (the partition has `retainCredentialsOnDelete: true`), one kept for an earlier
    /// partition of the same name.
    Credential { retained: bool },
}

/// Whose an existing object is, from one partition's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ours,
    /// A credential Secret the operator kept for an earlier partition of this name.
    Retained,
    /// Not the partition's.
    Foreign(Why),
}

/// Why an object is not the partition's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Another controller owns it (kind and name of that ownerReference).
    ControlledBy { kind: String, name: String },
    /// No controller ownerReference, and nothing else that makes it the partition's.
    NotOwned,
    /// A credential kept from an earlier partition, and this one would not keep it.
    Retained,
}

/// An object the partition needs but may not touch. Names only kinds and names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub kind: &'static str,
    pub name: String,
    pub why: Why,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Conflict { kind, name, why } = self;
        match why {
            Why::ControlledBy { kind: owner_kind, name: owner } => write!(
                f,
                "{kind} {name} already exists and is controlled by {owner_kind} {owner}, not by this HsmPartition, so hsm-operator leaves it alone: delete or rename that {kind}, or give the partition another name"
            ),
            Why::NotOwned => write!(
                f,
                "{kind} {name} already exists and is not owned by this HsmPartition (no controller ownerReference to it), so hsm-operator leaves it alone: delete or rename that {kind}, or give the partition another name"
            ),
            Why::Retained => write!(
                f,
                "{kind} {name} holds a credential hsm-operator kept from an earlier HsmPartition of this name (retainCredentialsOnDelete). To adopt it, set spec.retainCredentialsOnDelete: true (it may be set back to false afterwards); to enroll anew instead, delete that {kind} (a new setup password is needed)"
            ),
        }
    }
}

/// Judges `meta` for `owner`.
pub fn judge(meta: &ObjectMeta, owner: &Owner, adoption: Adoption) -> Verdict {
    let uid = owner.reference.uid.as_str();
    if let Some(controller) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
    {
        return if controller.uid == uid {
            Verdict::Ours
        } else {
            Verdict::Foreign(Why::ControlledBy {
                kind: controller.kind.clone(),
                name: controller.name.clone(),
            })
        };
    }
    if adoption == Adoption::Controlled {
        return Verdict::Foreign(Why::NotOwned);
    }
    let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str);
    let operators_credential = label(LABEL_MANAGED_BY) == Some(MANAGER)
        && label(LABEL_PARTITION) == Some(owner.name.as_str())
        && label(LABEL_COMPONENT) == Some(COMPONENT_CREDENTIALS);
    if !operators_credential {
        return Verdict::Foreign(Why::NotOwned);
    }
    let kept_for = meta.annotations.as_ref().and_then(|a| a.get(ANNOTATION_PARTITION_UID));
    if kept_for.map(String::as_str) == Some(uid) {
        Verdict::Ours
    } else {
        Verdict::Retained
    }
}

/// Whether the partition may write an object judged `verdict`.
pub fn may_write(verdict: Verdict, adoption: Adoption) -> Result<(), Why> {
    match verdict {
        Verdict::Ours => Ok(()),
        Verdict::Retained if adoption == (Adoption::Credential { retained: true }) => Ok(()),
        Verdict::Retained => Err(Why::Retained),
        Verdict::Foreign(why) => Err(why),
    }
}

/// The JSON patch that brings the partition's `existing` object to `desired` (labels and
/// annotations added, the partition's ownerReference set or removed, [`Managed::FIELDS`]
/// replaced), led by tests of `existing`'s uid and resourceVersion. Empty when nothing differs.
pub fn update_ops<K: Managed>(
    existing: &K,
    desired: &K,
    owner_uid: &str,
) -> Result<Vec<PatchOperation>, serde_json::Error> {
    let (old, new) = (existing.meta(), desired.meta());
    let mut ops = Vec::new();

    for (field, old_map, new_map) in [
        ("labels", &old.labels, &new.labels),
        ("annotations", &old.annotations, &new.annotations),
    ] {
        let before = old_map.clone().unwrap_or_default();
        let mut after: BTreeMap<String, String> = before.clone();
        after.extend(new_map.clone().unwrap_or_default());
        if after != before {
            ops.push(add(&["metadata", field], serde_json::to_value(&after)?));
        }
    }

    let before: Vec<OwnerReference> = old.owner_references.clone().unwrap_or_default();
    let mut after: Vec<OwnerReference> = before.iter().filter(|r| r.uid != owner_uid).cloned().collect();
    after.extend(new.owner_references.clone().unwrap_or_default());
    if after != before {
        ops.push(if after.is_empty() {
            remove(&["metadata", "ownerReferences"])
        } else {
            add(&["metadata", "ownerReferences"], serde_json::to_value(&after)?)
        });
    }

    let (old_json, new_json) = (serde_json::to_value(existing)?, serde_json::to_value(desired)?);
    for field in K::FIELDS {
        let (before, after) = (meaningful(old_json.get(field)), meaningful(new_json.get(field)));
        match (before, after) {
            (b, a) if b == a => {}
            (_, Some(value)) => ops.push(add(&[field], value.clone())),
            (Some(_), None) => ops.push(remove(&[field])),
            (None, None) => {}
        }
    }

    if !ops.is_empty() {
        let mut tests = Vec::new();
        for (field, value) in [("uid", &old.uid), ("resourceVersion", &old.resource_version)] {
            if let Some(value) = value {
                tests.push(PatchOperation::Test(TestOperation {
                    path: pointer(&["metadata", field]),
                    value: Value::String(value.clone()),
                }));
            }
        }
        tests.extend(ops);
        ops = tests;
    }
    Ok(ops)
}

/// `None` for what the API server leaves out anyway: null, `{}`, `[]`.
fn meaningful(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| match v {
        Value::Null => false,
        Value::Object(o) => !o.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    })
}

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: pointer(tokens),
        value,
    })
}

fn remove(tokens: &[&str]) -> PatchOperation {
    PatchOperation::Remove(RemoveOperation { path: pointer(tokens) })
}

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

#[cfg(test)]
#[path = "ownership_tests.rs"]
mod tests;
