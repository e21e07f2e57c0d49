//! The whole pod after injection: what is added where, on old and new API servers.

use super::test_support::*;

#[test]
fn old_server_gets_a_regular_sidecar_container_first() {
    let out = injected(&app_pod(), &partitions(vec![partition("payments", json!({}))]), OLD);
    let spec = out.spec.as_ref().expect("spec");
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["hsm-sidecar", "app"]);
    let init: Vec<&str> = spec.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(init, ["hsmbridge-shim"]);

    let sidecar = &spec.containers[0];
    assert_eq!(
        sidecar.image.as_deref(),
        Some("registry.example/hsm-sidecar-primus:1.0")
    );
    assert_eq!(
        sidecar.command.as_deref(),
        Some(
            &strings(&[
                "hsm-sidecar",
                "serve",
                "--module",
                "/usr/local/primus/lib/libprimusP11.so",
                "--socket",
                "/var/run/hsmbridge/pkcs11.sock",
                "--pin-file",
                "/etc/hsmbridge/credentials/pin",
                "--health-addr",
                "0.0.0.0:17310",
                "--metrics-addr",
                "0.0.0.0:17320",
                "--watch-config",
                "/etc/hsmbridge/provider",
            ])[..]
        )
    );
    let ports = sidecar.ports.as_ref().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("hsm-metrics"));
    assert_eq!(ports[0].container_port, 17320);
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    assert_eq!(sidecar.restart_policy, None);
    assert_eq!(sidecar.startup_probe, None);
    let probe = sidecar.readiness_probe.as_ref().expect("readiness probe");
    assert_eq!(probe.grpc, None, "1.20 has no gRPC probes");
    assert_eq!(probe.tcp_socket, None, "readiness follows the backend, not the port");
    assert_eq!(
        probe.exec.as_ref().and_then(|e| e.command.as_deref()),
        Some(
            &strings(&[
                "hsm-sidecar",
                "probe",
                "--addr",
                "127.0.0.1:17310",
                "--timeout-secs",
                "2"
            ])[..]
        )
    );
    assert_eq!((probe.period_seconds, probe.timeout_seconds), (Some(5), Some(3)));
    assert_eq!(
        env(sidecar),
        BTreeMap::from([
            ("HSMBRIDGE_POD_NAMESPACE".into(), "".into()),
            ("HSMBRIDGE_POD_NAME".into(), "".into()),
            ("HSMBRIDGE_PARTITION".into(), "payments".into()),
            (
                "SECUROSYS_PKCS11_CONF".into(),
                "/etc/hsmbridge/provider/primus.cfg".into()
            ),
            (
                "SECUROSYS_SECRETS_CONF".into(),
                "/etc/hsmbridge/credentials/secrets.cfg".into()
            ),
        ])
    );
    assert_eq!(
        mounts(sidecar),
        BTreeMap::from([
            ("hsmbridge-socket".into(), ("/var/run/hsmbridge".into(), false)),
            (
                "hsmbridge-credentials".into(),
                ("/etc/hsmbridge/credentials".into(), true)
            ),
            ("hsmbridge-provider".into(), ("/etc/hsmbridge/provider".into(), true)),
            ("hsmbridge-tmp".into(), ("/tmp".into(), false)),
        ])
    );
    let sc = sidecar.security_context.as_ref().expect("securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(strings(&["ALL"]))
    );
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );

    let shim = container(&spec.init_containers, "hsmbridge-shim");
    assert_eq!(shim.image.as_deref(), Some("registry.example/hsmbridge-shim:1.0"));
    assert_eq!(
        shim.command.as_deref(),
        Some(&strings(&["hsm-sidecar", "install-shim", "--to", "/opt/hsmbridge/lib"])[..])
    );
    assert_eq!(
        mounts(shim),
        BTreeMap::from([("hsmbridge-lib".into(), ("/opt/hsmbridge/lib".into(), false))])
    );
    assert!(shim.security_context.as_ref().and_then(|s| s.read_only_root_filesystem) == Some(true));

    let app = &spec.containers[1];
    assert_eq!(
        env(app),
        BTreeMap::from([
            ("HSMBRIDGE_SOCKET".into(), "/var/run/hsmbridge/pkcs11.sock".into()),
            ("HSMBRIDGE_CONTAINER".into(), "app".into()),
            (
                "PKCS11_MODULE_PATH".into(),
                "/opt/hsmbridge/lib/libhsmbridge_pkcs11.so".into()
            ),
        ])
    );
    assert_eq!(
        mounts(app),
        BTreeMap::from([
            ("hsmbridge-lib".into(), ("/opt/hsmbridge/lib".into(), true)),
            ("hsmbridge-socket".into(), ("/var/run/hsmbridge".into(), true)),
        ])
    );
    assert_eq!(app.security_context, None, "app containers keep their own settings");

    let secret = volume(&out, "hsmbridge-credentials")
        .secret
        .as_ref()
        .expect("secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("payments-credentials"));
    assert_eq!(secret.default_mode, Some(0o400));
    let cm = volume(&out, "hsmbridge-provider")
        .config_map
        .as_ref()
        .expect("configmap volume");
    assert_eq!(cm.name, "payments-provider");
    for v in ["hsmbridge-lib", "hsmbridge-socket", "hsmbridge-tmp"] {
        assert!(volume(&out, v).empty_dir.is_some(), "{v}");
    }
    assert_eq!(spec.security_context.as_ref().and_then(|s| s.fs_group), Some(65532));

    let annotations = out.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(
        annotations.get("hsmbridge.io/inject-status").map(String::as_str),
        Some("injected")
    );
    assert_eq!(
        annotations
            .get("kubectl.kubernetes.io/default-container")
            .map(String::as_str),
        Some("app"),
        "kubectl logs/exec keep defaulting to the app, not the sidecar"
    );
    assert_eq!(
        annotations.get("hsmbridge.io/partition").map(String::as_str),
        Some("payments")
    );
    for (key, value) in [
        ("prometheus.io/scrape", "true"),
        ("prometheus.io/port", "17320"),
        ("prometheus.io/path", "/metrics"),
    ] {
        assert_eq!(annotations.get(key).map(String::as_str), Some(value), "{key}");
    }
}

