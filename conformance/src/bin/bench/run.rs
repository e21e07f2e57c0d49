//! `bench` without a subcommand: sets up the token, starts the servers, runs
//! one worker child per run, cell and backend and one RSS child per module,
//! and collects what they print for the report.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::args::Options;
use crate::backend::Backend;
use crate::observe;
use crate::report::{CellKey, Report, RssFigures};
use crate::rss;
use crate::servers::{Observe, Server};
use crate::workload::Workload;

pub const TOKEN_LABEL: &str = "hsmbridge-bench";
pub const PIN_ENV: &str = "HSMBRIDGE_BENCH_PIN";
pub const SO_PIN_ENV: &str = "HSMBRIDGE_BENCH_SO_PIN";

/// A 0700 directory under $TMPDIR, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("hsmbridge-bench.{}.{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// How a child reaches its backend: which module it loads, and its environment.
struct Target {
    backend: Backend,
    module: PathBuf,
    env: Vec<(&'static str, String)>,
    server_pid: Option<u32>,
    /// Where the sidecar of `shim+obs` exposes its metrics and audit trail.
    observe: Option<Observe>,
}

impl Target {
    fn command(&self, subcommand: &str, pin: &str) -> Result<Command, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.arg(subcommand)
            .arg("--module")
            .arg(&self.module)
            .env_remove("SOFTHSM2_CONF")
            .env_remove("P11_KIT_SERVER_ADDRESS")
            .env_remove(hsmbridge_contract::ENV_SOCKET)
            // The shim's spin mode is the backend's (shim-block sets it), never the caller's.
            .env_remove(hsmbridge_contract::ENV_SPIN_US)
            .env(PIN_ENV, pin)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        Ok(cmd)
    }
}

pub fn run(opts: &Options) -> Result<Report, String> {
    let dir = TempDir::new()?;
    let conf = dir.0.join("softhsm2.conf");
    let tokens = dir.0.join("tokens");
    std::fs::create_dir(&tokens).map_err(|e| e.to_string())?;
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let pin = random_hex(16)?;

    eprintln!("bench: initializing token {TOKEN_LABEL:?} and generating EC P-256, RSA-2048 and AES-256 keys");
    let status = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg("__setup")
        .arg("--module")
        .arg(&opts.softhsm)
        .env("SOFTHSM2_CONF", &conf)
        .env(PIN_ENV, &pin)
        .env(SO_PIN_ENV, random_hex(16)?)
        .status()
        .map_err(|e| format!("setup: {e}"))?;
    if !status.success() {
        return Err(format!("token setup failed ({status})"));
    }

    let mut report = Report::new(opts);
    let mut targets = Vec::new();
    // Keeps the servers alive until the end of the run.
    let mut servers = Vec::new();
    let mut sidecar_pids = Vec::new();
    for &backend in &opts.backends {
        match start_backend(backend, opts, &dir.0, &conf) {
            Ok((target, server)) => {
                if let (true, Some(server)) = (backend.is_sidecar(), &server) {
                    std::thread::sleep(Duration::from_millis(300));
                    if let Ok(kib) = rss::vm_rss_kib(&server.pid().to_string()) {
                        report.sidecar_rss.insert(backend, (kib, None));
                    }
                    sidecar_pids.push((backend, server.pid()));
                }
                targets.push(target);
                servers.extend(server);
            }
            Err(e) => {
                eprintln!("bench: skipping {}: {e}", backend.name());
                report.notes.push(format!(
                    "{} skipped: {}",
                    backend.name(),
                    e.lines().next().unwrap_or("")
                ));
            }
        }
    }

    for t in &targets {
        eprintln!("bench: {:<10} = {}", t.backend.name(), t.module.display());
    }
    // Run by run, cell by cell, every backend in turn: the backends a ratio
    // compares are measured seconds apart rather than a whole pass apart, so
    // a change in the machine's load between them skews it less; the runs
    // show how much the figures move from one measurement to the next.
    for run in 0..opts.runs {
        for &w in &opts.workloads {
            for &n in &opts.threads {
                for t in &targets {
                    run_worker(t, &pin, opts, run, w, n, &mut report)?;
                }
            }
        }
    }
    // The shim backends load one module: its app-side RSS is measured once.
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].iter().any(|earlier| earlier.module == t.module) {
            continue;
        }
        match run_rss(t, &pin) {
            Ok(r) => {
                report.rss.insert(t.backend, r);
            }
            Err(e) => eprintln!("bench: RSS of {}: {e}", t.backend.name()),
        }
    }
    if !sidecar_pids.is_empty() {
        std::thread::sleep(Duration::from_millis(300));
    }
    for (backend, pid) in sidecar_pids {
        match rss::vm_rss_kib(&pid.to_string()) {
            Ok(after) => report.sidecar_rss.entry(backend).or_insert((after, None)).1 = Some(after),
            Err(e) => report
                .notes
                .push(format!("{} sidecar RSS after the run: {e}", backend.name())),
        }
    }
    for o in targets.iter().filter_map(|t| t.observe.as_ref()) {
        match observe::collect(o) {
            Ok(observed) => report.observed = Some(observed),
            Err(e) => {
                eprintln!("bench: shim+obs metrics and audit: {e}");
                report.notes.push(format!("shim+obs metrics and audit not read: {e}"));
            }
        }
    }
    drop(servers);
    Ok(report)
}

