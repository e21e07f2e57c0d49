//! Injection end to end on a real API server (kube-apiserver 1.20.2) with real helm 3.10:
//!
//! 1. `helm install` the chart (webhook by URL at 127.0.0.1, failurePolicy Fail);
//! 2. `hsm-operator run` serves the webhook under the chart's ServiceAccount, patches the
//!    caBundle, and enrolls a `pkcs11` partition (the test plays the kubelet for the Job);
//! 3. a labelled pod is created; its STORED spec carries the shim init container, the sidecar
//!    (the only container that mounts the credential Secret and the provider ConfigMap), the
//!    socket volume, the env and mounts of the app container, the restricted securityContexts;
//! 4. that stored pod is run on this machine (`support::pod_runner`): the init copy of the shim,
//!    the sidecar from the pod's command line, then the app container's command, pkcs11-tool
//!    through the shim, which generates an EC P-256 key, signs 32 bytes and verifies, logging in
//!    without any PIN (managed mode); openssl verifies the signature independently;
//! 5. the webhook denies a missing partition and a ServiceAccount the partition does not allow,
//!    with messages that name them; an unlabelled pod is stored untouched;
//! 6. `helm uninstall` keeps the CRD and leaves nothing labelled with the release.
//!
//! The stored pod (YAML) and the signature are printed and written to `target/e2e-injection/`.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use support::chart;
use support::injection::{app_pod, Injection, APP_SERVICE_ACCOUNT, PARTITION, SHIM_IMAGE, TOKEN_LABEL};
use support::pod_runner::{self, expand, remap};
use support::{paths, SIDECAR_IMAGE};

const NS: &str = "team-a";
const POD: &str = "signer";

fn say(s: &str) {
    println!("e2e-injection: {s}");
}

