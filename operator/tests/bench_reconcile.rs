//! The reconcile benchmark of issue 3 (run by `scripts/operator-bench.sh`, `make bench-operator`;
//! ignored by `cargo test`): N `pkcs11` partitions (default 500) and their setup Secrets exist on
//! a real API server before the operator starts; then the operator starts cold, under its
//! least-privilege ServiceAccount, and the benchmark measures the time until every partition is
//! Ready=True and the operator's peak RSS (VmHWM).
//!
//! Enrollment is played cheaply: as soon as the operator has created a `<name>-credentials`
//! Secret, the benchmark writes a `pin` into it (what a successful Job would do). Running N real
//! enrollments is not what is measured.
//!
//! Environment: HSMBRIDGE_BENCH_PARTITIONS (500), HSMBRIDGE_BENCH_TIMEOUT_SECS (300).

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use support::{condition, pkcs11_partition, Fixture, SETUP_KEY};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `VmHWM` / `VmRSS` of a process, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) a process has used so far, in seconds (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by scripts/operator-bench.sh (make bench-operator)"]
async fn bench_reconcile_cold_start() {
    let n = env_or("HSMBRIDGE_BENCH_PARTITIONS", 500) as usize;
    let limit = Duration::from_secs(env_or("HSMBRIDGE_BENCH_TIMEOUT_SECS", 300));
    let say = |s: String| println!("operator-bench: {s}");

    let mut fx = Fixture::without_operator("bench").await;
    say(format!(
        "kube-apiserver {} (etcd on loopback); state in {}",
        fx.api.var("KUBE_APISERVER_URL"),
        fx.api.dir().display()
    ));

    // 1. The cluster state before the operator starts (not measured).
    let t = Instant::now();
    let partitions = fx.partitions();
    let secrets: Api<Secret> = fx.api();
    futures::stream::iter(0..n)
        .map(|i| {
            let (partitions, secrets) = (partitions.clone(), secrets.clone());
            async move {
                let name = format!("p{i:04}");
                let s: Secret = serde_json::from_value(json!({
                    "metadata": {"name": format!("{name}-setup")},
                    "stringData": {SETUP_KEY: "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"}
                }))
                .expect("secret JSON");
                secrets
                    .create(&PostParams::default(), &s)
                    .await
                    .unwrap_or_else(|e| panic!("creating {name}-setup: {e}"));
                let p: DynamicObject = serde_json::from_value(pkcs11_partition(&name, &name)).expect("partition JSON");
                partitions
                    .create(&PostParams::default(), &p)
                    .await
                    .unwrap_or_else(|e| panic!("creating {name}: {e}"));
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    say(format!(
        "created {n} HsmPartitions (provider pkcs11) and their setup Secrets in {:.1} s (not measured)",
        t.elapsed().as_secs_f64()
    ));
    say("enrollment is PLAYED: the benchmark writes `pin` into each <name>-credentials Secret as soon as the operator has created it; no real enrollment runs".to_owned());

    // 2. The enrollment player: watches Secrets, fills each new credential Secret.
    let pins_written = Arc::new(AtomicUsize::new(0));
    let player = {
        let secrets = secrets.clone();
        let pins_written = pins_written.clone();
        tokio::spawn(async move {
            let mut done = HashSet::new();
            let stream = watcher(secrets.clone(), watcher::Config::default())
                .default_backoff()
                .applied_objects();
            futures::pin_mut!(stream);
            while let Ok(Some(s)) = stream.try_next().await {
                let name = s.metadata.name.clone().unwrap_or_default();
                let has_pin = s.data.as_ref().is_some_and(|d| d.contains_key("pin"));
                if !name.ends_with("-credentials") || has_pin || done.contains(&name) {
                    continue;
                }
                done.insert(name.clone());
                let secrets = secrets.clone();
                let pins_written = pins_written.clone();
                tokio::spawn(async move {
                    let patch = json!({"data": {"pin": ByteString(format!("played-pin-{name}").into_bytes())}});
                    match secrets
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => {
                            pins_written.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => eprintln!("operator-bench: writing the pin of {name}: {e}"),
                    }
                });
            }
        })
    };

    // 3. Readiness tracker: a watch on the partitions.
    let state: Arc<std::sync::Mutex<HashMap<String, (bool, bool)>>> = Arc::default();
    let tracker = {
        let state = state.clone();
        let partitions = partitions.clone();
        tokio::spawn(async move {
            let stream = watcher(partitions, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            futures::pin_mut!(stream);
            while let Ok(Some(p)) = stream.try_next().await {
                let v = serde_json::to_value(&p).unwrap_or_default();
                let is_true = |t: &str| condition(&v, t).is_some_and(|c| c.status == "True");
                let name = p.metadata.name.clone().unwrap_or_default();
                state
                    .lock()
                    .expect("state lock")
                    .insert(name, (is_true("ConfigRendered"), is_true("Ready")));
            }
        })
    };

    // 4. Cold start of the operator; the clock runs from its spawn.
    let apiserver_pid: u32 = fx.api.var("KUBE_APISERVER_PID").parse().expect("KUBE_APISERVER_PID");
    let etcd_pid: u32 = fx.api.var("ETCD_PID").parse().expect("ETCD_PID");
    let cpu0 = (
        cpu_seconds(apiserver_pid).unwrap_or(0.0),
        cpu_seconds(etcd_pid).unwrap_or(0.0),
    );
    let t0 = Instant::now();
    fx.start_operator();
    let pid = fx.operator().pid();
    say(format!(
        "operator pid {pid} healthy after {:.2} s",
        t0.elapsed().as_secs_f64()
    ));
    let (mut all_rendered, mut all_ready) = (None, None);
    let mut last_report = Instant::now();
    while all_ready.is_none() && t0.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (rendered, ready) = {
            let s = state.lock().expect("state lock");
            (s.values().filter(|v| v.0).count(), s.values().filter(|v| v.1).count())
        };
        if rendered == n && all_rendered.is_none() {
            all_rendered = Some(t0.elapsed());
        }
        if ready == n {
            all_ready = Some(t0.elapsed());
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            say(format!(
                "  t={:5.1} s: {rendered}/{n} ConfigRendered, {ready}/{n} Ready, {} pins played, RSS {} KiB",
                t0.elapsed().as_secs_f64(),
                pins_written.load(Ordering::Relaxed),
                proc_status_kib(pid, "VmRSS:").unwrap_or(0)
            ));
        }
        if let Some(status) = fx.operator().exit_status() {
            panic!(
                "the operator exited ({status}) during the benchmark\n{}",
                fx.diagnostics()
            );
        }
    }
    let cpu = (
        cpu_seconds(pid).unwrap_or(0.0),
        cpu_seconds(apiserver_pid).unwrap_or(0.0) - cpu0.0,
        cpu_seconds(etcd_pid).unwrap_or(0.0) - cpu0.1,
    );
    let hwm = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    let rss = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let metrics = fx.operator().http_get("/metrics").map(|r| r.1).unwrap_or_default();
    let reconciles = support::operator::metric_sum(&metrics, "hsm_operator_reconciles_total").unwrap_or(f64::NAN);
    let failures = support::operator::metric_sum(&metrics, "hsm_operator_reconcile_failures_total").unwrap_or(0.0);
    let jobs = fx
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0);
    player.abort();
    tracker.abort();

    let secs = |d: Option<Duration>| {
        d.map(|d| format!("{:.1} s", d.as_secs_f64()))
            .unwrap_or_else(|| format!("not reached within {} s", limit.as_secs()))
    };
    let (rendered, ready) = {
        let s = state.lock().expect("state lock");
        (s.values().filter(|v| v.0).count(), s.values().filter(|v| v.1).count())
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!();
    println!("hsm-operator reconcile benchmark: {n} partitions, cold start, real kube-apiserver 1.20.2 on loopback");
    println!(
        "  (enrollment played by the benchmark writing `pin` into each credential Secret; {} pins written)",
        pins_written.load(Ordering::Relaxed)
    );
    println!("  time to all ConfigRendered : {} ({rendered}/{n})", secs(all_rendered));
    println!(
        "  time to all Ready          : {} ({ready}/{n})   target < 60 s: {}",
        secs(all_ready),
        match all_ready {
            Some(d) if d < Duration::from_secs(60) => "met",
            _ => "MISSED",
        }
    );
    println!(
        "  operator peak RSS (VmHWM)  : {:.1} MiB   target < 64 MiB: {}",
        mib(hwm),
        if mib(hwm) < 64.0 { "met" } else { "MISSED" }
    );
    println!("  operator RSS at the end    : {:.1} MiB", mib(rss));
    println!("  reconciles                 : {reconciles} ({failures} failures)");
    println!(
        "  CPU used during the run    : operator {:.1} s, kube-apiserver {:.1} s, etcd {:.1} s (2 cores shared)",
        cpu.0, cpu.1, cpu.2
    );
    println!("  enrollment Jobs created    : {jobs}");
    fx.kill_operator();
}
