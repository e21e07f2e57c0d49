use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::*;

fn owner() -> Owner {
    Owner {
        name: "payments".to_owned(),
        namespace: "team-a".to_owned(),
        reference: reference("HsmPartition", "payments", "uid-1", true),
    }
}

fn reference(kind: &str, name: &str, uid: &str, controller: bool) -> OwnerReference {
    OwnerReference {
        api_version: "hsmbridge.io/v1alpha1".to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(controller),
        block_owner_deletion: Some(true),
    }
}

fn credential_labels() -> BTreeMap<String, String> {
    crate::names::labels("payments", COMPONENT_CREDENTIALS)
}

fn meta(labels: Option<BTreeMap<String, String>>, refs: Vec<OwnerReference>, kept_for: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some("payments-credentials".to_owned()),
        uid: Some("object-uid".to_owned()),
        resource_version: Some("42".to_owned()),
        labels,
        owner_references: (!refs.is_empty()).then_some(refs),
        annotations: kept_for.map(|uid| BTreeMap::from([(ANNOTATION_PARTITION_UID.to_owned(), uid.to_owned())])),
        ..ObjectMeta::default()
    }
}

const CONTROLLED: Adoption = Adoption::Controlled;
const CREDENTIAL: Adoption = Adoption::Credential { retained: false };
const RETAINING: Adoption = Adoption::Credential { retained: true };

#[test]
fn only_the_partitions_controller_reference_makes_an_object_its() {
    let ours = meta(None, vec![reference("HsmPartition", "payments", "uid-1", true)], None);
    assert_eq!(judge(&ours, &owner(), CONTROLLED), Verdict::Ours);

    // Same name, another partition (an earlier one of the same name, or another kind).
    let other = meta(None, vec![reference("HsmPartition", "payments", "uid-0", true)], None);
    assert_eq!(
        judge(&other, &owner(), CONTROLLED),
        Verdict::Foreign(Why::ControlledBy {
            kind: "HsmPartition".into(),
            name: "payments".into()
        })
    );
    let deployment = meta(None, vec![reference("Deployment", "db", "uid-9", true)], None);
    assert!(matches!(
        judge(&deployment, &owner(), RETAINING),
        Verdict::Foreign(Why::ControlledBy { .. })
    ));

    // A non-controller reference to the partition is not ownership, nor are labels alone.
    let weak = meta(
        Some(credential_labels()),
        vec![reference("HsmPartition", "payments", "uid-1", false)],
        None,
    );
    assert_eq!(judge(&weak, &owner(), CONTROLLED), Verdict::Foreign(Why::NotOwned));
    let plain = meta(None, vec![], None);
    assert_eq!(judge(&plain, &owner(), CONTROLLED), Verdict::Foreign(Why::NotOwned));
    assert_eq!(judge(&plain, &owner(), RETAINING), Verdict::Foreign(Why::NotOwned));
}

#[test]
fn a_kept_credential_is_the_partitions_by_its_uid_annotation() {
    // Kept without ownerReference for this partition (retainCredentialsOnDelete on a live partition).
    let kept = meta(Some(credential_labels()), vec![], Some("uid-1"));
    assert_eq!(judge(&kept, &owner(), CREDENTIAL), Verdict::Ours);
    assert_eq!(judge(&kept, &owner(), CONTROLLED), Verdict::Foreign(Why::NotOwned));

    // Kept from an earlier partition of the same name (or by an operator before the annotation).
    for earlier in [Some("uid-0"), None] {
        let retained = meta(Some(credential_labels()), vec![], earlier);
        assert_eq!(judge(&retained, &owner(), CREDENTIAL), Verdict::Retained);
        assert_eq!(may_write(Verdict::Retained, CREDENTIAL), Err(Why::Retained));
        assert_eq!(may_write(Verdict::Retained, RETAINING), Ok(()));
    }

    // Labels of another partition, or of another component, are not this partition's credential.
    let mut labels = credential_labels();
    labels.insert(crate::names::LABEL_PARTITION.to_owned(), "other".to_owned());
    assert_eq!(
        judge(&meta(Some(labels), vec![], Some("uid-1")), &owner(), RETAINING),
        Verdict::Foreign(Why::NotOwned)
    );
    let mut labels = credential_labels();
    labels.insert(LABEL_COMPONENT.to_owned(), "enrollment".to_owned());
    assert_eq!(
        judge(&meta(Some(labels), vec![], None), &owner(), RETAINING),
        Verdict::Foreign(Why::NotOwned)
    );
}

#[test]
fn conflict_messages_name_kind_and_name_only() {
    let c = Conflict {
        kind: "Secret",
        name: "payments-credentials".into(),
        why: Why::NotOwned,
    };
    let text = c.to_string();
    assert!(
        text.starts_with("Secret payments-credentials already exists and is not owned by this HsmPartition"),
        "{text}"
    );
    let c = Conflict {
        kind: "RoleBinding",
        name: "payments-enroll".into(),
        why: Why::ControlledBy {
            kind: "Deployment".into(),
            name: "db".into(),
        },
    };
    assert!(c.to_string().contains("is controlled by Deployment db"), "{c}");
    let c = Conflict {
        kind: "Secret",
        name: "payments-credentials".into(),
        why: Why::Retained,
    };
    assert!(c.to_string().contains("spec.retainCredentialsOnDelete: true"), "{c}");
}

fn config_map(meta: ObjectMeta, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: meta,
        data: (!data.is_empty()).then(|| data.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
        ..ConfigMap::default()
    }
}