/// The app container's command: pkcs11-tool through `$(PKCS11_MODULE_PATH)` (expanded by the
/// kubelet from the env the webhook injected), `--login` without a PIN.
fn signer_command() -> Vec<String> {
    let script = format!(
        r#"set -eu
p11() {{ pkcs11-tool --module $(PKCS11_MODULE_PATH) --token-label {TOKEN_LABEL} "$@"; }}
head -c 32 /dev/urandom >/work/data.bin
p11 --login --keypairgen --key-type EC:prime256v1 --label app-key --id a1
p11 --login --sign --mechanism ECDSA --id a1 --input-file /work/data.bin --output-file /work/signature.der --signature-format openssl
p11 --verify --mechanism ECDSA --id a1 --input-file /work/data.bin --signature-file /work/signature.der --signature-format openssl
p11 --read-object --type pubkey --id a1 --output-file /work/public.der"#
    );
    vec!["sh".into(), "-c".into(), script]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_pod_is_injected_and_signs_through_the_shim() {
    let mut env = Injection::start(NS, say).await;

    // ---- a labelled pod: the stored spec -------------------------------------------------
    let command = signer_command();
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let created = env
        .create_pod(&app_pod(POD, true, Some(PARTITION), APP_SERVICE_ACCOUNT, &command))
        .await;
    if let Err((code, message)) = created {
        panic!("the labelled pod was refused (HTTP {code}): {message}");
    }
    let stored = env.stored_pod(POD).await;
    check_injected(&stored, &command);
    let yaml = pod_yaml(&stored);
    let out_dir = paths::profile_dir().parent().expect("target/").join("e2e-injection");
    std::fs::create_dir_all(&out_dir).expect("creating target/e2e-injection");
    std::fs::write(out_dir.join("mutated-pod.yaml"), &yaml).expect("writing mutated-pod.yaml");
    say(&format!(
        "stored pod {NS}/{POD} (managedFields omitted), saved to {}:\n{yaml}",
        out_dir.join("mutated-pod.yaml").display()
    ));

    // ---- run it locally --------------------------------------------------------------------
    let pin = env
        .fx
        .secret_value(&format!("{PARTITION}-credentials"), "pin")
        .await
        .expect("the credential Secret has a pin");
    let pin = String::from_utf8(pin).expect("the pin is text");
    assert!(
        pin.len() >= 16,
        "the enrolled PIN is suspiciously short ({} bytes)",
        pin.len()
    );
    let softhsm_conf = env.token.conf().as_os_str().to_owned();
    let mut pod = pod_runner::start(
        &env.fx.api,
        &env.fx.client,
        NS,
        &stored,
        &[("SOFTHSM2_CONF", softhsm_conf)],
    )
    .await;
    let sidecar = &pod.sidecar_runs[0];
    say(&format!(
        "init container {}: `{}`",
        pod.init_runs[0].name,
        pod.init_runs[0].argv.join(" ")
    ));
    say(&format!(
        "sidecar {}: `{}` (ready)",
        sidecar.name,
        sidecar.argv.join(" ")
    ));
    assert!(
        sidecar.argv.iter().all(|a| !a.contains(&pin)),
        "the PIN is on the sidecar's command line"
    );

    let run = pod.run_app("app");
    assert!(
        run.output.status.success(),
        "the app failed:\n{}\n--- sidecar ---\n{}",
        run.describe(),
        pod.sidecar_log("hsm-sidecar")
    );
    let module = run.ran.env.get("PKCS11_MODULE_PATH").cloned().unwrap_or_default();
    assert!(
        module.ends_with("/libhsmbridge_pkcs11.so"),
        "PKCS11_MODULE_PATH is {module:?}"
    );
    assert!(
        run.ran.argv.join(" ").contains(&format!("--module {module}")),
        "pkcs11-tool did not load the shim from the env: {:?}",
        run.ran.argv
    );
    for (k, v) in &run.ran.env {
        assert!(
            !v.contains(&pin) && !k.contains(&pin),
            "the PIN is in the app's env ({k})"
        );
    }
    assert!(
        run.ran
            .argv
            .iter()
            .all(|a| !a.contains(&pin) && !a.contains("--pin") && !a.contains("--so-pin")),
        "a PIN is in the app's args"
    );
    assert!(
        !run.ran.env.contains_key("SOFTHSM2_CONF"),
        "the app sees the token's config: {:?}",
        run.ran.env
    );
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&run.output.stdout),
        String::from_utf8_lossy(&run.output.stderr)
    );
    assert!(!output.contains(&pin), "the PIN appears in the app's output");
    say(&format!("app: env {:?}", run.ran.env));
    say(&format!("app: pkcs11-tool output:\n{}", output.trim_end()));

    let work = pod.volume_dir("work").to_path_buf();
    let signature = std::fs::read(work.join("signature.der")).expect("the app wrote /work/signature.der");
    openssl_verify(&work);
    let hex: String = signature.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(out_dir.join("signature.hex"), format!("{hex}\n")).expect("writing signature.hex");
    say(&format!(
        "ECDSA P-256 signature over 32 random bytes, made through the shim in the locally run pod ({} bytes DER), verified by pkcs11-tool and by openssl:\n{hex}",
        signature.len()
    ));
    drop(pod);

    // ---- what the webhook refuses, and what it never sees --------------------------------------
    let sleep = ["sleep", "3600"];
    let (code, message) = env
        .create_pod(&app_pod(
            "no-partition",
            true,
            Some("missing-partition"),
            APP_SERVICE_ACCOUNT,
            &sleep,
        ))
        .await
        .expect_err("a pod naming a missing partition was admitted");
    assert!(
        message.contains("denied the request")
            && message.contains("\"missing-partition\"")
            && message.contains("not found"),
        "missing partition: HTTP {code}: {message}"
    );
    say(&format!("missing partition: HTTP {code}: {message}"));

    let (code, message) = env
        .create_pod(&app_pod("wrong-sa", true, Some(PARTITION), "other", &sleep))
        .await
        .expect_err("a pod of a ServiceAccount the partition does not allow was admitted");
    assert!(
        message.contains("denied the request")
            && message.contains("\"other\"")
            && message.contains(PARTITION)
            && message.contains("\"app\""),
        "ServiceAccount not allowed: HTTP {code}: {message}"
    );
    say(&format!("ServiceAccount not allowed: HTTP {code}: {message}"));

    let plain = app_pod("unlabelled", false, Some(PARTITION), APP_SERVICE_ACCOUNT, &sleep);
    env.create_pod(&plain)
        .await
        .unwrap_or_else(|(code, m)| panic!("an unlabelled pod was refused (HTTP {code}): {m}"));
    let stored_plain = env.stored_pod("unlabelled").await;
    check_untouched(&stored_plain, &plain);
    let metrics = env.operator.metrics();
    assert_eq!(
        requests(&metrics, "skipped"),
        Some(0.0),
        "the webhook was called for a pod it should never see:\n{metrics}"
    );
    assert_eq!(requests(&metrics, "injected"), Some(1.0), "{metrics}");
    assert_eq!(requests(&metrics, "denied"), Some(2.0), "{metrics}");
    say("unlabelled pod: stored as sent (no sidecar, no init container, no annotation); the webhook never saw it");

    // ---- helm uninstall ----------------------------------------------------------------------
    let manifest = chart::manifest(&env.fx.api);
    let tls_secret_in_chart = manifest.contains("kind: Secret\nmetadata:\n  name: hsmbridge-webhook-tls");
    assert!(tls_secret_in_chart, "the chart no longer creates Secret hsmbridge-webhook-tls: the operator would create it, unlabelled, and uninstall would leave it");
    // The operator keeps running through the uninstall, as a replica still terminating would:
    // it must not recreate anything the release owned.
    let out = chart::uninstall(&env.fx.api);
    say(&format!("helm uninstall: {}", out.trim()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.operator.terminate();
    let api = &env.fx.api;
    api.kubectl_ok(&["get", "crd", chart::CRD]);
    api.kubectl_ok(&["-n", NS, "get", "hsmpartition", PARTITION]);
    let labelled = chart::labelled(api);
    assert_eq!(
        labelled,
        vec![format!("CustomResourceDefinition//{}", chart::CRD)],
        "objects labelled with the release after helm uninstall"
    );
    let left: Vec<String> = chart::namespace_contents(api, chart::NAMESPACE)
        .into_iter()
        .filter(|o| {
            !(o == "ServiceAccount/default"
                || o == "ConfigMap/kube-root-ca.crt"
                || o.starts_with("Secret/default-token-"))
        })
        .collect();
    // The leader-election Lease is the chart's (templates/lease.yaml): uninstall removes it too.
    assert_eq!(
        left,
        Vec::<String>::new(),
        "objects left in {} after helm uninstall",
        chart::NAMESPACE
    );
    let configs = api.kubectl(&["get", "mutatingwebhookconfiguration", "hsmbridge-injector"], None);
    assert!(
        !configs.status.success(),
        "the MutatingWebhookConfiguration survived helm uninstall"
    );
    say(&format!(
        "after helm uninstall: the CRD and the user's HsmPartition remain; labelled with the release: {labelled:?}; \
         nothing left in {} (the leader-election Lease and the TLS Secret are chart-owned and gone)",
        chart::NAMESPACE
    ));
}

/// The stored pod carries exactly what the webhook adds (on a 1.20 server: a regular sidecar
/// container first, exec readiness probe `hsm-sidecar probe`).
fn check_injected(pod: &Pod, app_command: &[&str]) {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("hsmbridge.io/inject-status").map(String::as_str),
        Some("injected"),
        "annotations: {annotations:?}"
    );
    // The first sidecar's /metrics for Prometheus (the chart's --sidecar-metrics-port default).
    for (key, value) in [
        ("prometheus.io/scrape", "true"),
        ("prometheus.io/port", "17340"),
        ("prometheus.io/path", "/metrics"),
    ] {
        assert_eq!(
            annotations.get(key).map(String::as_str),
            Some(value),
            "annotations: {annotations:?}"
        );
    }
    let spec = pod.spec.as_ref().expect("stored pod has a spec");

    let volumes: BTreeMap<&str, _> = spec.volumes.iter().flatten().map(|v| (v.name.as_str(), v)).collect();
    for name in ["hsmbridge-lib", "hsmbridge-socket", "hsmbridge-tmp", "work"] {
        assert!(
            volumes.get(name).is_some_and(|v| v.empty_dir.is_some()),
            "volume {name} should be an emptyDir: {volumes:?}"
        );
    }
    let creds = volumes
        .get("hsmbridge-credentials")
        .and_then(|v| v.secret.as_ref())
        .expect("credential Secret volume");
    assert_eq!(
        creds.secret_name.as_deref(),
        Some(format!("{PARTITION}-credentials").as_str())
    );
    assert_eq!(creds.default_mode, Some(0o400), "credential volume mode");
    let provider = volumes
        .get("hsmbridge-provider")
        .and_then(|v| v.config_map.as_ref())
        .expect("provider ConfigMap volume");
    assert_eq!(provider.name, format!("{PARTITION}-provider"));
    assert_eq!(
        spec.security_context.as_ref().and_then(|s| s.fs_group),
        Some(65532),
        "pod fsGroup"
    );

    let init = spec.init_containers.clone().unwrap_or_default();
    assert_eq!(init.len(), 1, "init containers: {init:?}");
    let shim = &init[0];
    assert_eq!(shim.name, "hsmbridge-shim");
    assert_eq!(shim.image.as_deref(), Some(SHIM_IMAGE));
    assert_eq!(
        shim.command.clone().unwrap_or_default(),
        ["hsm-sidecar", "install-shim", "--to", "/opt/hsmbridge/lib"],
        "the shim's init container installs it with hsm-sidecar (no shell in the image)"
    );
    assert!(
        has_mount(shim, "hsmbridge-lib", "/opt/hsmbridge/lib"),
        "the shim init container mounts hsmbridge-lib"
    );
    assert_restricted(shim);

    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["hsm-sidecar", "app"],
        "containers (1.20: the sidecar is a regular container, first)"
    );
    let sidecar = &spec.containers[0];
    assert_eq!(sidecar.image.as_deref(), Some(SIDECAR_IMAGE));
    let argv = sidecar.command.clone().unwrap_or_default().join(" ");
    let want = format!(
        "hsm-sidecar serve --module {} --socket /var/run/hsmbridge/pkcs11.sock --pin-file /etc/hsmbridge/credentials/pin --health-addr 0.0.0.0:",
        paths::softhsm_module().display()
    );
    assert!(
        argv.starts_with(&want),
        "sidecar command:\n  {argv}\nwant it to start with\n  {want}"
    );
    assert!(
        argv.contains(" --metrics-addr 0.0.0.0:17340 --watch-config /etc/hsmbridge/provider"),
        "sidecar command: {argv}"
    );
    let ports: Vec<(Option<&str>, i32, Option<&str>)> = sidecar
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.container_port, p.protocol.as_deref()))
        .collect();
    assert_eq!(ports, [(Some("hsm-metrics"), 17340, Some("TCP"))], "sidecar ports");
    let fields: BTreeMap<&str, &str> = sidecar
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e.name.as_str(),
                e.value_from.as_ref()?.field_ref.as_ref()?.field_path.as_str(),
            ))
        })
        .collect();
    assert_eq!(
        fields,
        BTreeMap::from([
            ("HSMBRIDGE_POD_NAME", "metadata.name"),
            ("HSMBRIDGE_POD_NAMESPACE", "metadata.namespace")
        ]),
        "sidecar env from the downward API"
    );
    for (volume, path) in [
        ("hsmbridge-socket", "/var/run/hsmbridge"),
        ("hsmbridge-credentials", "/etc/hsmbridge/credentials"),
        ("hsmbridge-provider", "/etc/hsmbridge/provider"),
        ("hsmbridge-tmp", "/tmp"),
    ] {
        assert!(
            has_mount(sidecar, volume, path),
            "the sidecar mounts {volume} at {path}: {:?}",
            sidecar.volume_mounts
        );
    }
    let probe = sidecar
        .readiness_probe
        .as_ref()
        .and_then(|p| p.exec.as_ref())
        .and_then(|e| e.command.clone())
        .unwrap_or_default();
    assert!(
        probe.starts_with(&["hsm-sidecar".to_owned(), "probe".to_owned(), "--addr".to_owned()]),
        "1.20 has no gRPC probes: the sidecar's readiness probe runs hsm-sidecar probe: {:?}",
        sidecar.readiness_probe
    );
    assert_restricted(sidecar);
    // The chart's default injection.resources, through --injected-resources.
    for c in [shim, sidecar] {
        let quantities = |list: &Option<BTreeMap<String, Quantity>>| -> Vec<(String, String)> {
            list.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect()
        };
        let r = c
            .resources
            .as_ref()
            .unwrap_or_else(|| panic!("container {} has no resources", c.name));
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            quantities(&r.requests),
            vec![pair("cpu", "20m"), pair("memory", "32Mi")],
            "{} requests",
            c.name
        );
        assert_eq!(
            quantities(&r.limits),
            vec![pair("memory", "128Mi")],
            "{} limits",
            c.name
        );
    }

    // The credential Secret and the provider config reach the sidecar only.
    for c in init.iter().chain(&spec.containers).filter(|c| c.name != "hsm-sidecar") {
        for m in c.volume_mounts.iter().flatten() {
            assert!(
                m.name != "hsmbridge-credentials" && m.name != "hsmbridge-provider",
                "container {} mounts {} ({})",
                c.name,
                m.name,
                m.mount_path
            );
        }
        assert!(c.env_from.is_none(), "container {} has envFrom", c.name);
    }

    let app = &spec.containers[1];
    assert_eq!(
        app.command.clone().unwrap_or_default(),
        app_command,
        "the app's command changed"
    );
    let env: BTreeMap<&str, &str> = app
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        env.get("HSMBRIDGE_SOCKET"),
        Some(&"/var/run/hsmbridge/pkcs11.sock"),
        "app env: {env:?}"
    );
    assert_eq!(
        env.get("PKCS11_MODULE_PATH"),
        Some(&"/opt/hsmbridge/lib/libhsmbridge_pkcs11.so"),
        "app env: {env:?}"
    );
    assert_eq!(env.get("HSMBRIDGE_CONTAINER"), Some(&"app"), "app env: {env:?}");
    assert!(
        app.env.iter().flatten().all(|e| e.value_from.is_none()),
        "app env refers to Secrets: {:?}",
        app.env
    );
    let read_only = |m: &VolumeMount| m.read_only == Some(true);
    let mounts = app.volume_mounts.clone().unwrap_or_default();
    for (volume, path) in [
        ("hsmbridge-lib", "/opt/hsmbridge/lib"),
        ("hsmbridge-socket", "/var/run/hsmbridge"),
    ] {
        assert!(
            mounts
                .iter()
                .any(|m| m.name == volume && m.mount_path == path && read_only(m)),
            "app mounts {volume} read-only at {path}: {mounts:?}"
        );
    }
    assert!(has_mount(app, "work", "/work"), "the app's own mount is kept");
}

