//! The JSON patch that brings an object of the partition's to what the reconciler wants, and
//! never writes an object other than the one judged (`mod.rs`).

use super::*;

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
