//! Command line of the benchmark (no argument parser dependency: a handful of
//! `--flag value` pairs).

use std::path::PathBuf;
use std::time::Duration;

use crate::backend::Backend;
use crate::workload::Workload;

pub const USAGE: &str = "\
usage: bench [options]

Measures the same PKCS#11 workload against SoftHSM directly, through p11-kit's
RPC and through libhsmbridge_pkcs11.so + hsm-sidecar (adaptive, then never
polling, then with its metrics and audit trail), on one SoftHSM token created
in a temporary directory, and prints one table. Every cell is measured
--runs times, every backend in turn; ratios compare backends within one run.

options:
  --duration-ms N        measuring time per cell (default 1000)
  --warmup-ms N          warm-up per cell, not measured (default 200)
  --runs N               measurements of every cell (default 3); the report
                         gives the median and min-max, and each ratio per run
  --threads LIST         thread counts, e.g. 1,4,8 (default 1,4)
  --workloads LIST       random,digest,get-attribute,ecdsa-p256,rsa-2048 (default all)
  --backends LIST        direct,p11-kit,shim,shim-block,shim+obs (default all);
                         shim: the sidecar with --no-audit and no
                         --metrics-addr, both sides in their default adaptive
                         mode; shim-block: the same with the sidecar's
                         --spin-us 0 and the app's HSMBRIDGE_SPIN_US=0 (block
                         at once, never poll); shim+obs: shim with
                         --metrics-addr (scraped once at the end) and
                         --audit-file in the temporary directory
  --softhsm PATH         default /usr/lib/softhsm/libsofthsm2.so
  --p11kit-client PATH   default: p11-kit-client.so in the multiarch pkcs11 dir
  --shim PATH            default: libhsmbridge_pkcs11.so next to this binary
  --sidecar PATH         default: hsm-sidecar next to this binary
  --pin-single-thread B  no (default): the scheduler places client and server,
                         as it does for applications; yes: a 1-thread cell
                         runs client and server on one CPU, so cross-CPU
                         wake-ups (tens of µs on a VM) do not swamp the
                         transport overhead
";

pub struct Options {
    pub duration: Duration,
    pub warmup: Duration,
    pub threads: Vec<usize>,
    pub workloads: Vec<Workload>,
    pub backends: Vec<Backend>,
    pub softhsm: PathBuf,
    pub p11kit_client: PathBuf,
    pub shim: PathBuf,
    pub sidecar: PathBuf,
    pub pin_single: bool,
    pub runs: usize,
}

/// The flags every internal child subcommand takes.
pub struct ChildOptions {
    pub module: String,
    pub workloads: Vec<Workload>,
    pub threads: Vec<usize>,
    pub duration: Duration,
    pub warmup: Duration,
    pub pin_single: bool,
    pub server_pid: Option<u32>,
}

fn yes_no(v: &str) -> Result<bool, String> {
    match v {
        "yes" | "true" | "1" => Ok(true),
        "no" | "false" | "0" => Ok(false),
        _ => Err(format!("expected yes or no, got {v:?}")),
    }
}

fn list<T>(v: &str, parse: impl Fn(&str) -> Option<T>, what: &str) -> Result<Vec<T>, String> {
    let items: Vec<T> = v
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| parse(s).ok_or_else(|| format!("unknown {what} {s:?}")))
        .collect::<Result<_, _>>()?;
    if items.is_empty() {
        return Err(format!("empty {what} list"));
    }
    Ok(items)
}

fn millis(v: &str) -> Result<Duration, String> {
    v.parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("not a number of milliseconds: {v:?}"))
}

fn threads(v: &str) -> Result<Vec<usize>, String> {
    list(v, |s| s.parse().ok().filter(|&n| n > 0), "thread count")
}

fn default_p11kit_client() -> PathBuf {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
        "/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
        "/usr/lib64/pkcs11/p11-kit-client.so",
        "/usr/lib/pkcs11/p11-kit-client.so",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(candidates[0]))
}

/// Splits `--flag value` pairs, rejecting anything else.
fn pairs(args: &[String]) -> Result<Vec<(&str, &str)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument {flag:?}"));
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        out.push((flag.as_str(), value.as_str()));
    }
    Ok(out)
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_default();
        let mut o = Options {
            duration: Duration::from_millis(1000),
            warmup: Duration::from_millis(200),
            threads: vec![1, 4],
            workloads: Workload::ALL.to_vec(),
            backends: Backend::ALL.to_vec(),
            softhsm: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            p11kit_client: default_p11kit_client(),
            shim: exe_dir.join("libhsmbridge_pkcs11.so"),
            sidecar: exe_dir.join("hsm-sidecar"),
            pin_single: false,
            runs: 3,
        };
        for (flag, v) in pairs(args)? {
            match flag {
                "--duration-ms" => o.duration = millis(v)?,
                "--warmup-ms" => o.warmup = millis(v)?,
                "--runs" => {
                    o.runs = v
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("--runs: not a positive number: {v:?}"))?
                }
                "--threads" => o.threads = threads(v)?,
                "--workloads" => o.workloads = list(v, Workload::parse, "workload")?,
                "--backends" => o.backends = list(v, Backend::parse, "backend")?,
                "--softhsm" => o.softhsm = v.into(),
                "--p11kit-client" => o.p11kit_client = v.into(),
                "--shim" => o.shim = v.into(),
                "--sidecar" => o.sidecar = v.into(),
                "--pin-single-thread" => o.pin_single = yes_no(v)?,
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        o.backends.sort();
        o.backends.dedup();
        let mut missing = vec![("--softhsm", &o.softhsm)];
        if o.backends.contains(&Backend::P11Kit) {
            missing.push(("--p11kit-client", &o.p11kit_client));
        }
        if o.backends.iter().any(|b| b.is_sidecar()) {
            missing.push(("--shim", &o.shim));
            missing.push(("--sidecar", &o.sidecar));
        }
        for (flag, path) in missing {
            if !path.exists() {
                return Err(format!(
                    "{} not found (set {flag}; build with `cargo build --release --workspace`)",
                    path.display()
                ));
            }
        }
        Ok(o)
    }
}

impl ChildOptions {
    pub fn parse(args: &[String]) -> Result<ChildOptions, String> {
        let mut o = ChildOptions {
            module: String::new(),
            workloads: Workload::ALL.to_vec(),
            threads: vec![1],
            duration: Duration::from_millis(1000),
            warmup: Duration::from_millis(200),
            pin_single: false,
            server_pid: None,
        };
        for (flag, v) in pairs(args)? {
            match flag {
                "--module" => o.module = v.to_string(),
                "--pin-single-thread" => o.pin_single = yes_no(v)?,
                "--server-pid" => o.server_pid = Some(v.parse().map_err(|_| format!("bad pid {v:?}"))?),
                "--workloads" => o.workloads = list(v, Workload::parse, "workload")?,
                "--threads" => o.threads = threads(v)?,
                "--duration-ms" => o.duration = millis(v)?,
                "--warmup-ms" => o.warmup = millis(v)?,
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        if o.module.is_empty() {
            return Err("--module is required".into());
        }
        Ok(o)
    }
}
