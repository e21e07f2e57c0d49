use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
    let map = |kv: &[(&str, &str)]| {
        (!kv.is_empty()).then(|| {
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        })
    };
    ObjectMeta {
        labels: map(labels),
        annotations: map(annotations),
        ..ObjectMeta::default()
    }
}

fn opted_in(annotations: &[(&str, &str)]) -> Result<Parsed, AnnotationError> {
    parse(&meta(&[(LABEL_INJECT, "true")], annotations))
}

fn request(partitions: &[&str]) -> InjectRequest {
    InjectRequest {
        partitions: partitions.iter().map(|s| (*s).to_owned()).collect(),
        containers: None,
        sidecar_mode: None,
    }
}

#[test]
fn without_the_label_nothing_is_read() {
    assert_eq!(parse(&meta(&[], &[])), Ok(Parsed::NotOptedIn));
    // Not opted in: even nonsense annotations are not ours to judge.
    assert_eq!(
        parse(&meta(&[], &[(PARTITION, ""), ("hsmbridge.io/bogus", "x")])),
        Ok(Parsed::NotOptedIn)
    );
    assert_eq!(
        parse(&meta(&[(LABEL_INJECT, "false")], &[(PARTITION, "p")])),
        Ok(Parsed::NotOptedIn)
    );
    assert_eq!(
        parse(&meta(&[(LABEL_INJECT, "True")], &[(PARTITION, "p")])),
        Ok(Parsed::NotOptedIn),
        "the label value is exactly \"true\", as the objectSelector matches it"
    );
}

#[test]
fn one_partition() {
    assert_eq!(
        opted_in(&[(PARTITION, "payments")]),
        Ok(Parsed::Inject(request(&["payments"])))
    );
}

#[test]
fn several_partitions_keep_their_order_and_lose_spaces() {
    assert_eq!(
        opted_in(&[(PARTITION, " payments , signing.v2,audit ")]),
        Ok(Parsed::Inject(request(&["payments", "signing.v2", "audit"])))
    );
}

#[test]
fn missing_or_empty_partition_list_is_refused() {
    assert_eq!(opted_in(&[]), Err(AnnotationError::MissingPartition));
    for value in ["", "  ", ",", "a,,b", "a,"] {
        let err = opted_in(&[(PARTITION, value)]).unwrap_err();
        assert!(
            matches!(err, AnnotationError::Malformed { key: PARTITION, .. }),
            "{value:?}: {err:?}"
        );
    }
}

#[test]
fn bad_partition_names_are_refused() {
    for value in ["Payments", "pay_ments", "-p", "p-", "a..b", &"a".repeat(254)] {
        let err = opted_in(&[(PARTITION, value)]).unwrap_err();
        assert!(
            err.to_string().contains("is not a valid partition name"),
            "{value:?}: {err}"
        );
    }
}

