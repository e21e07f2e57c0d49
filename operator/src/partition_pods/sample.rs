//! Reading a sidecar's `/metrics` page (OpenMetrics or Prometheus text): the value of an
//! unlabelled (or any-labelled) gauge, as the generation the sidecar runs with.

/// The sidecar's gauges of the generations it runs with (`sidecar/src/metrics/`).
pub const CREDENTIAL_GAUGE: &str = "hsmbridge_sidecar_credential_generation";
pub const CONFIG_GAUGE: &str = "hsmbridge_sidecar_config_generation";

/// What one sidecar reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reported {
    pub credential: i64,
    pub config: i64,
}

/// Both generations from `text`; `None` when either gauge is missing or not a whole number.
pub fn reported(text: &str) -> Option<Reported> {
    Some(Reported {
        credential: generation(text, CREDENTIAL_GAUGE)?,
        config: generation(text, CONFIG_GAUGE)?,
    })
}

/// The first sample of `name` as a non-negative whole number.
fn generation(text: &str, name: &str) -> Option<i64> {
    let value = first_sample(text, name)?;
    // Generations are counters written as decimals; a gauge carries them as floats.
    (value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= i64::MAX as f64).then_some(value as i64)
}

/// The value of the first sample line of metric `name` (labels, if any, are not looked at).
fn first_sample(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = if let Some(labelled) = rest.strip_prefix('{') {
            // Label values are quoted and may hold `}`: the label set ends at the last `}`.
            &labelled[labelled.rfind('}')? + 1..]
        } else {
            rest
        };
        // `name_suffix ...` is another metric; a sample has whitespace after its name or labels.
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        // A timestamp (and an exemplar) may follow the value.
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
#[path = "sample_tests.rs"]
mod tests;
