//! The Primus provider config the operator renders (`<name>-provider` ConfigMap, `primus.cfg`),
//! parsed as libconfig, and the ppin enrollment Job that mounts it.

mod support;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::libconfig::{self, Value};
use support::{condition, int_at, primus_partition, Fixture, WAIT};

#[test]
fn libconfig_parser_reads_primus_style_configs() {
    let v = libconfig::parse(
        r#"# comment
        hsms = { hsm0 = { host = "a.example"; port = "2310"; priority = 0;
                          slots = { slot0 = { id = 3; user_name = "U"; }; }; }; };
        wait_delay = 5; // trailing
        log : { trace_level = 4L; write_syslog = false; file = "/dev/" "stderr"; /* x */ };"#,
    )
    .expect("parses");
    assert_eq!(v.get("hsms.hsm0.host").and_then(Value::as_str), Some("a.example"));
    assert_eq!(v.get("hsms.hsm0.slots.slot0.id").and_then(Value::as_int), Some(3));
    assert_eq!(v.get("log.trace_level").and_then(Value::as_int), Some(4));
    assert_eq!(v.get("log.file").and_then(Value::as_str), Some("/dev/stderr"));
    assert!(libconfig::parse("a = ;").is_err());
    assert!(libconfig::parse("a = { b = 1;").is_err());
    assert!(libconfig::parse("a = 1; a = 2;").is_err());
}

/// `(host, port, priority, [(slot id, user_name)])` of every `hsms` entry.
type Member = (String, String, i64, Vec<(i64, String)>);

fn members(cfg: &Value) -> Result<Vec<Member>, String> {
    let hsms = cfg.get("hsms").and_then(Value::entries).ok_or("no `hsms` group")?;
    let mut out = Vec::new();
    for (name, hsm) in hsms {
        let host = hsm
            .get("host")
            .and_then(Value::as_str)
            .ok_or(format!("hsms.{name}: no string `host`"))?;
        // The Primus docs: port is a string ("2310").
        let port = match hsm.get("port") {
            Some(Value::Str(s)) => s.clone(),
            other => {
                return Err(format!(
                    "hsms.{name}.port must be a string like \"2310\" (Primus docs), got {other:?}"
                ))
            }
        };
        let priority = hsm
            .get("priority")
            .and_then(Value::as_int)
            .ok_or(format!("hsms.{name}: no integer `priority`"))?;
        let slots = hsm
            .get("slots")
            .and_then(Value::entries)
            .ok_or(format!("hsms.{name}: no `slots` group"))?;
        let mut s = Vec::new();
        for (sname, slot) in slots {
            let id = slot
                .get("id")
                .and_then(Value::as_int)
                .ok_or(format!("hsms.{name}.slots.{sname}: no integer `id`"))?;
            let user = slot
                .get("user_name")
                .and_then(Value::as_str)
                .ok_or(format!("hsms.{name}.slots.{sname}: no string `user_name`"))?;
            s.push((id, user.to_owned()));
        }
        out.push((host.to_owned(), port, priority, s));
    }
    Ok(out)
}

