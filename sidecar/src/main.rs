//! hsm-sidecar: loads the vendor PKCS#11 module, holds the HSM connection and
//! the credential, and serves PKCS#11 to the shim over a Unix socket.
//!
//! Subcommands: `serve` (here, `server/`), `enroll` (`enroll/`), and the two the
//! injected pod runs so that the image needs no shell: `probe` (`probe.rs`, the
//! readiness probe before Kubernetes 1.24) and `install-shim` (`install_shim.rs`,
//! the init container).
//!
//! Every call into the vendor module is an `unsafe { p11!(...) }` block whose
//! `// SAFETY:` line says why its arguments are valid for the module (see
//! `backend::p11`).
#![allow(
    clippy::unnecessary_cast,
    reason = "CK_ULONG is c_ulong: u64 here, u32 on 32-bit and Windows targets, where the `as u64` \
              casts to and from the wire format are needed (rust-clippy#10555)"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing::{error, info};

mod answer_budget;
mod apps;
mod audit;
mod backend;
mod config_watch;
mod cpu_follow;
mod crypto;
mod enroll;
mod generation_file;
mod health;
mod held_pin;
mod install_shim;
mod keys;
mod login;
mod metrics;
mod monitor;
mod names;
mod object;
mod objects;
mod probe;
mod process;
mod recovery;
mod reload;
mod reply;
mod rv;
mod searches;
mod secret_file;
mod server;
mod service;
mod session;
mod slot_token;

#[derive(Parser)]
#[command(name = "hsm-sidecar", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve PKCS#11 on a Unix socket.
    Serve {
        /// The vendor PKCS#11 module (libprimusP11.so, libsofthsm2.so, ...).
        #[arg(long)]
        module: PathBuf,
        /// The Unix socket to serve on (created with mode 0660).
        #[arg(long)]
        socket: PathBuf,
        /// Managed mode: the user PIN, held by the sidecar; apps log in without it.
        #[arg(long)]
        pin_file: Option<PathBuf>,
        /// Serve grpc.health.v1 on this TCP address (for kubelet gRPC probes).
        #[arg(long)]
        health_addr: Option<SocketAddr>,
        /// Serve each call on the CPU its caller runs on (fewer cross-CPU
        /// wake-ups); `false` leaves thread placement to the scheduler.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        follow_caller_cpu: bool,
        /// A vendor mechanism (>= 0x80000000, hex or decimal) whose parameter
        /// is a plain byte string without pointers, passed to the module as
        /// is. Repeatable. Other mechanisms unknown to hsmbridge only work
        /// without a parameter.
        #[arg(long = "raw-param-mechanism", value_name = "MECHANISM", value_parser = parse_mechanism)]
        raw_param_mechanisms: Vec<u64>,
        /// Close a connection idle for this many seconds (not the last one
        /// of an application with sessions); 0: never.
        #[arg(long, default_value_t = server::limits::DEFAULT_IDLE_TIMEOUT.as_secs())]
        idle_timeout_secs: u64,
        /// Poll up to this many µs for a connection's next request before blocking (adaptive
        /// below it), even where the automatic checks would not; 0: never poll. Unset:
        /// adaptive up to 200 µs where there are spare CPUs and no CPU quota (README "Limits").
        #[arg(long, value_name = "US", value_parser = parse_spin)]
        spin_us: Option<hsmbridge_proto::spin::Mode>,
        #[command(flatten)]
        observe: ObserveArgs,
    },
    /// Exchange a one-time setup password for a permanent secret
    /// (pkcs11-init-pin or ppin), written to files or to a Kubernetes Secret.
    Enroll(enroll::EnrollArgs),
    /// Ask a sidecar's health server (`serve --health-addr`) whether it serves:
    /// exit 0 when SERVING, 1 otherwise (NOT_SERVING, unreachable, timeout).
    Probe(probe::ProbeArgs),
    /// Copy the shim this image carries into DIR (mode 0755, atomically).
    InstallShim(install_shim::InstallShimArgs),
}

/// Metrics, audit trail and configuration watch (README "Observability", "Rotation").
#[derive(clap::Args)]
struct ObserveArgs {
    /// Serve Prometheus metrics (`GET /metrics`) on this TCP address.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Append the audit trail (JSON lines) to this file (mode 0600) instead of stdout.
    #[arg(long, conflicts_with = "no_audit")]
    audit_file: Option<PathBuf>,
    /// Write no audit trail.
    #[arg(long)]
    no_audit: bool,
    /// A provider configuration directory (a ConfigMap's mount; repeatable): when the content
    /// changes, the module is re-initialized and every application starts anew.
    #[arg(long)]
    watch_config: Vec<PathBuf>,
}

fn parse_spin(s: &str) -> Result<hsmbridge_proto::spin::Mode, String> {
    hsmbridge_proto::spin::Mode::parse(Some(s))
}

fn parse_mechanism(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| format!("not a mechanism number: {e}"))
}

