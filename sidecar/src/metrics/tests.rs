use std::time::Duration;

use cryptoki_sys::*;

use super::*;

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

#[test]
fn every_call_moves_its_function_and_result_counter_and_histogram() {
    let m = Metrics::new(true, "shop");
    m.call_started();
    m.call_done("C_Sign", CKR_OK, Duration::from_micros(60));
    m.call_started();
    m.call_done("C_Sign", CKR_KEY_HANDLE_INVALID, Duration::from_micros(5));
    m.call_started();
    m.call_done("C_GenerateRandom", CKR_OK, Duration::from_secs(20));
    m.call_refused(CKR_ARGUMENTS_BAD);
    let text = m.render(State::default());
    let calls = |f: &str, r: &str| {
        value(
            &text,
            &format!("hsmbridge_sidecar_calls_total{{function=\"{f}\",result=\"{r}\"}}"),
        )
    };
    assert_eq!(calls("C_Sign", "CKR_OK"), Some(1.0), "{text}");
    assert_eq!(calls("C_Sign", "CKR_KEY_HANDLE_INVALID"), Some(1.0));
    assert_eq!(calls("C_GenerateRandom", "CKR_OK"), Some(1.0));
    assert_eq!(calls("unknown", "CKR_ARGUMENTS_BAD"), Some(1.0));
    assert_eq!(value(&text, "hsmbridge_sidecar_calls_in_flight"), Some(0.0));
    let sign = |suffix: &str| value(&text, &format!("hsmbridge_sidecar_call_duration_seconds_{suffix}"));
    assert_eq!(sign("count{function=\"C_Sign\"}"), Some(2.0));
    // 5 µs falls in the first bucket (10 µs), 60 µs in the 100 µs one.
    assert_eq!(sign("bucket{le=\"0.00001\",function=\"C_Sign\"}"), Some(1.0), "{text}");
    assert_eq!(sign("bucket{le=\"0.0001\",function=\"C_Sign\"}"), Some(2.0), "{text}");
    let random_inf = text
        .lines()
        .filter(|l| l.contains("C_GenerateRandom") && l.contains("_bucket"))
        .map(|l| {
            (
                l.contains("+Inf"),
                l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()),
            )
        })
        .collect::<Vec<_>>();
    assert!(
        random_inf.iter().all(|(inf, v)| *inf == (*v == Some(1.0))),
        "20 s is past the last bucket (10 s): only +Inf counts it: {random_inf:?}"
    );
}

#[test]
fn buckets_cover_ten_microseconds_to_ten_seconds() {
    assert_eq!(CALL_BUCKETS.first(), Some(&0.00001));
    assert_eq!(CALL_BUCKETS.last(), Some(&10.0));
    assert!(CALL_BUCKETS
        .windows(2)
        .all(|w| w[0] < w[1] && w[1] / w[0] <= 2.5 + 1e-9));
}

#[test]
fn the_state_gauges_show_what_was_sampled() {
    let m = Metrics::new(true, "shop");
    let text = m.render(State {
        applications: 2,
        connections: 3,
        sessions: 5,
        logged_in: true,
        held_pin_rejected: true,
        token_present: true,
        credential_generation: 7,
        config_generation: 4,
    });
    for (series, v) in [
        ("hsmbridge_sidecar_applications", 2.0),
        ("hsmbridge_sidecar_connections", 3.0),
        ("hsmbridge_sidecar_sessions", 5.0),
        ("hsmbridge_sidecar_logged_in", 1.0),
        ("hsmbridge_sidecar_held_pin_rejected", 1.0),
        ("hsmbridge_sidecar_token_present", 1.0),
        ("hsmbridge_sidecar_credential_generation", 7.0),
        ("hsmbridge_sidecar_config_generation", 4.0),
    ] {
        assert_eq!(value(&text, series), Some(v), "{series} in\n{text}");
    }
    assert!(text.contains("hsmbridge_sidecar_info{version=\""), "{text}");
    assert!(text.contains("partition=\"shop\"} 1"), "{text}");
}

#[test]
fn off_records_nothing() {
    let m = Metrics::new(false, "");
    m.call_started();
    m.call_done("C_Sign", CKR_OK, Duration::from_micros(60));
    m.frame_bytes(100, 100);
    let text = m.render(State::default());
    assert!(!text.contains("C_Sign"), "{text}");
    assert_eq!(value(&text, "hsmbridge_sidecar_received_bytes_total"), Some(0.0));
}