#[test]
fn the_credentials_are_mounted_only_into_the_sidecar() {
    for caps in [OLD, NEW] {
        let out = injected(&app_pod(), &partitions(vec![partition("payments", json!({}))]), caps);
        let spec = out.spec.as_ref().expect("spec");
        for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            let m = mounts(c);
            let sees = m.contains_key("hsmbridge-credentials") || m.contains_key("hsmbridge-provider");
            assert_eq!(sees, c.name == "hsm-sidecar", "{}: {m:?}", c.name);
            assert!(c.env_from.is_none());
        }
    }
}

#[test]
fn new_server_gets_a_native_sidecar() {
    let out = injected(&app_pod(), &partitions(vec![partition("payments", json!({}))]), NEW);
    let spec = out.spec.as_ref().expect("spec");
    let init: Vec<&str> = spec.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(
        init,
        ["hsmbridge-shim", "hsm-sidecar"],
        "shim copied first, then the sidecar"
    );
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app"]);

    let sidecar = container(&spec.init_containers, "hsm-sidecar");
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    let readiness = sidecar.readiness_probe.as_ref().expect("readiness");
    assert_eq!(readiness.grpc.as_ref().map(|g| g.port), Some(17310));
    assert_eq!(readiness.tcp_socket, None);
    let startup = sidecar.startup_probe.as_ref().expect("startup probe");
    assert_eq!(
        startup.tcp_socket.as_ref().map(|t| t.port.clone()),
        Some(IntOrString::Int(17310))
    );
    assert!(!out
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubectl.kubernetes.io/default-container")));
}

#[test]
fn existing_lists_are_appended_to_and_user_settings_kept() {
    let p = pod(json!({
        "metadata": {"name": "x", "namespace": NS,
            "labels": {"hsmbridge.io/inject": "true"},
            "annotations": {"hsmbridge.io/partition": "payments",
                            "kubectl.kubernetes.io/default-container": "worker"}},
        "spec": {
            "serviceAccountName": "payments-api",
            "securityContext": {"fsGroup": 1000, "runAsNonRoot": true},
            "initContainers": [{"name": "migrate", "image": "m:1"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [
                {"name": "app", "image": "app:1",
                 "env": [{"name": "HSMBRIDGE_SOCKET", "value": "/custom.sock"}, {"name": "A", "value": "1"},
                         {"name": "HSMBRIDGE_CONTAINER", "value": "signer"}],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "worker", "image": "w:1"}
            ]
        }
    }));
    for caps in [OLD, NEW] {
        let out = injected(&p, &partitions(vec![partition("payments", json!({}))]), caps);
        let spec = out.spec.as_ref().expect("spec");
        assert_eq!(spec.security_context.as_ref().and_then(|s| s.fs_group), Some(1000));
        assert_eq!(
            spec.security_context.as_ref().and_then(|s| s.run_as_non_root),
            Some(true)
        );
        let init: Vec<&str> = spec.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
        if caps.native_sidecars {
            assert_eq!(init, ["hsmbridge-shim", "hsm-sidecar", "migrate"]);
        } else {
            assert_eq!(init, ["hsmbridge-shim", "migrate"]);
        }
        assert_eq!(
            container(&spec.init_containers, "migrate").volume_mounts,
            None,
            "init containers get the shim only when named"
        );
        let vols: Vec<&str> = spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
        assert_eq!(vols[0], "data");
        assert_eq!(vols.len(), 6);

        let app = regular(spec, "app");
        let e = env(app);
        assert_eq!(e["HSMBRIDGE_SOCKET"], "/custom.sock", "the container's own value wins");
        assert_eq!(e["A"], "1");
        assert_eq!(e["PKCS11_MODULE_PATH"], APP_MODULE_PATH);
        assert_eq!(e["HSMBRIDGE_CONTAINER"], "signer", "the container's own claim is kept");
        assert_eq!(app.env.as_ref().map(Vec::len), Some(4), "no duplicate entries");
        let m = mounts(app);
        assert_eq!(m.len(), 3);
        assert_eq!(m["data"], ("/data".into(), false));

        let worker = regular(spec, "worker");
        assert_eq!(env(worker)["HSMBRIDGE_SOCKET"], SOCKET_PATH);
        assert_eq!(env(worker)["HSMBRIDGE_CONTAINER"], "worker");
        assert_eq!(
            out.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_DEFAULT_CONTAINER))
                .map(String::as_str),
            Some("worker"),
            "an existing default-container annotation is kept"
        );
    }
}

#[test]
fn pod_without_annotations_map_or_security_context() {
    // Partition selected by an annotation means there are annotations; build the pod by hand
    // to check the other branch of the patch (no securityContext at all).
    let p = app_pod();
    assert!(p.spec.as_ref().is_some_and(|s| s.security_context.is_none()));
    let out = injected(&p, &partitions(vec![partition("payments", json!({}))]), OLD);
    assert_eq!(
        out.spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group),
        Some(65532)
    );

    let mut p = app_pod();
    p.spec.as_mut().expect("spec").security_context = Some(Default::default());
    let out = injected(&p, &partitions(vec![partition("payments", json!({}))]), OLD);
    assert_eq!(
        out.spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group),
        Some(65532)
    );
}

