//! `--injected-resources`: the requests and limits of the containers the webhook injects, as the
//! JSON of a container's `resources`. Checked at start-up, so that a mistake stops the operator
//! with a clear message instead of making the API server reject every injected pod.

use k8s_openapi::api::core::v1::ResourceRequirements;

pub fn parse(json: &str) -> Result<ResourceRequirements, String> {
    let not_resources = |e: &dyn std::fmt::Display| {
        format!("not the JSON of a container's resources ({{\"requests\": {{...}}, \"limits\": {{...}}}}): {e}")
    };
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| not_resources(&e))?;
    // k8s-openapi skips unknown fields; a misspelt "request" must not vanish silently.
    let known = ["requests", "limits", "claims"];
    if let Some(unknown) = value
        .as_object()
        .and_then(|o| o.keys().find(|k| !known.contains(&k.as_str())))
    {
        return Err(not_resources(&format!("unknown field {unknown:?}")));
    }
    let r: ResourceRequirements = serde_json::from_value(numbers_as_strings(value)).map_err(|e| not_resources(&e))?;
    if r.claims.is_some() {
        return Err("claims are not supported for injected containers".to_owned());
    }
    for (kind, list) in [("requests", &r.requests), ("limits", &r.limits)] {
        for (name, q) in list.iter().flatten() {
            if !is_resource_name(name) {
                return Err(format!("{kind}.{name}: not a resource name (cpu, memory, ephemeral-storage, hugepages-<size>, or a domain-prefixed name)"));
            }
            if quantity_value(&q.0).is_none() {
                return Err(format!(
                    "{kind}.{name}: {:?} is not a Kubernetes quantity (e.g. 100m, 64Mi, 1)",
                    q.0
                ));
            }
        }
    }
    for (name, request) in r.requests.iter().flatten() {
        let limit = r.limits.as_ref().and_then(|l| l.get(name));
        if let (Some(req), Some(lim)) = (quantity_value(&request.0), limit.and_then(|l| quantity_value(&l.0))) {
            if req > lim {
                return Err(format!(
                    "requests.{name} {:?} is above limits.{name} {:?}: the API server would reject every injected pod",
                    request.0,
                    limit.map(|l| l.0.as_str()).unwrap_or_default()
                ));
            }
        }
    }
    Ok(r)
}

/// YAML values like `cpu: 1` arrive as JSON numbers; a Quantity is a string.
fn numbers_as_strings(mut value: serde_json::Value) -> serde_json::Value {
    for list in ["requests", "limits"] {
        if let Some(map) = value.get_mut(list).and_then(serde_json::Value::as_object_mut) {
            for q in map.values_mut() {
                if q.is_number() {
                    *q = serde_json::Value::String(q.to_string());
                }
            }
        }
    }
    value
}

/// The names the API server accepts in a container's resources.
fn is_resource_name(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-") || name.contains('/')
}

/// The value of a Kubernetes quantity (a decimal number with an optional binary-SI, decimal-SI or
/// exponent suffix), `None` if `s` is not one or is negative (resources cannot be).
fn quantity_value(s: &str) -> Option<f64> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    let number_len = digits
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(digits.len());
    let (number, suffix) = digits.split_at(number_len);
    if number.chars().filter(|c| *c == '.').count() > 1 || !number.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: f64 = number.parse().ok()?;
    let binary = |power: i32| 1024f64.powi(power);
    let scale = match suffix {
        "" => 1.0,
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exp => {
            let e = exp.strip_prefix(['e', 'E'])?;
            let unsigned = e.strip_prefix(['+', '-']).unwrap_or(e);
            if unsigned.is_empty() || !unsigned.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            10f64.powi(e.parse().ok()?)
        }
    };
    Some(n * scale)
}

#[cfg(test)]
mod tests {
    use super::{parse, quantity_value};

    #[test]
    fn the_charts_default_and_numbers() {
        let r = parse(r#"{"requests":{"cpu":"20m","memory":"32Mi"},"limits":{"memory":"128Mi"}}"#).expect("valid");
        let requests = r.requests.expect("requests");
        assert_eq!(requests["cpu"].0, "20m");
        assert_eq!(requests["memory"].0, "32Mi");
        assert_eq!(r.limits.expect("limits")["memory"].0, "128Mi");
        assert_eq!(parse("{}").expect("empty is valid"), Default::default());
        let r = parse(r#"{"requests":{"cpu":1,"memory":"32Mi"}}"#).expect("YAML's cpu: 1");
        assert_eq!(r.requests.expect("requests")["cpu"].0, "1");
        assert!(parse(r#"{"requests":{"example.com/dongle":"1","hugepages-2Mi":"4Mi"}}"#).is_ok());
    }

    #[test]
    fn mistakes_are_refused_with_what_is_wrong() {
        let refused = |json: &str, says: &str| {
            let err = parse(json).expect_err(json);
            assert!(err.contains(says), "{json}: {err}");
        };
        refused(
            r#"{"requests":{"memory":"32MB"}}"#,
            r#"requests.memory: "32MB" is not a Kubernetes quantity"#,
        );
        refused(r#"{"request":{"memory":"32Mi"}"#, "not the JSON");
        refused(r#"{"request":{"memory":"32Mi"}}"#, r#"unknown field "request""#);
        refused("[]", "not the JSON");
        refused(r#"{"requests":{"memory":{"Mi":32}}}"#, "not the JSON");
        refused(r#"{"requests":{"cpu":-1}}"#, "not a Kubernetes quantity");
        refused(r#"{"limits":{"memroy":"1Gi"}}"#, "limits.memroy: not a resource name");
        refused(
            r#"{"requests":{"memory":"256Mi"},"limits":{"memory":"128Mi"}}"#,
            r#"requests.memory "256Mi" is above limits.memory "128Mi""#,
        );
        assert!(
            parse(r#"{"requests":{"memory":"128Mi","cpu":"2"},"limits":{"memory":"0.125Gi"}}"#).is_ok(),
            "equal is fine"
        );
    }

    #[test]
    fn quantities() {
        for (q, v) in [
            ("1", 1.0),
            ("0.5", 0.5),
            (".5", 0.5),
            ("100m", 0.1),
            ("64Mi", 64.0 * 1048576.0),
            ("2e3", 2000.0),
            ("1E-2", 0.01),
            ("+1k", 1000.0),
            ("1.5G", 1.5e9),
        ] {
            assert_eq!(quantity_value(q), Some(v), "{q}");
        }
        for q in ["", "m", "Mi", "1MB", "1.2.3", "1e", "1 Mi", "ten", "1Mi ", "-1", "1e+"] {
            assert_eq!(quantity_value(q), None, "{q:?} is not a quantity");
        }
    }
}