async fn primus_cfg(fx: &Fixture, name: &str) -> (String, Value) {
    let cm = fx
        .api::<ConfigMap>()
        .get(&format!("{name}-provider"))
        .await
        .unwrap_or_else(|e| panic!("ConfigMap {name}-provider: {e}"));
    let text = cm
        .data
        .unwrap_or_default()
        .get("primus.cfg")
        .cloned()
        .unwrap_or_else(|| panic!("ConfigMap {name}-provider has no primus.cfg"));
    let parsed = libconfig::parse(&text).unwrap_or_else(|e| panic!("primus.cfg is not valid libconfig: {e}\n{text}"));
    (text, parsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primus_config_lists_every_cluster_member() {
    let mut fx = Fixture::new("primus").await;
    fx.create_setup_secret("payments-setup", "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
        .await;
    let created = fx.create_partition(&primus_partition("payments")).await;
    let uid = created["metadata"]["uid"].as_str().expect("uid").to_owned();
    fx.wait_condition("payments", "ConfigRendered", "True", Some("Rendered"))
        .await;

    let (text, cfg) = primus_cfg(&fx, "payments").await;
    eprintln!("primus.cfg:\n{text}");
    let mut got = members(&cfg).unwrap_or_else(|e| panic!("{e}\n{text}"));
    got.sort();
    let slot = vec![(3, "PAYMENTS".to_owned())];
    assert_eq!(
        got,
        vec![
            ("hsm1.example.net".to_owned(), "2310".to_owned(), 0, slot.clone()),
            ("hsm2.example.net".to_owned(), "2311".to_owned(), 1, slot.clone()),
        ],
        "hsms in primus.cfg:\n{text}"
    );
    assert_eq!(
        cfg.get("wait_delay").and_then(Value::as_int),
        Some(5),
        "wait_delay from timeouts.waitDelaySeconds:\n{text}"
    );
    assert_eq!(
        cfg.get("wait_max_tries").and_then(Value::as_int),
        Some(3),
        "wait_max_tries from timeouts.waitMaxTries:\n{text}"
    );
    let trace = cfg.get("log.trace_level").and_then(Value::as_int);
    assert!(
        trace.is_some_and(|t| (0..=7).contains(&t)),
        "log.trace_level must be 0..7:\n{text}"
    );
    let cm = fx.api::<ConfigMap>().get("payments-provider").await.expect("ConfigMap");
    assert_eq!(
        cm.data.as_ref().and_then(|d| d.get("generation")).map(String::as_str),
        Some("1"),
        "the first rendering is generation 1"
    );
    assert_eq!(config_generations(&fx).await, (Some("1".to_owned()), Some(1)));
    assert!(
        cm.metadata
            .owner_references
            .unwrap_or_default()
            .iter()
            .any(|r| r.uid == uid),
        "the ConfigMap has no ownerReference to the partition"
    );

    // The ppin Job: the vendor tool, the partition's user, the config mounted where the
    // provider looks for it, the setup password as a file.
    let job_name = fx.wait_for_new_job("payments", &[]).await;
    let job = fx.api::<Job>().get(&job_name).await.expect("Job");
    let pod = job.spec.and_then(|s| s.template.spec).expect("pod spec");
    let c = &pod.containers[0];
    let line: String = c
        .command
        .clone()
        .unwrap_or_default()
        .into_iter()
        .chain(c.args.clone().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ");
    for want in [
        "hsm-sidecar enroll",
        "--method ppin",
        "--ppin /usr/local/primus/bin/ppin",
        "--user PAYMENTS",
        "--setup-password-file /var/run/hsmbridge/setup/setup-password",
        "--secret payments-credentials",
        "--namespace primus",
    ] {
        assert!(
            line.contains(want),
            "the ppin Job's command line lacks `{want}`: {line}"
        );
    }
    let env: Vec<(String, String)> = c
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    assert!(
        env.contains(&(
            "SECUROSYS_PKCS11_CONF".to_owned(),
            "/etc/hsmbridge/provider/primus.cfg".to_owned()
        )),
        "the ppin Job must set SECUROSYS_PKCS11_CONF=/etc/hsmbridge/provider/primus.cfg: {env:?}"
    );
    let cm_volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.config_map.as_ref().is_some_and(|c| c.name == "payments-provider"))
        .unwrap_or_else(|| {
            panic!(
                "the ppin Job mounts no volume of ConfigMap payments-provider: {:?}",
                pod.volumes
            )
        });
    let mounted = c
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == cm_volume.name && m.mount_path.trim_end_matches('/') == "/etc/hsmbridge/provider");
    assert!(
        mounted,
        "ConfigMap payments-provider must be mounted at /etc/hsmbridge/provider: {:?}",
        c.volume_mounts
    );

    // A spec change re-renders: priority of the second member, a third member.
    let mut cluster = primus_partition("x")["spec"]["cluster"].clone();
    cluster["members"][1]["priority"] = json!(5);
    cluster["members"]
        .as_array_mut()
        .expect("members")
        .push(json!({"host": "hsm3.example.net", "priority": 7}));
    fx.partitions()
        .patch(
            "payments",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"cluster": cluster}})),
        )
        .await
        .expect("patching the cluster");
    let got = fx
        .eventually("primus.cfg to follow the new cluster", WAIT, || {
            let fx = &fx;
            async move {
                let (text, cfg) = primus_cfg(fx, "payments").await;
                let mut m = members(&cfg).map_err(|e| format!("{e}\n{text}"))?;
                m.sort();
                if m.len() == 3 {
                    Ok(m)
                } else {
                    Err(format!("{} members:\n{text}", m.len()))
                }
            }
        })
        .await;
    assert_eq!(
        got,
        vec![
            ("hsm1.example.net".to_owned(), "2310".to_owned(), 0, slot.clone()),
            ("hsm2.example.net".to_owned(), "2311".to_owned(), 5, slot.clone()),
            ("hsm3.example.net".to_owned(), "2310".to_owned(), 7, slot.clone()),
        ],
        "re-rendered hsms (port defaults to 2310)"
    );
    let p = fx.partition("payments").await.expect("partition");
    fx.eventually("observedGeneration to follow the spec change", WAIT, || {
        let fx = &fx;
        async move {
            let p = fx.partition("payments").await.ok_or("gone")?;
            let (o, g) = (
                int_at(&p, "/status/observedGeneration"),
                int_at(&p, "/metadata/generation"),
            );
            if o == g {
                Ok(())
            } else {
                Err(format!("observedGeneration {o:?}, generation {g:?}"))
            }
        }
    })
    .await;
    assert_eq!(
        condition(&p, "ConfigRendered").map(|c| c.status),
        Some("True".to_owned())
    );
    // The content changed once: generation 2, in the ConfigMap and in the status.
    fx.eventually("configGeneration 2", WAIT, || {
        let fx = &fx;
        async move {
            match config_generations(fx).await {
                (Some(cm), Some(2)) if cm == "2" => Ok(()),
                other => Err(format!("(ConfigMap, status) {other:?}")),
            }
        }
    })
    .await;
    // Re-reconciles and a restarted operator leave it alone (the content did not change).
    for n in 1..=3 {
        fx.touch("payments", n).await;
    }
    fx.kill_operator();
    fx.start_operator();
    fx.touch("payments", 4).await;
    fx.eventually("the restarted operator to reconcile", WAIT, || {
        let fx = &fx;
        async move {
            let p = fx.partition("payments").await.ok_or("gone")?;
            let text = fx.metrics();
            match support::operator::metric_sum(&text, "hsm_operator_reconciles_total") {
                Some(n) if n >= 1.0 => Ok(p),
                other => Err(format!("reconciles {other:?}")),
            }
        }
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        config_generations(&fx).await,
        (Some("2".to_owned()), Some(2)),
        "after re-reconciles and an operator restart"
    );
}