#[test]
fn several_partitions_get_one_sidecar_each() {
    let mut p = app_pod();
    p.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("hsmbridge.io/partition".into(), "payments,audit".into());
    let parts = partitions(vec![partition("payments", json!({})), partition("audit", json!({}))]);
    let out = injected(&p, &parts, OLD);
    let spec = out.spec.as_ref().expect("spec");
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["hsm-sidecar", "hsm-sidecar-audit", "app"]);
    let second = &spec.containers[1];
    let cmd = second.command.clone().unwrap_or_default().join(" ");
    assert!(cmd.contains("--socket /var/run/hsmbridge/pkcs11-audit.sock"), "{cmd}");
    assert!(cmd.contains("--health-addr 0.0.0.0:17311"), "{cmd}");
    assert!(cmd.contains("--metrics-addr 0.0.0.0:17321"), "{cmd}");
    assert!(cmd.contains("--watch-config /etc/hsmbridge/provider"), "{cmd}");
    let port = |c: &Container| {
        let p = c.ports.as_ref().and_then(|p| p.first()).expect("a port");
        (p.name.clone().unwrap_or_default(), p.container_port)
    };
    assert_eq!(port(&spec.containers[0]), ("hsm-metrics".into(), 17320));
    assert_eq!(port(second), ("hsm-metrics-1".into(), 17321));
    assert_eq!(env(second)["HSMBRIDGE_PARTITION"], "audit");
    assert_eq!(env(&spec.containers[0])["HSMBRIDGE_PARTITION"], "payments");
    // Prometheus is pointed at the first sidecar.
    assert_eq!(
        out.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("prometheus.io/port"))
            .map(String::as_str),
        Some("17320")
    );
    assert_eq!(
        mounts(second)["hsmbridge-credentials-1"],
        ("/etc/hsmbridge/credentials".into(), true)
    );
    assert_eq!(
        volume(&out, "hsmbridge-credentials-1")
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.clone()),
        Some("audit-credentials".into())
    );
    assert_eq!(
        volume(&out, "hsmbridge-provider-1")
            .config_map
            .as_ref()
            .map(|c| c.name.clone()),
        Some("audit-provider".into())
    );
    // The app talks to the first partition by default.
    assert_eq!(env(&spec.containers[2])["HSMBRIDGE_SOCKET"], SOCKET_PATH);
}

#[test]
fn the_injected_pod_is_left_alone_afterwards() {
    let out = injected(&app_pod(), &partitions(vec![partition("payments", json!({}))]), NEW);
    assert_eq!(annotations::parse(&out.metadata), Ok(Parsed::AlreadyInjected));
}