fn desired_meta() -> ObjectMeta {
    ObjectMeta {
        name: Some("payments-provider".to_owned()),
        labels: Some(crate::names::labels("payments", "provider-config")),
        owner_references: Some(vec![reference("HsmPartition", "payments", "uid-1", true)]),
        ..ObjectMeta::default()
    }
}

fn paths(ops: &[PatchOperation]) -> Vec<String> {
    ops.iter()
        .map(|op| {
            let (verb, path) = match op {
                PatchOperation::Add(o) => ("add", o.path.to_string()),
                PatchOperation::Remove(o) => ("remove", o.path.to_string()),
                PatchOperation::Test(o) => ("test", o.path.to_string()),
                other => ("other", format!("{other:?}")),
            };
            format!("{verb} {path}")
        })
        .collect()
}

#[test]
fn an_up_to_date_object_needs_no_write() {
    let mut existing = desired_meta();
    existing.uid = Some("object-uid".into());
    existing.resource_version = Some("7".into());
    // Labels of others are kept, not a reason to write.
    existing
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert("team".into(), "a".into());
    let existing = config_map(existing, &[("primus.cfg", "x")]);
    let desired = config_map(desired_meta(), &[("primus.cfg", "x")]);
    assert_eq!(update_ops(&existing, &desired, "uid-1").expect("ops"), vec![]);

    // An empty data map is what the API server stores as no data at all.
    let empty = config_map(
        ObjectMeta {
            uid: Some("u".into()),
            ..desired_meta()
        },
        &[],
    );
    let desired_empty = ConfigMap {
        data: Some(BTreeMap::new()),
        ..config_map(desired_meta(), &[])
    };
    assert_eq!(update_ops(&empty, &desired_empty, "uid-1").expect("ops"), vec![]);
}

#[test]
fn updates_are_guarded_by_uid_and_resource_version() {
    let mut existing = desired_meta();
    existing.uid = Some("object-uid".into());
    existing.resource_version = Some("7".into());
    let existing = config_map(existing, &[("primus.cfg", "old"), ("stale", "x")]);
    let desired = config_map(desired_meta(), &[("primus.cfg", "new")]);
    let ops = update_ops(&existing, &desired, "uid-1").expect("ops");
    assert_eq!(
        paths(&ops),
        ["test /metadata/uid", "test /metadata/resourceVersion", "add /data"]
    );
    let mut doc = serde_json::to_value(&existing).expect("json");
    json_patch::patch(&mut doc, &ops).expect("applies");
    assert_eq!(doc["data"], serde_json::json!({"primus.cfg": "new"}));
    // The same patch on a replaced object (other uid) does not apply.
    let mut replaced = serde_json::to_value(&existing).expect("json");
    replaced["metadata"]["uid"] = "someone-elses".into();
    assert!(json_patch::patch(&mut replaced, &ops).is_err());
}

#[test]
fn keeping_and_adopting_a_credential_moves_only_the_partitions_reference() {
    let other_ref = reference("Something", "x", "uid-x", false);
    let ours = reference("HsmPartition", "payments", "uid-1", true);
    let mut annotations = BTreeMap::from([(ANNOTATION_PARTITION_UID.to_owned(), "uid-1".to_owned())]);
    let secret = |refs: Vec<OwnerReference>, annotations: BTreeMap<String, String>| Secret {
        metadata: ObjectMeta {
            name: Some("payments-credentials".into()),
            uid: Some("object-uid".into()),
            resource_version: Some("9".into()),
            labels: Some(credential_labels()),
            annotations: Some(annotations),
            owner_references: (!refs.is_empty()).then_some(refs),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    // Owned → kept (retainCredentialsOnDelete): only the partition's reference goes.
    let existing = secret(vec![other_ref.clone(), ours.clone()], annotations.clone());
    let desired = secret(vec![], annotations.clone());
    let ops = update_ops(&existing, &desired, "uid-1").expect("ops");
    let mut doc = serde_json::to_value(&existing).expect("json");
    json_patch::patch(&mut doc, &ops).expect("applies");
    assert_eq!(
        doc["metadata"]["ownerReferences"],
        serde_json::to_value(vec![other_ref]).expect("json")
    );

    // Retained from uid-0 → adopted by uid-1 (still kept): the annotation moves.
    annotations.insert(ANNOTATION_PARTITION_UID.to_owned(), "uid-0".to_owned());
    let existing = secret(vec![], annotations);
    let ops = update_ops(&existing, &desired, "uid-1").expect("ops");
    assert_eq!(
        paths(&ops),
        [
            "test /metadata/uid",
            "test /metadata/resourceVersion",
            "add /metadata/annotations"
        ]
    );

    // Kept → owned (retainCredentialsOnDelete set back to false): the reference is added.
    let existing = secret(
        vec![],
        BTreeMap::from([(ANNOTATION_PARTITION_UID.to_owned(), "uid-1".to_owned())]),
    );
    let desired = secret(
        vec![ours.clone()],
        BTreeMap::from([(ANNOTATION_PARTITION_UID.to_owned(), "uid-1".to_owned())]),
    );
    let ops = update_ops(&existing, &desired, "uid-1").expect("ops");
    let mut doc = serde_json::to_value(&existing).expect("json");
    json_patch::patch(&mut doc, &ops).expect("applies");
    assert_eq!(
        doc["metadata"]["ownerReferences"],
        serde_json::to_value(vec![ours]).expect("json")
    );
}