fn has_mount(c: &Container, volume: &str, path: &str) -> bool {
    c.volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == volume && m.mount_path == path)
}

/// The "restricted" Pod Security Standard on an injected container.
fn assert_restricted(c: &Container) {
    let sc = c
        .security_context
        .as_ref()
        .unwrap_or_else(|| panic!("container {} has no securityContext", c.name));
    let dropped = sc
        .capabilities
        .as_ref()
        .and_then(|caps| caps.drop.clone())
        .unwrap_or_default();
    let seccomp = sc.seccomp_profile.as_ref().map(|p| p.type_.as_str());
    let ok = sc.run_as_non_root == Some(true)
        && sc.run_as_user == Some(65532)
        && sc.read_only_root_filesystem == Some(true)
        && sc.allow_privilege_escalation == Some(false)
        && sc.privileged != Some(true)
        && dropped == ["ALL"]
        && seccomp == Some("RuntimeDefault");
    assert!(ok, "container {}: securityContext is not restricted: {sc:?}", c.name);
}

/// An unlabelled pod is stored as sent: nothing added.
fn check_untouched(stored: &Pod, sent: &serde_json::Value) {
    let spec = stored.spec.as_ref().expect("stored pod has a spec");
    assert!(
        spec.init_containers.as_ref().is_none_or(Vec::is_empty),
        "init containers were added: {:?}",
        spec.init_containers
    );
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app"], "containers of the unlabelled pod");
    assert!(
        spec.containers[0].env.is_none(),
        "env was added: {:?}",
        spec.containers[0].env
    );
    assert_eq!(
        spec.containers[0].volume_mounts.as_ref().map(Vec::len),
        Some(1),
        "mounts were added"
    );
    let volumes: Vec<&str> = spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
    assert_eq!(volumes, ["work"], "volumes of the unlabelled pod");
    assert!(
        spec.security_context.as_ref().is_none_or(|s| s.fs_group.is_none()),
        "fsGroup was added"
    );
    let annotations = stored.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("hsmbridge.io/partition").map(String::as_str),
        sent["metadata"]["annotations"]["hsmbridge.io/partition"].as_str()
    );
    assert!(
        !annotations.contains_key("hsmbridge.io/inject-status"),
        "annotations: {annotations:?}"
    );
}

