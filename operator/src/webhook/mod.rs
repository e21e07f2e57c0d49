//! The mutating admission webhook: pods labelled `hsmbridge.io/inject: "true"` get the
//! `hsm-sidecar` container and the PKCS#11 shim (see `inject/` for what the patch adds).
//!
//! One entry point, [`serve`], which `hsm-operator run` calls on every replica (the webhook is
//! stateless; only the certificate is shared, through a Secret):
//!
//! ```ignore
//! let webhook_metrics = Arc::new(webhook::WebhookMetrics::default());
//! let mut config = webhook::WebhookConfig::new(namespace, shim_image);
//! config.metrics = webhook_metrics.clone();    // and webhook_metrics.register(&mut registry) for /metrics
//! tokio::spawn(webhook::serve(client.clone(), config, shutdown_future));
//! ```
//!
//! What it needs from RBAC: `hsmpartitions` get/list/watch (cluster-wide); `secrets`
//! get/list/watch/create/update in the operator namespace (self-managed TLS only);
//! `mutatingwebhookconfigurations` get/list/watch/patch (self-managed TLS only, for caBundle).
//!
//! Files: `annotations.rs` (what the pod asks), `inject/` (the patch or the denial),
//! `partitions.rs` (finding partitions), `tls/` (the certificate), `http/` (the server),
//! `limits.rs` (what one pod may ask and one client may hold), `metrics.rs` (latency
//! histogram for /metrics).

pub mod annotations;
pub mod http;
pub mod inject;
pub mod limits;
pub mod metrics;
pub mod partitions;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

pub use inject::{ServerCaps, Settings as InjectionSettings};
pub use metrics::WebhookMetrics;

use self::http::Handler;
use self::partitions::Partitions;
use self::tls::{CertResolver, TlsError};

/// The MutatingWebhookConfiguration whose caBundle the self-managed mode keeps current.
pub const WEBHOOK_CONFIGURATION: &str = "hsmbridge-injector";
/// The Service in front of the webhook (the certificate names `<service>.<namespace>.svc`).
pub const SERVICE_NAME: &str = "hsmbridge-webhook";
/// The first sidecar's gRPC health port.
pub const DEFAULT_HEALTH_PORT: u16 = 17310;

/// How often the certificate is re-checked without any change event (expiry is time-driven).
const RECHECK: Duration = Duration::from_secs(3600);
/// Retry after a failed certificate check.
const RETRY: Duration = Duration::from_secs(30);
/// Reload period of the files mode.
const FILES_POLL: Duration = Duration::from_secs(10);

/// The webhook's configuration (the operator fills it from its flags / the chart's values).
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// HTTPS listen address.
    pub listen_addr: SocketAddr,
    /// The operator's namespace: the self-managed Secret lives there.
    pub namespace: String,
    /// The Service in front of the webhook.
    pub service_name: String,
    /// The MutatingWebhookConfiguration to keep the caBundle of.
    pub webhook_configuration: String,
    pub tls: TlsMode,
    /// How injected containers look (images, ports, user).
    pub injection: InjectionSettings,
    /// Review outcomes and latency; share it with the operator's /metrics.
    pub metrics: Arc<WebhookMetrics>,
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// A CA and certificate made and rotated here, in a Secret of the operator's namespace;
    /// the caBundle is patched into the MutatingWebhookConfiguration.
    SelfManaged {
        /// Default [`tls::SECRET_NAME`].
        secret_name: String,
        /// Names beyond `<service>.<namespace>.svc` (DNS names or IPs, e.g. `127.0.0.1` when
        /// the API server reaches the webhook by URL).
        extra_names: Vec<String>,
    },
    /// `tls.crt` and `tls.key` in this directory (cert-manager), reloaded when they change.
    Files { dir: PathBuf },
}

