//! The API writes of the self-managed mode: the Secret converged on by every replica, and the
//! `caBundle` of the MutatingWebhookConfiguration.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tracing::info;

use crate::names;

use super::*;

/// Makes the Secret hold valid material for `names` (creating or renewing it), and returns it.
pub async fn converge_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    names: &[String],
) -> Result<Material, TlsError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let err = |verb: &'static str| {
        move |source| TlsError::Secret {
            verb,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        }
    };
    for _ in 0..5 {
        let existing = api.get_opt(name).await.map_err(err("get"))?;
        let material = existing
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(Material::from_secret_data);
        let new = match plan(material.as_ref(), names, now())? {
            Plan::Keep => {
                if let Some(m) = material {
                    return Ok(m);
                }
                continue;
            }
            Plan::Write(new) => new,
        };
        let written = match existing {
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.to_owned()),
                        namespace: Some(namespace.to_owned()),
                        labels: Some(BTreeMap::from([
                            (names::LABEL_MANAGED_BY.to_owned(), names::MANAGER.to_owned()),
                            (names::LABEL_COMPONENT.to_owned(), "webhook-tls".to_owned()),
                        ])),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".to_owned()),
                    data: Some(new.to_secret_data()),
                    ..Secret::default()
                };
                api.create(&PostParams::default(), &secret).await
            }
            Some(mut secret) => {
                // resourceVersion from the read: a concurrent renewal makes this a 409.
                let mut data = secret.data.take().unwrap_or_default();
                data.extend(new.to_secret_data());
                secret.data = Some(data);
                secret.string_data = None;
                api.replace(name, &PostParams::default(), &secret).await
            }
        };
        match written {
            Ok(_) => {
                info!(secret = %format!("{namespace}/{name}"), "wrote the webhook's serving certificate");
                return Ok(new);
            }
            // Another replica created or renewed it first: read theirs.
            Err(e) if crate::error::api_code(&e) == Some(409) => continue,
            Err(e) => return Err(err("write")(e)),
        }
    }
    Err(TlsError::Contended {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

/// Sets `caBundle` on every webhook of the MutatingWebhookConfiguration `name` that lacks it.
/// `Ok(false)` when the configuration does not exist (yet).
pub async fn patch_ca_bundle(client: &Client, name: &str, ca_bundle: &str) -> Result<bool, TlsError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let err = |verb: &'static str| {
        move |source| TlsError::WebhookConfiguration {
            verb,
            name: name.to_owned(),
            source: Box::new(source),
        }
    };
    let Some(config) = api.get_opt(name).await.map_err(err("get"))? else {
        return Ok(false);
    };
    let want = ByteString(ca_bundle.as_bytes().to_vec());
    let stale: Vec<&str> = config
        .webhooks
        .iter()
        .flatten()
        .filter(|w| w.client_config.ca_bundle.as_ref() != Some(&want))
        .map(|w| w.name.as_str())
        .collect();
    if stale.is_empty() {
        return Ok(true);
    }
    // Strategic merge: webhooks merge by name, so the patch touches only caBundle. The
    // resourceVersion makes it conditional on what was read.
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": config.metadata.resource_version},
        "webhooks": stale.iter().map(|n| serde_json::json!({
            "name": n,
            "clientConfig": {"caBundle": &want},
        })).collect::<Vec<_>>(),
    });
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map_err(err("patch"))?;
    info!(configuration = name, webhooks = ?stale, "set the caBundle");
    Ok(true)
}