/// `generation` of ConfigMap payments-provider, and the partition's status.configGeneration.
async fn config_generations(fx: &Fixture) -> (Option<String>, Option<i64>) {
    let cm = fx.api::<ConfigMap>().get("payments-provider").await.expect("ConfigMap");
    let p = fx.partition("payments").await.expect("partition");
    (
        cm.data.and_then(|mut d| d.remove("generation")),
        int_at(&p, "/status/configGeneration"),
    )
}

/// A stand-in for the Securosys `ppin` tool (`ppin -a -e USER [-c CFG] -s FILE`, the setup
/// password and the new PKCS#11 password on stdin). It records its argv, environment and the
/// provider config it was given, and accepts only the setup password in `expected-setup`.
const FAKE_PPIN: &str = r#"#!/usr/bin/env bash
set -u
here="$(dirname "$0")"
printf '%s\n' "$@" >"$here/argv"
env >"$here/env"
user="" secrets="" cfg="${SECUROSYS_PKCS11_CONF-}"
while [ $# -gt 0 ]; do
    case "$1" in
        -a) ;;
        -e) shift; user="$1" ;;
        -c) shift; cfg="$1" ;;
        -s) shift; secrets="$1" ;;
        *) echo "fake ppin: unexpected argument $1" >&2; exit 64 ;;
    esac
    shift