impl WebhookConfig {
    /// Defaults: listen on 0.0.0.0:9443, Service `hsmbridge-webhook`, configuration
    /// `hsmbridge-injector`, self-managed TLS in Secret `hsmbridge-webhook-tls` (the chart's names).
    pub fn new(namespace: impl Into<String>, shim_image: impl Into<String>) -> Self {
        WebhookConfig {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 9443)),
            namespace: namespace.into(),
            service_name: SERVICE_NAME.to_owned(),
            webhook_configuration: WEBHOOK_CONFIGURATION.to_owned(),
            tls: TlsMode::SelfManaged {
                secret_name: tls::SECRET_NAME.to_owned(),
                extra_names: Vec::new(),
            },
            injection: InjectionSettings {
                shim_image: shim_image.into(),
                health_port: DEFAULT_HEALTH_PORT,
                metrics_port: hsmbridge_contract::METRICS_PORT,
                // The one definition the enrollment Job shares (owned.rs).
                run_as_user: hsmbridge_contract::RUN_AS_USER,
                resources: None,
            },
            metrics: Arc::new(WebhookMetrics::default()),
        }
    }
}

/// Errors that stop the webhook.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot listen on {addr} for the webhook: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot configure TLS for the webhook: {0}")]
    TlsConfig(#[source] rustls::Error),
}

/// Serves the webhook until `shutdown` resolves. Waits first (retrying, logging why) until the
/// API server answers `/version` and a serving certificate is loaded, then listens.
pub async fn serve(
    client: Client,
    config: WebhookConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WebhookError> {
    let addr = config.listen_addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| WebhookError::Bind { addr, source })?;
    serve_on(client, config, listener, shutdown).await
}

/// [`serve`] on a bound listener (tests bind port 0).
pub async fn serve_on(
    client: Client,
    config: WebhookConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WebhookError> {
    tokio::pin!(shutdown);
    let caps = tokio::select! {
        _ = &mut shutdown => return Ok(()),
        caps = server_caps(&client) => caps,
    };

    let resolver = Arc::new(CertResolver::default());
    let _certificates = tokio::select! {
        _ = &mut shutdown => return Ok(()),
        task = start_certificates(&client, &config, resolver.clone()) => task,
    };
    let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(resolver).map_err(WebhookError::TlsConfig)?));

    let (lookup, feed) = Partitions::new(client);
    let _feed = AbortOnDrop(tokio::spawn(feed));
    let handler = Arc::new(Handler {
        lookup,
        settings: config.injection.clone(),
        caps,
        metrics: config.metrics.clone(),
        budget: http::BodyBudget::default(),
    });
    info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        native_sidecars = caps.native_sidecars,
        grpc_probes = caps.grpc_probes,
        "serving the injection webhook on {}",
        http::MUTATE_PATH
    );
    http::run(listener, acceptor, handler, shutdown).await;
    Ok(())
}

/// The API server's capabilities, read once. Retries until it answers.
async fn server_caps(client: &Client) -> ServerCaps {
    let mut delay = Duration::from_millis(500);
    loop {
        match client.apiserver_version().await {
            Ok(info) => {
                let caps = ServerCaps::for_version(&info.major, &info.minor);
                info!(version = %info.git_version, ?caps, "API server version");
                return caps;
            }
            Err(e) => {
                warn!(error = %e, "cannot read the API server version; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY);
            }
        }
    }
}

/// Loads the first certificate (retrying until it works) and starts keeping it current.
async fn start_certificates(client: &Client, config: &WebhookConfig, resolver: Arc<CertResolver>) -> AbortOnDrop {
    let mut delay = Duration::from_millis(500);
    match &config.tls {
        TlsMode::SelfManaged {
            secret_name,
            extra_names,
        } => {
            let keeper = SelfManaged {
                client: client.clone(),
                namespace: config.namespace.clone(),
                secret_name: secret_name.clone(),
                webhook_configuration: config.webhook_configuration.clone(),
                names: tls::names_for(&config.service_name, &config.namespace, extra_names),
                resolver,
            };
            while let Err(e) = keeper.converge().await {
                warn!(error = %e, "no serving certificate yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY);
            }
            AbortOnDrop(tokio::spawn(keeper.maintain()))
        }
        TlsMode::Files { dir } => {
            let dir = dir.clone();
            while let Err(e) = load_files(&dir, &resolver) {
                warn!(error = %e, dir = %dir.display(), "no serving certificate yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY);
            }
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(FILES_POLL).await;
                    if let Err(e) = load_files(&dir, &resolver) {
                        warn!(error = %e, dir = %dir.display(), "cannot reload the serving certificate; keeping the old one");
                    }
                }
            }))
        }
    }
}

