use super::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{JSONSchemaProps, JSONSchemaPropsOrArray};

const CRD_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/hsmpartition.yaml");

fn schema() -> JSONSchemaProps {
    crd().spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.clone())
        .unwrap_or_else(|| panic!("the CRD has a schema"))
}

/// The schema node at `path`; array nodes are entered through their items.
fn prop<'a>(s: &'a JSONSchemaProps, path: &[&str]) -> &'a JSONSchemaProps {
    path.iter().fold(s, |node, p| {
        let node = match &node.items {
            Some(JSONSchemaPropsOrArray::Schema(items)) => items.as_ref(),
            _ => node,
        };
        node.properties
            .as_ref()
            .and_then(|m| m.get(*p))
            .unwrap_or_else(|| panic!("no property {p}"))
    })
}

#[test]
fn crds_file_is_fresh() {
    let generated = crd_yaml().unwrap_or_else(|e| panic!("{e}"));
    let on_disk = std::fs::read_to_string(CRD_FILE).unwrap_or_default();
    assert!(
        on_disk == generated,
        "crds/hsmpartition.yaml is stale: regenerate it with\n    cargo run -q -p hsm-operator -- crd > crds/hsmpartition.yaml"
    );
}

#[test]
fn names_and_columns() {
    let crd = crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("hsmpartitions.hsmbridge.io"));
    assert_eq!(crd.spec.group, "hsmbridge.io");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "HsmPartition");
    assert_eq!(crd.spec.names.short_names, Some(vec!["hsmp".to_owned()]));
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
    let columns: Vec<_> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            (
                "Enrolled",
                "string",
                ".status.conditions[?(@.type==\"Enrolled\")].status"
            ),
            ("Ready", "string", ".status.conditions[?(@.type==\"Ready\")].status"),
            ("Credential", "integer", ".status.credentialGeneration"),
            ("Config", "integer", ".status.configGeneration"),
            ("Reason", "string", ".status.conditions[?(@.type==\"Enrolled\")].reason"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
}

/// A 1.20 API server wants a structural schema: no $ref, no oneOf/anyOf/allOf/not that carry
/// types, every node typed (or preserving unknown fields), no non-Kubernetes formats.
fn assert_structural(s: &JSONSchemaProps, path: &str) {
    assert!(s.ref_path.is_none(), "$ref at {path}");
    assert!(
        s.one_of.is_none() && s.any_of.is_none() && s.all_of.is_none() && s.not.is_none(),
        "combinator at {path}"
    );
    assert!(
        s.x_kubernetes_validations.is_none(),
        "CEL rule at {path} (1.20 has no CEL)"
    );
    assert!(
        s.type_.is_some() || s.x_kubernetes_preserve_unknown_fields == Some(true),
        "untyped node at {path}"
    );
    if let Some(format) = &s.format {
        assert!(
            ["int32", "int64", "date-time", "byte"].contains(&format.as_str()),
            "format {format} at {path}"
        );
    }
    for (name, child) in s.properties.iter().flatten() {
        assert_structural(child, &format!("{path}.{name}"));
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &s.items {
        assert_structural(items, &format!("{path}[]"));
    }
}

#[test]
fn schema_is_structural_for_1_20() {
    assert_structural(&schema(), "");
    let yaml = crd_yaml().unwrap_or_default();
    for forbidden in ["$ref", "oneOf", "anyOf", "allOf", "x-kubernetes-validations", "uint"] {
        assert!(!yaml.contains(forbidden), "CRD YAML contains {forbidden}");
    }
}

#[test]
fn schema_carries_the_simple_rules() {
    let s = schema();
    let spec = prop(&s, &["spec"]);
    let mut required = spec.required.clone().unwrap_or_default();
    required.sort();
    assert_eq!(required, ["enrollment", "provider", "sidecar"]);

    let provider = prop(&s, &["spec", "provider"]);
    let values: Vec<_> = provider.enum_.iter().flatten().map(|v| v.0.clone()).collect();
    assert_eq!(values, [serde_json::json!("primus"), serde_json::json!("pkcs11")]);
    let method = prop(&s, &["spec", "enrollment", "method"]);
    let values: Vec<_> = method.enum_.iter().flatten().map(|v| v.0.clone()).collect();
    assert_eq!(
        values,
        [serde_json::json!("ppin"), serde_json::json!("pkcs11-init-pin")]
    );
    let pin_mode = prop(&s, &["spec", "pinMode"]);
    assert_eq!(
        pin_mode.default.as_ref().map(|d| d.0.clone()),
        Some(serde_json::json!("managed"))
    );

    let port = prop(&s, &["spec", "cluster", "members", "port"]);
    assert_eq!((port.minimum, port.maximum), (Some(1.0), Some(65535.0)));
    assert_eq!(
        port.default.as_ref().map(|d| d.0.clone()),
        Some(serde_json::json!(2310))
    );
    let priority = prop(&s, &["spec", "cluster", "members", "priority"]);
    assert_eq!((priority.minimum, priority.maximum), (Some(0.0), Some(127.0)));
    let members = prop(&s, &["spec", "cluster", "members"]);
    assert_eq!(members.min_items, Some(1));
    assert_eq!(
        prop(&s, &["spec", "sidecar", "modulePath"]).pattern.as_deref(),
        Some("^/")
    );
    assert_eq!(prop(&s, &["metadata", "name"]).max_length, Some(47));

    let conditions = prop(&s, &["status", "conditions"]);
    assert_eq!(conditions.x_kubernetes_list_type.as_deref(), Some("map"));
}

#[test]
fn contract_example_round_trips() {
    let yaml = r#"
apiVersion: hsmbridge.io/v1alpha1
kind: HsmPartition
metadata: {name: payments, namespace: team-a}
spec:
  provider: primus
  sidecar:
    image: registry.example/hsm-sidecar-primus:1.0
    modulePath: /usr/local/primus/lib/libprimusP11.so
  cluster:
    members:
      - {host: hsm1.example.net, port: 2310, priority: 0}
      - {host: hsm2.example.net}
    user: PAYMENTS
    slotId: 0
    timeouts: {waitDelaySeconds: 5, waitMaxTries: 3}
  token: {label: payments}
  enrollment:
    method: ppin
    setupPasswordSecretRef: {name: payments-setup, key: setup-password}
    ppinPath: /usr/local/primus/bin/ppin
  pinMode: managed
  serviceAccounts: [payments-api]
  retainCredentialsOnDelete: false
"#;
    let p: HsmPartition = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    let cluster = p.spec.cluster.clone().unwrap_or_else(|| panic!("cluster"));
    assert_eq!(cluster.members[1].port, 2310);
    assert_eq!(cluster.members[1].priority, 0);
    assert_eq!(p.spec.enrollment.method, EnrollmentMethod::Ppin);
    assert_eq!(
        p.spec.service_accounts,
        vec![ServiceAccountName("payments-api".to_owned())]
    );
    let back = serde_json::to_value(&p.spec).unwrap_or_default();
    assert_eq!(back["enrollment"]["method"], "ppin");
    assert_eq!(back["pinMode"], "managed");
}