#[test]
fn duplicate_partition_is_refused() {
    let err = opted_in(&[(PARTITION, "a,b,a")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "annotation hsmbridge.io/partition: partition \"a\" is listed twice (value \"a,b,a\")"
    );
}

#[test]
fn containers_and_sidecar_mode() {
    assert_eq!(
        opted_in(&[(PARTITION, "p"), (CONTAINERS, "app, worker"), (SIDECAR_MODE, "native")]),
        Ok(Parsed::Inject(InjectRequest {
            partitions: vec!["p".into()],
            containers: Some(vec!["app".into(), "worker".into()]),
            sidecar_mode: Some(SidecarMode::Native),
        }))
    );
    assert_eq!(
        opted_in(&[(PARTITION, "p"), (SIDECAR_MODE, "container")]),
        Ok(Parsed::Inject(InjectRequest {
            sidecar_mode: Some(SidecarMode::Container),
            ..request(&["p"])
        }))
    );
}

#[test]
fn malformed_containers_and_mode_are_refused() {
    for (key, value) in [
        (CONTAINERS, ""),
        (CONTAINERS, "a,,b"),
        (CONTAINERS, "a,a"),
        (CONTAINERS, "a.b"), // container names are labels, not subdomains
        (CONTAINERS, "App"),
        (SIDECAR_MODE, ""),
        (SIDECAR_MODE, "sidecar"),
    ] {
        let err = opted_in(&[(PARTITION, "p"), (key, value)]).unwrap_err();
        assert!(
            matches!(&err, AnnotationError::Malformed { key: k, .. } if *k == key),
            "{key}={value:?}: {err:?}"
        );
    }
}

#[test]
fn unknown_hsmbridge_annotation_is_refused_others_are_ignored() {
    let err = opted_in(&[(PARTITION, "p"), ("hsmbridge.io/partitions", "p")]).unwrap_err();
    assert_eq!(err, AnnotationError::Unknown("hsmbridge.io/partitions".into()));
    assert!(err
        .to_string()
        .contains("hsmbridge.io/partition, hsmbridge.io/containers"));

    let err = opted_in(&[(PARTITION, "p"), (LABEL_INJECT, "true")]).unwrap_err();
    assert!(err.to_string().contains("is a label, not an annotation"), "{err}");

    assert_eq!(
        opted_in(&[(PARTITION, "p"), ("example.com/hsmbridge.io", "x"), ("team", "a")]),
        Ok(Parsed::Inject(request(&["p"])))
    );
}

#[test]
fn injected_pod_is_left_alone() {
    assert_eq!(
        opted_in(&[(PARTITION, "p"), (INJECT_STATUS, INJECTED)]),
        Ok(Parsed::AlreadyInjected)
    );
    // Even when its other annotations would be refused now: the webhook does not judge twice.
    assert_eq!(
        opted_in(&[(INJECT_STATUS, INJECTED), ("hsmbridge.io/old", "x")]),
        Ok(Parsed::AlreadyInjected)
    );
    let err = opted_in(&[(PARTITION, "p"), (INJECT_STATUS, "pending")]).unwrap_err();
    assert!(matches!(err, AnnotationError::Malformed { key: INJECT_STATUS, .. }));
}

#[test]
fn at_most_16_partitions_are_read() {
    let names = |n: usize| (0..n).map(|i| format!("p{i}")).collect::<Vec<_>>().join(",");
    let sixteen = names(MAX_PARTITIONS);
    match opted_in(&[(PARTITION, &sixteen)]) {
        Ok(Parsed::Inject(r)) => assert_eq!(r.partitions.len(), 16),
        other => panic!("16 partitions: {other:?}"),
    }
    // 10,000 names, some of them repeated and invalid: one message, about the count, without the value.
    let many = format!("{},p1,NOT_VALID", names(10_000));
    let started = std::time::Instant::now();
    let err = opted_in(&[(PARTITION, &many)]).unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        err,
        AnnotationError::TooMany {
            key: PARTITION,
            what: "partition",
            max: 16
        }
    );
    assert_eq!(
        err.to_string(),
        "annotation hsmbridge.io/partition lists more than 16 partitions; a pod may use at most 16"
    );
}

#[test]
fn at_most_64_container_names_are_read() {
    let names = (0..65).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
    let err = opted_in(&[(PARTITION, "p"), (CONTAINERS, &names)]).unwrap_err();
    assert_eq!(
        err,
        AnnotationError::TooMany {
            key: CONTAINERS,
            what: "container",
            max: 64
        }
    );
}

#[test]
fn denials_quote_at_most_256_characters_of_a_value() {
    let long = "x".repeat(10_000);
    let err = opted_in(&[(PARTITION, &format!("a,{long}A"))]).unwrap_err();
    let text = err.to_string();
    assert!(text.len() < 700, "{} bytes: {text}", text.len());
    assert!(text.contains("is not a valid partition name"), "{text}");
}