/// Starts the server `backend` needs, if any, and says how a child reaches it.
fn start_backend(
    backend: Backend,
    opts: &Options,
    dir: &Path,
    conf: &Path,
) -> Result<(Target, Option<Server>), String> {
    match backend {
        Backend::Direct => Ok((
            Target {
                backend,
                module: opts.softhsm.clone(),
                env: vec![("SOFTHSM2_CONF", conf.display().to_string())],
                server_pid: None,
                observe: None,
            },
            None,
        )),
        Backend::P11Kit => {
            let server = Server::p11_kit(
                &opts.softhsm,
                TOKEN_LABEL,
                conf,
                dir.join("p11-kit.sock"),
                &dir.join("p11-kit.log"),
            )?;
            let target = Target {
                backend,
                module: opts.p11kit_client.clone(),
                env: vec![(
                    "P11_KIT_SERVER_ADDRESS",
                    format!("unix:path={}", server.socket.display()),
                )],
                server_pid: Some(server.pid()),
                observe: None,
            };
            Ok((target, Some(server)))
        }
        Backend::Shim | Backend::ShimBlock | Backend::ShimObs => {
            let (stem, observe, spin_us) = match backend {
                Backend::ShimObs => {
                    let observe = Observe {
                        metrics_addr: observe::free_addr()?,
                        audit_file: dir.join("audit.jsonl"),
                    };
                    ("sidecar-obs", Some(observe), None)
                }
                Backend::ShimBlock => ("sidecar-block", None, Some(0)),
                _ => ("sidecar", None, None),
            };
            let server = Server::sidecar(
                &opts.sidecar,
                &opts.softhsm,
                conf,
                dir.join(format!("{stem}.sock")),
                &dir.join(format!("{stem}.log")),
                observe.as_ref(),
                spin_us,
            )?;
            let mut env = vec![(hsmbridge_contract::ENV_SOCKET, server.socket.display().to_string())];
            if let Some(us) = spin_us {
                env.push((hsmbridge_contract::ENV_SPIN_US, us.to_string()));
            }
            let target = Target {
                backend,
                module: opts.shim.clone(),
                env,
                server_pid: Some(server.pid()),
                observe,
            };
            Ok((target, Some(server)))
        }
    }
}

/// One worker child measuring the cell `workload` x `threads` on `t`, for run `run`.
fn run_worker(
    t: &Target,
    pin: &str,
    opts: &Options,
    run: usize,
    workload: Workload,
    threads: usize,
    report: &mut Report,
) -> Result<(), String> {
    let mut cmd = t.command("__worker", pin)?;
    cmd.arg("--workloads")
        .arg(workload.name())
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--duration-ms")
        .arg(opts.duration.as_millis().to_string())
        .arg("--warmup-ms")
        .arg(opts.warmup.as_millis().to_string())
        .arg("--pin-single-thread")
        .arg(if opts.pin_single { "yes" } else { "no" });
    if let Some(pid) = t.server_pid {
        cmd.arg("--server-pid").arg(pid.to_string());
    }
    let mut child = cmd.spawn().map_err(|e| format!("worker: {e}"))?;
    let stdout = child.stdout.take().ok_or("worker: no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        parse_worker_line(t.backend, run, &line, report);
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        let cell = format!("{} {} x{threads} run {}", t.backend.name(), workload.name(), run + 1);
        eprintln!("bench: {cell}: worker failed ({status}); the cell is missing");
        report.notes.push(format!("{cell}: worker exited with {status}"));
    }
    Ok(())
}