done
printf "Provide setup password for '%s': " "$user"
IFS= read -r setup || exit 65
printf "Provide PKCS11 password for '%s': " "$user"
IFS= read -r pkcs11 || exit 65
echo
cp "$cfg" "$here/seen-primus.cfg" 2>/dev/null || { echo "fake ppin: no provider config at '$cfg'" >&2; exit 1; }
if [ "$setup" != "$(cat "$here/expected-setup")" ]; then
    echo "ERROR: 0x80005017 setup password rejected" >&2
    exit 1
fi
printf 'user=%s ciphered=%s\n' "$user" "$(printf '%s' "$pkcs11" | sha256sum | cut -c1-16)" >"$secrets"
echo "permanent secret of $user added"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primus_enrollment_runs_ppin_and_stores_its_secrets_file() {
    use std::os::unix::fs::PermissionsExt;
    const SETUP: &str = "PPPPP-QQQQQ-RRRRR-SSSSS-TTTTT";
    let fx = Fixture::new("primus-ppin").await;
    let tool = support::paths::fresh_temp_dir("fake-ppin");
    let ppin = tool.join("ppin");
    std::fs::write(&ppin, FAKE_PPIN).expect("writing the fake ppin");
    std::fs::set_permissions(&ppin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(tool.join("expected-setup"), SETUP).expect("writing expected-setup");

    fx.create_setup_secret("payments-setup", SETUP).await;
    let mut body = primus_partition("payments");
    body["spec"]["enrollment"]["ppinPath"] = json!(ppin.display().to_string());
    fx.create_partition(&body).await;
    let job = fx.wait_for_new_job("payments", &[]).await;
    let run = support::kubelet::run_job(&fx.api, &fx.client, &fx.ns, &job, &[]).await;
    assert_eq!(run.code(), Some(0), "ppin enrollment failed:\n{}", run.describe());
    let p = fx.wait_condition("payments", "Ready", "True", Some("Ready")).await;
    assert_eq!(condition(&p, "Enrolled").map(|c| c.reason), Some("Enrolled".to_owned()));

    let pin = fx
        .secret_value("payments-credentials", "pin")
        .await
        .expect("the credential Secret has no `pin`");
    let secrets_cfg = fx
        .secret_value("payments-credentials", "secrets.cfg")
        .await
        .expect("the credential Secret has no `secrets.cfg`");
    let secrets_cfg = String::from_utf8_lossy(&secrets_cfg).into_owned();
    let pin = String::from_utf8_lossy(&pin).into_owned();
    assert!(
        secrets_cfg.starts_with("user=PAYMENTS "),
        "secrets.cfg is not what ppin wrote: {secrets_cfg:?}"
    );
    assert!(
        secrets_cfg.contains(&support::sha256_hex(&pin)[..16]),
        "secrets.cfg was written for another PKCS#11 password than `pin`"
    );

    let argv = std::fs::read_to_string(tool.join("argv")).expect("ppin ran");
    let env = std::fs::read_to_string(tool.join("env")).expect("ppin env");
    assert!(
        !argv.contains(SETUP) && !env.contains(SETUP),
        "the setup password reached ppin's argv or environment"
    );
    assert!(
        !argv.contains(&pin) && !env.contains(&pin),
        "the PKCS#11 password reached ppin's argv or environment"
    );
    let seen = std::fs::read_to_string(tool.join("seen-primus.cfg")).expect("ppin saw the provider config");
    let cfg = libconfig::parse(&seen).expect("the config ppin saw parses");
    assert_eq!(members(&cfg).map(|m| m.len()), Ok(2), "the config ppin saw:\n{seen}");
    let _ = std::fs::remove_dir_all(&tool);
}