#[test]
fn the_sidecar_knows_its_pod_from_the_downward_api() {
    for caps in [OLD, NEW] {
        let out = injected(&app_pod(), &partitions(vec![partition("payments", json!({}))]), caps);
        let spec = out.spec.as_ref().expect("spec");
        let sidecar = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == "hsm-sidecar")
            .expect("sidecar");
        let field = |name: &str| {
            let var = sidecar.env.iter().flatten().find(|e| e.name == name).expect(name);
            assert_eq!(var.value, None, "{name}");
            var.value_from
                .as_ref()
                .and_then(|f| f.field_ref.as_ref())
                .map(|f| f.field_path.clone())
        };
        assert_eq!(field("HSMBRIDGE_POD_NAMESPACE").as_deref(), Some("metadata.namespace"));
        assert_eq!(field("HSMBRIDGE_POD_NAME").as_deref(), Some("metadata.name"));
        // Only the sidecar learns the partition; only the apps get HSMBRIDGE_CONTAINER.
        for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            let e = env(c);
            assert_eq!(
                e.contains_key("HSMBRIDGE_PARTITION"),
                c.name == "hsm-sidecar",
                "{}",
                c.name
            );
            assert_eq!(e.contains_key("HSMBRIDGE_CONTAINER"), c.name == "app", "{}", c.name);
            assert_eq!(c.ports.is_some(), c.name == "hsm-sidecar", "{}", c.name);
        }
    }
}

#[test]
fn a_pod_that_sets_its_own_scraping_keeps_it() {
    for (key, value) in [
        ("prometheus.io/scrape", "false"),
        ("prometheus.io/port", "8080"),
        ("prometheus.io/path", "/stats"),
    ] {
        let mut p = app_pod();
        p.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        let patch = inject(
            &p,
            NS,
            &request_of(&p),
            &partitions(vec![partition("payments", json!({}))]),
            &settings(),
            OLD,
        )
        .expect("injection");
        let touched: Vec<String> = patch
            .0
            .iter()
            .map(|op| op.path().to_string())
            .filter(|path| path.contains("prometheus.io"))
            .collect();
        assert_eq!(touched, Vec::<String>::new(), "with {key}");
        let out = injected(&p, &partitions(vec![partition("payments", json!({}))]), OLD);
        let annotations = out.metadata.annotations.expect("annotations");
        assert_eq!(annotations.get(key).map(String::as_str), Some(value));
        assert_eq!(
            annotations.keys().filter(|k| k.starts_with("prometheus.io/")).count(),
            1,
            "{annotations:?}"
        );
    }
}

#[test]
fn the_scrape_annotations_follow_the_metrics_port_setting() {
    let p = app_pod();
    let s = Settings {
        metrics_port: 9100,
        ..settings()
    };
    let patch = inject(
        &p,
        NS,
        &request_of(&p),
        &partitions(vec![partition("payments", json!({}))]),
        &s,
        NEW,
    )
    .expect("injection");
    let mut doc = serde_json::to_value(&p).expect("pod to json");
    json_patch::patch(&mut doc, &patch).expect("patch applies");
    assert_eq!(doc["metadata"]["annotations"]["prometheus.io/port"], "9100");
    let sidecar = &doc["spec"]["initContainers"][1];
    assert_eq!(sidecar["ports"][0]["containerPort"], 9100);
    let cmd: Vec<&str> = sidecar["command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        cmd.windows(2).any(|w| w == ["--metrics-addr", "0.0.0.0:9100"]),
        "{cmd:?}"
    );
}

#[test]
fn sidecar_ports_that_would_clash_are_denied() {
    // Health ports 17310.., metrics ports 17320..: the 11th sidecar's health port is the first's
    // metrics port.
    let names: Vec<String> = (0..11).map(|i| format!("p{i}")).collect();
    let mut p = app_pod();
    p.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("hsmbridge.io/partition".into(), names.join(","));
    let parts = partitions(names.iter().map(|n| partition(n, json!({}))).collect());
    let d = denial(&p, &parts, OLD);
    assert_eq!(
        d,
        Denial::PortsClash {
            count: 11,
            port: 17320,
            first: 0,
            second: 10
        }
    );
    assert!(d.to_string().contains("--sidecar-metrics-port"), "{d}");
    // Ten fit.
    p.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("hsmbridge.io/partition".into(), names[..10].join(","));
    let out = injected(&p, &parts, OLD);
    assert_eq!(out.spec.expect("spec").containers.len(), 11);
}

#[test]
fn a_partition_cannot_set_the_sidecar_s_identity() {
    for name in ["HSMBRIDGE_POD_NAME", "HSMBRIDGE_POD_NAMESPACE", "HSMBRIDGE_PARTITION"] {
        let part = partition(
            "payments",
            json!({"spec": {"sidecar": {"env": [{"name": name, "value": "forged"}]}}}),
        );
        let d = denial(&app_pod(), &partitions(vec![part]), NEW);
        assert!(
            matches!(&d, Denial::InvalidSidecar { problems, .. } if problems.contains(name) && problems.contains("reserved")),
            "{name}: {d}"
        );
    }
}
