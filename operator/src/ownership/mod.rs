//! Which objects are a partition's to write and delete (here), and the only ways the reconciler
//! writes and deletes them (`writes.rs`, with the patches of `patch.rs`).
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

mod patch;
mod writes;

pub use patch::update_ops;
pub use writes::{check, create, delete, delete_jobs, ensure, ensure_with, update_existing, Claimed, Deleted};

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

#[cfg(test)]
mod tests;
