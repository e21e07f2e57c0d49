//! Post-processing of the generated OpenAPI schema so that an API server as old as 1.20 accepts it
//! as a structural schema.
//!
//! kube-derive already inlines every subschema (no `$ref`), hoists enum variants into `enum` and
//! turns `Option<T>` into `nullable: true`. What is left is cosmetic or version-specific:
//! schemars' unsigned integer formats (`uint8`, `uint16`, `uint32`) are not Kubernetes formats,
//! the root description is kube-derive's placeholder, and the partition's name is limited so that
//! the enrollment Job's name (and its pods' `job-name` label) stays within 63 characters.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;

use crate::names::MAX_PARTITION_NAME_LEN;

const ROOT_DESCRIPTION: &str = "HsmPartition declares an HSM partition that workloads of its namespace may use \
through the hsmbridge sidecar: the HSM cluster, how its credential is enrolled from a one-time setup password, \
and which ServiceAccounts may use it.";

/// Integer formats Kubernetes knows; schemars' unsigned formats are dropped (the range is
/// carried by `minimum`/`maximum`).
const KUBERNETES_INT_FORMATS: [&str; 2] = ["int32", "int64"];

/// Rewrites `schema` (the CRD's `openAPIV3Schema`) in place.
pub fn make_structural(schema: &mut JSONSchemaProps) {
    schema.description = Some(ROOT_DESCRIPTION.to_owned());
    schema.title = None;
    let properties = schema.properties.get_or_insert_with(BTreeMap::new);
    properties.insert("metadata".to_owned(), metadata_schema());
    walk(schema);
}

/// Only `metadata.name` and `metadata.generateName` may be restricted in a CRD schema.
fn metadata_schema() -> JSONSchemaProps {
    let name = JSONSchemaProps {
        type_: Some("string".to_owned()),
        max_length: Some(MAX_PARTITION_NAME_LEN as i64),
        ..Default::default()
    };
    JSONSchemaProps {
        type_: Some("object".to_owned()),
        properties: Some(BTreeMap::from([("name".to_owned(), name)])),
        ..Default::default()
    }
}

fn walk(schema: &mut JSONSchemaProps) {
    if schema.type_.as_deref() == Some("integer") {
        if let Some(format) = schema.format.as_deref() {
            if !KUBERNETES_INT_FORMATS.contains(&format) {
                schema.format = None;
            }
        }
    }
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        walk(child);
    }
    if let Some(items) = schema.items.as_mut() {
        match items {
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(s) => {
                walk(s)
            }
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schemas(v) => {
                v.iter_mut().for_each(walk)
            }
        }
    }
}