fn main() -> ExitCode {
    // serve and enroll hold secrets: no core dumps, no ptrace by the pod's other processes
    // (harmless for probe and install-shim).
    if let Err(e) = process::harden() {
        eprintln!("hsm-sidecar: cannot make the process non-dumpable: {e}");
        return ExitCode::FAILURE;
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Serve {
            module,
            socket,
            pin_file,
            health_addr,
            follow_caller_cpu,
            raw_param_mechanisms,
            idle_timeout_secs,
            spin_us,
            observe,
        } => {
            let config = server::Config {
                follow_cpu: follow_caller_cpu,
                spin: spin_us.unwrap_or(hsmbridge_proto::spin::Mode::Auto),
                cpus: hsmbridge_proto::spin::Cpus::of_this_process(),
                idle_timeout: (idle_timeout_secs > 0).then(|| Duration::from_secs(idle_timeout_secs)),
            };
            serve(
                module,
                socket,
                pin_file,
                health_addr,
                raw_param_mechanisms,
                config,
                observe,
            )
        }
        Command::Enroll(args) => enroll::run(args),
        Command::Probe(args) => probe::run(args),
        Command::InstallShim(args) => install_shim::run(args),
    }
}

/// Exit code for configuration errors (bad module, socket path, PIN file).
const CONFIG_ERROR: u8 = 2;

fn serve(
    module: PathBuf,
    socket: PathBuf,
    pin_file: Option<PathBuf>,
    health_addr: Option<SocketAddr>,
    raw_param_mechanisms: Vec<u64>,
    config: server::Config,
    observe: ObserveArgs,
) -> ExitCode {
    let raw_params = match hsmbridge_proto::mechanism::RawParamMechanisms::new(raw_param_mechanisms) {
        Ok(r) => r,
        Err(e) => {
            error!("--raw-param-mechanism: {e}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let managed_pin = match pin_file.as_deref().map(held_pin::HeldPin::load).transpose() {
        Ok(pin) => pin,
        Err(e) => {
            error!("cannot read the PIN file: {e}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let managed = managed_pin.is_some();
    let backend = match backend::Backend::load(&module) {
        Ok(b) => b,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    process::limit_heap();
    process::raise_open_files();
    let pod = audit::Pod {
        namespace: std::env::var(hsmbridge_contract::ENV_POD_NAMESPACE).unwrap_or_default(),
        name: std::env::var(hsmbridge_contract::ENV_POD_NAME).unwrap_or_default(),
        partition: std::env::var(hsmbridge_contract::ENV_PARTITION).unwrap_or_default(),
    };
    let metrics = Arc::new(metrics::Metrics::new(observe.metrics_addr.is_some(), &pod.partition));
    let audit = if observe.no_audit {
        audit::Audit::off()
    } else {
        let output = match &observe.audit_file {
            Some(path) => audit::Output::File(path.clone()),
            None => audit::Output::Stdout,
        };
        match audit::Audit::start(output, pod, metrics.clone()) {
            Ok(a) => a,
            Err(e) => {
                error!("cannot open the audit trail: {e}");
                return ExitCode::from(CONFIG_ERROR);
            }
        }
    };
    let service = service::Service::new(backend, login::Logins::new(managed_pin), raw_params, metrics, audit);
    let listener = match server::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            error!(socket = %socket.display(), "cannot listen: {e}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let conns = Arc::new(server::Registry::new(server::limits::MAX_CONNECTIONS));
    let watch = config_watch::ConfigWatch::new(observe.watch_config);
    if let Err(e) = monitor::spawn(service.clone(), conns.clone(), watch) {
        error!("cannot start the monitor: {e}");
        return ExitCode::FAILURE;
    }
    {
        let (service, conns) = (service.clone(), conns.clone());
        std::thread::spawn(move || server::accept_loop(listener, service, conns, config));
    }
    info!(module = %module.display(), socket = %socket.display(), managed, "serving PKCS#11");

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        if let Some(addr) = health_addr {
            let mut rx = stop_rx.clone();
            tokio::spawn(health::serve(addr, service.observed.serving(), async move {
                let _ = rx.changed().await;
            }));
        }
        if let Some(addr) = observe.metrics_addr {
            let mut rx = stop_rx.clone();
            let (service, conns) = (service.clone(), conns.clone());
            let render = move || service.metrics.render(service.metrics_state(&conns));
            tokio::spawn(metrics::http::serve(addr, render, async move {
                let _ = rx.changed().await;
            }));
        }
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });

    info!("shutting down: closing sessions and finalizing the module");
    let _ = std::fs::remove_file(&socket);
    conns.shutdown(Duration::from_secs(5));
    for app in service.apps.all() {
        service.end_app(&app);
    }
    if service.backend.finalize_for_shutdown().is_none() {
        error!(
            "a call is still inside the module after 5 s (a blocking C_WaitForSlotEvent?): exiting without C_Finalize"
        );
    }
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
