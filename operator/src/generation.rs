//! Generations: decimal counters under `hsmbridge_contract::GENERATION_KEY` that say which
//! credential and which provider configuration a partition is at (`kubectl get hsmp` shows them;
//! each sidecar reports the ones it runs with).
//!
//! - The provider ConfigMap's: 1 when it is created, +1 whenever the rendered content (every
//!   other key) changes. Unchanged content keeps it, so re-reconciles and operator restarts never
//!   bump it: the counter lives in the ConfigMap, not in the operator.
//! - The credential Secret's: written by the enrollment (`hsm-sidecar enroll --secret`, previous
//!   + 1) or by an administrator who rotates the Secret by hand; read here, 0 when absent.

use std::collections::BTreeMap;

use hsmbridge_contract::GENERATION_KEY;
use k8s_openapi::ByteString;

/// A generation as written: a non-negative decimal, surrounding whitespace allowed.
pub fn parse(value: &str) -> Option<i64> {
    value.trim().parse::<i64>().ok().filter(|n| *n >= 0)
}

/// The ConfigMap data to write: `rendered` plus its generation, given the data the ConfigMap
/// holds now (`None`: it does not exist yet). Returns the data and the generation.
pub fn stamp_config(
    mut rendered: BTreeMap<String, String>,
    current: Option<&BTreeMap<String, String>>,
) -> (BTreeMap<String, String>, i64) {
    // A rendered key of that name cannot exist (the keys are file names such as primus.cfg);
    // should one ever, the generation takes its place rather than being lost.
    rendered.remove(GENERATION_KEY);
    let generation = match current {
        None => 1,
        Some(current) => {
            let previous = current.get(GENERATION_KEY).and_then(|v| parse(v)).unwrap_or(0);
            let unchanged = current.len() - usize::from(current.contains_key(GENERATION_KEY)) == rendered.len()
                && rendered.iter().all(|(k, v)| current.get(k) == Some(v));
            if unchanged {
                // A ConfigMap written before generations existed starts at 1.
                previous.max(1)
            } else {
                previous.saturating_add(1)
            }
        }
    };
    rendered.insert(GENERATION_KEY.to_owned(), generation.to_string());
    (rendered, generation)
}

/// The provider ConfigMap's generation as stored (`None`: absent or not a decimal).
pub fn of_config(data: Option<&BTreeMap<String, String>>) -> Option<i64> {
    data.and_then(|d| d.get(GENERATION_KEY)).and_then(|v| parse(v))
}

/// The credential Secret's generation: 0 when the key is absent or not a decimal.
pub fn of_secret(data: Option<&BTreeMap<String, ByteString>>) -> i64 {
    data.and_then(|d| d.get(GENERATION_KEY))
        .and_then(|v| std::str::from_utf8(&v.0).ok())
        .and_then(parse)
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "generation_tests.rs"]
mod tests;
