//! `hsm-operator`: reconciles `HsmPartition` resources into a rendered provider config and an
//! enrolled credential Secret, and serves the webhook that injects the sidecar into pods.
//!
//! `hsm-operator run [--metrics-addr ADDR] [--leader-election-namespace NS] [--no-leader-election]
//!  [--webhook-addr ADDR --shim-image IMAGE ...]` (see `webhook_flags.rs`)
//! `hsm-operator crd` prints the CustomResourceDefinition (`crds/hsmpartition.yaml`).

#![forbid(unsafe_code)]

mod conditions;
mod controller;
mod crd;
mod crd_schema;
mod enrollment;
mod error;
mod generation;
mod http;
mod injected_resources;
mod leader;
mod metrics;
mod module_env;
mod names;
mod owned;
mod ownership;
mod partition_pods;
mod provider_config;
mod reconcile;
mod security;
mod validate;
mod webhook;
mod webhook_flags;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};

use crate::crd::HsmPartition;
use crate::http::Health;
use crate::metrics::Metrics;
use crate::reconcile::Context;

#[derive(Parser)]
#[command(
    name = "hsm-operator",
    version,
    about = "Reconciles HsmPartition resources (hsmbridge.io/v1alpha1)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (in-cluster config, or KUBECONFIG when set).
    Run(Box<RunArgs>),
    /// Print the HsmPartition CustomResourceDefinition as YAML.
    Crd,
}

#[derive(Args)]
struct RunArgs {
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Namespace of the leader-election Lease.
    #[arg(long, default_value = "hsmbridge-system")]
    leader_election_namespace: String,
    /// Name of the leader-election Lease (the chart creates it, so `helm uninstall` removes it;
    /// created here when missing).
    #[arg(long, default_value = names::LEASE_NAME)]
    leader_election_lease: String,
    /// Run the controller without leader election (a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Partitions reconciled at the same time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Seconds between two counts of the partitions' pods by generation (tests shorten it).
    #[arg(long, hide = true, default_value_t = partition_pods::PERIOD.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    partition_pods_interval_secs: u64,
    #[command(flatten)]
    webhook: webhook_flags::WebhookFlags,
}

/// Errors that stop the process.
#[derive(Debug, thiserror::Error)]
enum FatalError {
    #[error("cannot configure the Kubernetes client (in-cluster or KUBECONFIG): {0}")]
    Client(#[source] kube::Error),
    #[error(
        "the HsmPartition CRD is not installed: apply crds/hsmpartition.yaml (`hsm-operator crd | kubectl apply -f -`)"
    )]
    CrdMissing,
    #[error("cannot list HsmPartitions: {0}")]
    List(#[source] kube::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    WebhookFlags(#[from] webhook_flags::FlagError),
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookError),
    #[error("cannot serve metrics on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hsm-operator crd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            init_tracing();
            let result = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(FatalError::Runtime)
                .and_then(|rt| rt.block_on(run(*args)));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

async fn run(args: RunArgs) -> Result<(), FatalError> {
    let client = Client::try_default().await.map_err(FatalError::Client)?;
    check_crd(&client).await?;

    let metrics = Arc::new(Metrics::default());
    // The webhook's Secret and Service live in the operator's own namespace.
    let namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| args.leader_election_namespace.clone());
    let webhook_config = args.webhook.config(&namespace, metrics.webhook.clone())?;
    let health = Arc::new(Health::default());
    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        shutdown_tx.send_replace(true);
    });

    let listener = {
        let mut stop = shutdown.clone();
        let addr = args.metrics_addr;
        let server = http::serve(addr, metrics.clone(), health.clone(), async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        tokio::spawn(async move { server.await.map_err(|source| FatalError::Http { addr, source }) })
    };

    // Every replica serves the webhook, leader or not.
    let webhook = webhook_config.map(|config| {
        let mut stop = shutdown.clone();
        tokio::spawn(webhook::serve(client.clone(), config, async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    });

    let identity = leader::identity();
    let (role_tx, mut role) = watch::channel::<leader::Role>(None);
    let elector = if args.no_leader_election {
        info!("leader election disabled: this replica leads");
        role_tx.send_replace(Some(true));
        None
    } else {
        info!(%identity, namespace = %args.leader_election_namespace, lease = %args.leader_election_lease, "joining leader election");
        Some(tokio::spawn(leader::run(
            client.clone(),
            args.leader_election_namespace.clone(),
            args.leader_election_lease.clone(),
            identity.clone(),
            role_tx,
            shutdown.clone(),
        )))
    };

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: names::MANAGER.to_owned(),
            instance: Some(identity),
        },
    );
    let ctx = Arc::new(Context::new(client.clone(), recorder, metrics.clone()));

    let mut shutdown_wait = shutdown.clone();
    loop {
        // Follow until elected; a follower is ready as soon as it knows it follows.
        tokio::select! {
            _ = shutdown_wait.wait_for(|s| *s) => break,
            r = role.wait_for(Option::is_some) => if r.is_err() { break },
        }
        health.set_ready(true);
        tokio::select! {
            _ = shutdown_wait.wait_for(|s| *s) => break,
            r = role.wait_for(|r| *r == Some(true)) => if r.is_err() { break },
        }
        if listener.is_finished() {
            break;
        }

        info!("leading: starting the controller");
        metrics.set_leader(true);
        health.set_ready(false);
        // The pods' generations are counted by the leader only (one set of series).
        let pods_counter = tokio::spawn(partition_pods::run(
            client.clone(),
            metrics.clone(),
            Duration::from_secs(args.partition_pods_interval_secs),
        ));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let stop_watch = {
            let mut role = role.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = role.wait_for(|r| *r != Some(true)) => {}
                    _ = shutdown.wait_for(|s| *s) => {}
                }
                let _ = stop_tx.send(());
            })
        };
        controller::run(
            client.clone(),
            ctx.clone(),
            args.concurrency,
            health.clone(),
            async move {
                let _ = stop_rx.await;
            },
        )
        .await;
        stop_watch.abort();
        pods_counter.abort();
        metrics.clear_partition_pods();
        metrics.set_leader(false);
        if *shutdown.borrow() {
            break;
        }
        warn!("lost leadership: controller stopped");
    }

    if let Some(elector) = elector {
        // Give the elector a moment to release the Lease so a follower takes over at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), elector).await;
    }
    if listener.is_finished() {
        if let Ok(Err(e)) = listener.await {
            return Err(e);
        }
    }
    if let Some(webhook) = webhook {
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), webhook).await {
            return Err(e.into());
        }
    }
    Ok(())
}

/// Fails early, with a hint, when the CRD is missing; other errors are left to the watches.
async fn check_crd(client: &Client) -> Result<(), FatalError> {
    let api: Api<HsmPartition> = Api::all(client.clone());
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(e) if error::api_code(&e) == Some(404) => Err(FatalError::CrdMissing),
        Err(e) if error::api_code(&e) == Some(403) => Err(FatalError::List(e)),
        Err(e) => {
            warn!(error = %e, "cannot list HsmPartitions yet; the controller retries");
            Ok(())
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the operator");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