fn load_files(dir: &std::path::Path, resolver: &CertResolver) -> Result<(), TlsError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| TlsError::File {
            path: path.display().to_string(),
            source,
        })
    };
    // Two small files every few seconds: not worth a blocking-pool hop.
    let cert = read(tls::KEY_TLS_CERT)?;
    let key = read(tls::KEY_TLS_KEY)?;
    if resolver.load(&cert, &key)? {
        info!(dir = %dir.display(), "loaded the serving certificate");
    }
    Ok(())
}

/// The self-managed mode's keeper.
struct SelfManaged {
    client: Client,
    namespace: String,
    secret_name: String,
    webhook_configuration: String,
    names: Vec<String>,
    resolver: Arc<CertResolver>,
}

impl SelfManaged {
    /// Secret valid (creating/renewing it), certificate loaded, caBundle set. Only a Secret
    /// problem is an error: a missing or unpatchable configuration does not stop serving.
    async fn converge(&self) -> Result<(), TlsError> {
        let material = tls::converge_secret(&self.client, &self.namespace, &self.secret_name, &self.names).await?;
        if self.resolver.load(material.cert.as_bytes(), material.key.as_bytes())? {
            info!(secret = %format!("{}/{}", self.namespace, self.secret_name), names = ?self.names, "loaded the serving certificate");
        }
        match tls::patch_ca_bundle(&self.client, &self.webhook_configuration, &material.ca_bundle).await {
            Ok(true) => {}
            Ok(false) => debug!(
                configuration = %self.webhook_configuration,
                "no MutatingWebhookConfiguration to set the caBundle of (yet)"
            ),
            Err(e) => warn!(error = %e, "cannot set the caBundle"),
        }
        Ok(())
    }

    /// Converges again whenever the Secret or the configuration changes, and every hour.
    async fn maintain(self) {
        let by_name = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
        let secrets = watcher(
            Api::<Secret>::namespaced(self.client.clone(), &self.namespace),
            by_name(&self.secret_name),
        )
        .default_backoff();
        let configurations = watcher(
            Api::<MutatingWebhookConfiguration>::all(self.client.clone()),
            by_name(&self.webhook_configuration),
        )
        .default_backoff();
        futures::pin_mut!(secrets, configurations);
        let mut next_check = tokio::time::Instant::now() + RECHECK;
        loop {
            let changed = tokio::select! {
                Some(event) = secrets.next() => relevant(event, "Secret"),
                Some(event) = configurations.next() => relevant(event, "MutatingWebhookConfiguration"),
                _ = tokio::time::sleep_until(next_check) => true,
            };
            if !changed {
                continue;
            }
            next_check = tokio::time::Instant::now()
                + match self.converge().await {
                    Ok(()) => RECHECK,
                    Err(e) => {
                        warn!(error = %e, "cannot check the serving certificate; retrying");
                        RETRY
                    }
                };
        }
    }
}

/// Whether a watch event may change what `converge` does (not the per-object initial list).
fn relevant<K>(event: Result<watcher::Event<K>, watcher::Error>, what: &str) -> bool {
    match event {
        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => true,
        Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => false,
        Err(e) => {
            warn!(error = %e, "watching the webhook's {what} failed");
            false
        }
    }
}

/// A background task that ends with its owner.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
#[path = "apiserver_tests.rs"]
mod apiserver_tests;