/// openssl checks the signature on its own, with the public key the app read through the shim
/// (`pkeyutl` over the 32 bytes as the digest: raw CKM_ECDSA signs exactly those bytes).
fn openssl_verify(work: &std::path::Path) {
    let p = |f: &str| work.join(f);
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().expect("running openssl");
        assert!(
            out.status.success(),
            "openssl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    run(&[
        "pkey",
        "-pubin",
        "-inform",
        "DER",
        "-in",
        &s(p("public.der")),
        "-out",
        &s(p("public.pem")),
    ]);
    let text = run(&["pkey", "-pubin", "-in", &s(p("public.pem")), "-noout", "-text"]);
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "not a P-256 key:\n{text}"
    );
    let verified = run(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        &s(p("public.pem")),
        "-in",
        &s(p("data.bin")),
        "-sigfile",
        &s(p("signature.der")),
    ]);
    assert!(
        verified.contains("Signature Verified Successfully"),
        "openssl: {verified}"
    );
}

/// The stored pod as YAML, without `metadata.managedFields` (bookkeeping, long).
fn pod_yaml(pod: &Pod) -> String {
    let mut v = serde_json::to_value(pod).expect("pod to JSON");
    if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
    }
    serde_yaml::to_string(&v).expect("pod to YAML")
}