fn parse_worker_line(backend: Backend, run: usize, line: &str, report: &mut Report) {
    let Some(cells) = report.runs.get_mut(run) else {
        return;
    };
    let fields: Vec<&str> = line.splitn(8, ' ').collect();
    let key = |w: &str, t: &str| -> Option<CellKey> {
        Some(CellKey {
            backend,
            workload: Workload::parse(w)?,
            threads: t.parse().ok()?,
        })
    };
    match fields.as_slice() {
        ["INFO", ..] => {
            let info = line.trim_start_matches("INFO ").to_string();
            report.library.insert(backend, info);
        }
        ["CELL", w, t, ops, elapsed, p50, p99] => {
            let (Some(k), Ok(ops), Ok(el), Ok(p50), Ok(p99)) = (
                key(w, t),
                ops.parse::<u64>(),
                elapsed.parse::<u64>(),
                p50.parse::<u64>(),
                p99.parse::<u64>(),
            ) else {
                eprintln!("bench: unparsable worker line: {line}");
                return;
            };
            let cell = crate::measure::Cell {
                ops,
                elapsed: Duration::from_nanos(el),
                p50: Duration::from_nanos(p50),
                p99: Duration::from_nanos(p99),
                cpu: Default::default(),
            };
            eprintln!(
                "  run {} {:<10} {:<14} x{:<2} {:>10.0} ops/s  p50 {:>8.1} µs  p99 {:>8.1} µs",
                run + 1,
                backend.name(),
                w,
                t,
                cell.ops_per_sec(),
                micros(cell.p50),
                micros(cell.p99)
            );
            cells.insert(k, Ok(cell));
        }
        ["CPU", w, t, server, audit, others, client, switches] => {
            let (Some(k), Ok(server), Ok(audit), Ok(others), Ok(client), Ok(switches)) = (
                key(w, t),
                server.parse(),
                audit.parse(),
                others.parse(),
                client.parse(),
                switches.parse(),
            ) else {
                eprintln!("bench: unparsable worker line: {line}");
                return;
            };
            if let Some(Ok(cell)) = cells.get_mut(&k) {
                cell.cpu = crate::cpu::CellCpu {
                    client: Duration::from_nanos(client),
                    server: Duration::from_nanos(server),
                    audit: Duration::from_nanos(audit),
                    others: Duration::from_nanos(others),
                    switches,
                };
            }
        }
        ["FAIL", w, t, ..] => {
            let msg = line.splitn(4, ' ').nth(3).unwrap_or("").to_string();
            eprintln!("  run {} {:<10} {w:<14} x{t:<2} FAILED: {msg}", run + 1, backend.name());
            if let Some(k) = key(w, t) {
                cells.insert(k, Err(msg));
            }
        }
        _ => eprintln!("bench: unexpected worker line: {line}"),
    }
}

fn run_rss(t: &Target, pin: &str) -> Result<RssFigures, String> {
    let out = t.command("__rss", pin)?.output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("RSS "))
        .ok_or_else(|| format!("no RSS line ({})", out.status))?;
    let v: Vec<u64> = line[4..].split(' ').filter_map(|x| x.parse().ok()).collect();
    match v.as_slice() {
        [before, loaded, initialized, in_use] => Ok(RssFigures {
            before: *before,
            loaded: *loaded,
            initialized: *initialized,
            in_use: *in_use,
        }),
        _ => Err(format!("bad RSS line: {line}")),
    }
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub type Cells = BTreeMap<CellKey, Result<crate::measure::Cell, String>>;
