use super::*;

/// A sidecar's page as prometheus-client writes it (OpenMetrics), abridged.
const PAGE: &str = "\
# HELP hsmbridge_sidecar_info Build and partition.
# TYPE hsmbridge_sidecar_info gauge
hsmbridge_sidecar_info{version=\"0.1.0\",partition=\"payments\"} 1
# HELP hsmbridge_sidecar_credential_generation The credential generation the sidecar runs with.
# TYPE hsmbridge_sidecar_credential_generation gauge
hsmbridge_sidecar_credential_generation 3
# HELP hsmbridge_sidecar_credential_generation_x Not the one.
hsmbridge_sidecar_credential_generation_x 99
# HELP hsmbridge_sidecar_config_generation The provider configuration generation.
# TYPE hsmbridge_sidecar_config_generation gauge
hsmbridge_sidecar_config_generation 2
# EOF
";

#[test]
fn both_generations_from_an_openmetrics_page() {
    assert_eq!(
        reported(PAGE),
        Some(Reported {
            credential: 3,
            config: 2
        })
    );
}

#[test]
fn a_similar_name_is_not_the_gauge() {
    let page = "hsmbridge_sidecar_credential_generation_x 99\nhsmbridge_sidecar_config_generation 2\n";
    assert_eq!(reported(page), None);
    let page = "hsmbridge_sidecar_credential_generation_x 99\nhsmbridge_sidecar_credential_generation 4\nhsmbridge_sidecar_config_generation 2\n";
    assert_eq!(reported(page).map(|r| r.credential), Some(4));
}

#[test]
fn labels_timestamps_and_prometheus_text() {
    let page = "hsmbridge_sidecar_credential_generation{partition=\"a}b\"} 5 1700000000000\n\
                hsmbridge_sidecar_config_generation\t7.0\n";
    assert_eq!(
        reported(page),
        Some(Reported {
            credential: 5,
            config: 7
        })
    );
}

#[test]
fn missing_or_odd_values_are_no_report() {
    for page in [
        "",
        "hsmbridge_sidecar_credential_generation 1\n",
        "hsmbridge_sidecar_credential_generation 1.5\nhsmbridge_sidecar_config_generation 1\n",
        "hsmbridge_sidecar_credential_generation -1\nhsmbridge_sidecar_config_generation 1\n",
        "hsmbridge_sidecar_credential_generation NaN\nhsmbridge_sidecar_config_generation 1\n",
        "hsmbridge_sidecar_credential_generation +Inf\nhsmbridge_sidecar_config_generation 1\n",
        "hsmbridge_sidecar_credential_generation\nhsmbridge_sidecar_config_generation 1\n",
        "# hsmbridge_sidecar_credential_generation 1\nhsmbridge_sidecar_config_generation 1\n",
        "<html>not metrics</html>",
    ] {
        assert_eq!(reported(page), None, "{page:?}");
    }
}