/// `hsm_operator_webhook_requests_total{outcome="<outcome>"}`.
fn requests(metrics: &str, outcome: &str) -> Option<f64> {
    let prefix = format!("hsm_operator_webhook_requests_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn pod_runner_rewrites_mount_paths_once_and_expands_like_the_kubelet() {
    let mounts = vec![
        (
            "/var/run/hsmbridge".to_owned(),
            PathBuf::from("/tmp/x/volumes/hsmbridge-socket"),
        ),
        ("/work".to_owned(), PathBuf::from("/tmp/work/volumes/work")),
    ];
    assert_eq!(
        remap("/var/run/hsmbridge/pkcs11.sock", &mounts),
        "/tmp/x/volumes/hsmbridge-socket/pkcs11.sock"
    );
    assert_eq!(
        remap("cat /work/a >/work/b", &mounts),
        "cat /tmp/work/volumes/work/a >/tmp/work/volumes/work/b"
    );
    assert_eq!(
        remap("/workspace /x/work /work", &mounts),
        "/workspace /x/work /tmp/work/volumes/work"
    );
    assert_eq!(
        remap("--socket=/var/run/hsmbridge", &mounts),
        "--socket=/tmp/x/volumes/hsmbridge-socket"
    );
    let env = BTreeMap::from([("M".to_owned(), "/lib/m.so".to_owned())]);
    assert_eq!(
        expand("--module $(M) $(X) $$(M) \"$@\"", &env),
        "--module /lib/m.so $(X) $(M) \"$@\""
    );
}
