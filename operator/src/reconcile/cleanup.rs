//! What the finalizer runs when a partition is deleted (`mod.rs` `reconcile`): delete the objects
//! the operator created for it, and only those (a controller ownerReference to the partition).

use super::*;

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
pub(super) async fn cleanup(partition: &HsmPartition, ctx: &Context) -> Result<Action, Error> {
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
