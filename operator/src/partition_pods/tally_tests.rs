use serde_json::json;

use super::*;

fn pod(name: &str, partitions: &str, phase: &str, ip: Option<&str>, ports: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "team-a",
            "labels": {"hsmbridge.io/inject": "true"},
            "annotations": {"hsmbridge.io/partition": partitions, "hsmbridge.io/inject-status": "injected"}},
        "spec": {"containers": [
            {"name": "hsm-sidecar", "image": "s:1", "ports": ports},
            {"name": "app", "image": "a:1", "ports": [{"name": "http", "containerPort": 8080}]}
        ]},
        "status": {"phase": phase, "podIP": ip}
    }))
    .expect("test pod")
}

fn metrics(port: i32) -> serde_json::Value {
    json!([{"name": "hsm-metrics", "containerPort": port, "protocol": "TCP"}])
}

#[test]
fn running_pods_of_the_partition_are_asked_on_their_metrics_port() {
    let pods = [
        pod("a", "payments", "Running", Some("10.0.0.5"), metrics(17320)),
        pod("b", "audit", "Running", Some("10.0.0.6"), metrics(17320)),
        pod("c", "payments", "Pending", None, metrics(17320)),
        pod("d", "payments", "Succeeded", Some("10.0.0.7"), metrics(17320)),
        pod("e", "payments", "Running", Some("fd00::9"), metrics(9100)),
    ];
    let p = plan(&pods, "payments");
    assert_eq!(
        p.scrape,
        [
            "10.0.0.5:17320".parse().expect("addr"),
            "[fd00::9]:9100".parse().expect("addr")
        ]
    );
    assert_eq!(p.unknown, 0, "pods that do not run are not counted");
    assert_eq!(plan(&pods, "audit").scrape, ["10.0.0.6:17320".parse().expect("addr")]);
    assert_eq!(plan(&pods, "nobody"), Plan::default());
}

#[test]
fn the_second_partition_s_sidecar_has_its_own_port() {
    let ports = json!([
        {"name": "hsm-metrics", "containerPort": 17320},
        {"name": "hsm-metrics-1", "containerPort": 17321}
    ]);
    let pods = [pod("a", "payments, audit", "Running", Some("10.0.0.5"), ports)];
    assert_eq!(plan(&pods, "audit").scrape, ["10.0.0.5:17321".parse().expect("addr")]);
    assert_eq!(
        plan(&pods, "payments").scrape,
        ["10.0.0.5:17320".parse().expect("addr")]
    );
}

#[test]
fn no_ip_or_no_metrics_port_is_unknown() {
    let pods = [
        pod("a", "payments", "Running", None, metrics(17320)),
        // Injected before sidecars had a metrics port.
        pod("b", "payments", "Running", Some("10.0.0.6"), json!([])),
        pod("c", "payments", "Running", Some("not-an-ip"), metrics(17320)),
        // The first partition's port only: the second has none.
        pod("d", "audit,payments", "Running", Some("10.0.0.8"), metrics(17320)),
    ];
    let p = plan(&pods, "payments");
    assert_eq!((p.scrape.len(), p.unknown), (0, 4), "{p:?}");
}

#[test]
fn at_most_200_pods_are_asked_the_rest_are_unknown() {
    let pods: Vec<Pod> = (0..230)
        .map(|i| {
            pod(
                &format!("p{i}"),
                "payments",
                "Running",
                Some(&format!("10.0.{}.{}", i / 200, i % 200 + 1)),
                metrics(17320),
            )
        })
        .collect();
    let p = plan(&pods, "payments");
    assert_eq!((p.scrape.len(), p.unknown), (MAX_SCRAPES, 30));
}

#[test]
fn states() {
    let at = Expected {
        credential: 2,
        config: 3,
    };
    let r = |credential, config| Some(Reported { credential, config });
    assert_eq!(state(at, r(2, 3)), State::Current);
    assert_eq!(state(at, r(1, 3)), State::Behind, "an older credential");
    assert_eq!(state(at, r(2, 2)), State::Behind, "an older configuration");
    assert_eq!(state(at, r(3, 3)), State::Current, "the status has not caught up yet");
    assert_eq!(state(at, None), State::Unknown);

    let mut counts = Counts::default();
    for s in [State::Current, State::Behind, State::Behind, State::Unknown] {
        counts.add(s);
    }
    assert_eq!(
        counts,
        Counts {
            current: 1,
            behind: 2,
            unknown: 1
        }
    );
    assert_eq!(State::ALL.map(|s| counts.get(s)), [1, 2, 1]);
}
