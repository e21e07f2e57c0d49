//! The `hsm-operator run` flags of the injection webhook (the chart passes them) and the
//! `WebhookConfig` they make.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::ResourceRequirements;

use crate::injected_resources;
use crate::webhook::{self, TlsMode, WebhookConfig, WebhookMetrics};

#[derive(Args, Debug)]
pub struct WebhookFlags {
    /// Serve the injection webhook (HTTPS) on this address; no webhook without it.
    #[arg(long)]
    pub webhook_addr: Option<SocketAddr>,
    /// The MutatingWebhookConfiguration whose caBundle is kept current (self-managed TLS).
    #[arg(long, default_value = webhook::WEBHOOK_CONFIGURATION)]
    webhook_config: String,
    /// The Service in front of the webhook; the certificate names `<service>.<namespace>.svc`.
    #[arg(long, default_value = webhook::SERVICE_NAME)]
    webhook_service: String,
    /// Where the serving certificate comes from.
    #[arg(long, value_enum, default_value_t = TlsSource::SelfManaged)]
    webhook_tls: TlsSource,
    /// Self-managed TLS: the Secret (in the operator's namespace) holding the CA and certificate.
    #[arg(long, default_value = webhook::tls::SECRET_NAME)]
    webhook_secret: String,
    /// cert-manager TLS: the directory with tls.crt and tls.key (reloaded on change).
    #[arg(long)]
    webhook_cert_dir: Option<PathBuf>,
    /// The URL the API server calls when the operator runs outside the cluster; its host is
    /// added to the certificate's names.
    #[arg(long)]
    webhook_url: Option<String>,
    /// Image of the init container that installs libhsmbridge_pkcs11.so into the pod
    /// (`hsm-sidecar install-shim`): the hsm-sidecar image, which carries the shim.
    #[arg(long)]
    shim_image: Option<String>,
    /// Resources of the injected containers, as the JSON of a container's `resources`
    /// (e.g. {"requests":{"cpu":"20m","memory":"32Mi"},"limits":{"memory":"128Mi"}}).
    #[arg(long, value_parser = injected_resources::parse)]
    injected_resources: Option<ResourceRequirements>,
    /// The first injected sidecar's /metrics port (`--metrics-addr`, container port
    /// `hsm-metrics`, the pod's `prometheus.io/port`); the pod's N-th sidecar uses PORT + N.
    #[arg(long, default_value_t = hsmbridge_contract::METRICS_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    sidecar_metrics_port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TlsSource {
    SelfManaged,
    CertManager,
}

#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("--webhook-addr needs --shim-image (an image with hsm-sidecar and libhsmbridge_pkcs11.so, e.g. the hsm-sidecar image)")]
    ShimImage,
    #[error("--webhook-tls cert-manager needs --webhook-cert-dir")]
    CertDir,
    #[error("--webhook-url {0:?} is not an https:// URL with a host")]
    Url(String),
}

impl WebhookFlags {
    /// The webhook's configuration, or `None` when `--webhook-addr` is not given.
    pub fn config(&self, namespace: &str, metrics: Arc<WebhookMetrics>) -> Result<Option<WebhookConfig>, FlagError> {
        let Some(addr) = self.webhook_addr else { return Ok(None) };
        let shim_image = self.shim_image.clone().ok_or(FlagError::ShimImage)?;
        let mut config = WebhookConfig::new(namespace, shim_image);
        config.listen_addr = addr;
        config.service_name = self.webhook_service.clone();
        config.webhook_configuration = self.webhook_config.clone();
        config.metrics = metrics;
        config.injection.resources = self.injected_resources.clone();
        config.injection.metrics_port = self.sidecar_metrics_port;
        config.tls = match self.webhook_tls {
            TlsSource::SelfManaged => {
                let extra_names = match &self.webhook_url {
                    Some(url) => vec![url_host(url).ok_or_else(|| FlagError::Url(url.clone()))?],
                    None => Vec::new(),
                };
                TlsMode::SelfManaged {
                    secret_name: self.webhook_secret.clone(),
                    extra_names,
                }
            }
            TlsSource::CertManager => TlsMode::Files {
                dir: self.webhook_cert_dir.clone().ok_or(FlagError::CertDir)?,
            },
        };
        Ok(Some(config))
    }
}

/// The host of an https URL: a DNS name or an IP address (IPv6 without brackets).
fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        webhook: WebhookFlags,
    }

    fn injection(args: &[&str]) -> webhook::InjectionSettings {
        use clap::Parser;
        let base = [
            "hsm-operator",
            "--webhook-addr",
            "0.0.0.0:9443",
            "--shim-image",
            "shim:1",
        ];
        let cli = Cli::try_parse_from(base.iter().chain(args)).expect("flags parse");
        let config = cli
            .webhook
            .config("ns", Arc::default())
            .expect("config")
            .expect("a webhook");
        config.injection
    }

    #[test]
    fn sidecar_metrics_port() {
        assert_eq!(injection(&[]).metrics_port, hsmbridge_contract::METRICS_PORT);
        assert_eq!(injection(&["--sidecar-metrics-port", "9100"]).metrics_port, 9100);
        // The health port is not a flag: unchanged.
        assert_eq!(
            injection(&["--sidecar-metrics-port", "9100"]).health_port,
            webhook::DEFAULT_HEALTH_PORT
        );
        use clap::Parser;
        for bad in ["0", "65536", "x"] {
            let args = ["hsm-operator", "--sidecar-metrics-port", bad];
            assert!(Cli::try_parse_from(args).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://127.0.0.1:9443/mutate-pods").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            url_host("https://hooks.example.net/x").as_deref(),
            Some("hooks.example.net")
        );
        assert_eq!(url_host("https://[::1]:8443/").as_deref(), Some("::1"));
        assert_eq!(url_host("http://127.0.0.1/"), None);
        assert_eq!(url_host("https://:80/"), None);
    }
}
