//! The `hsm-operator run` flags of the injection webhook (the chart passes them) and the
//! `WebhookConfig` they make.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::ResourceRequirements;

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
    /// Image of the init container that copies libhsmbridge_pkcs11.so into the pod.
    #[arg(long)]
    shim_image: Option<String>,
    /// Resources of the injected containers, as the JSON of a container's `resources`
    /// (e.g. {"requests":{"cpu":"20m","memory":"32Mi"},"limits":{"memory":"128Mi"}}).
    #[arg(long, value_parser = parse_resources)]
    injected_resources: Option<ResourceRequirements>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TlsSource {
    SelfManaged,
    CertManager,
}

#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("--webhook-addr needs --shim-image (the image carrying libhsmbridge_pkcs11.so)")]
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
        config.tls = match self.webhook_tls {
            TlsSource::SelfManaged => {
                let extra_names = match &self.webhook_url {
                    Some(url) => vec![url_host(url).ok_or_else(|| FlagError::Url(url.clone()))?],
                    None => Vec::new(),
                };
                TlsMode::SelfManaged { secret_name: self.webhook_secret.clone(), extra_names }
            }
            TlsSource::CertManager => TlsMode::Files { dir: self.webhook_cert_dir.clone().ok_or(FlagError::CertDir)? },
        };
        Ok(Some(config))
    }
}

/// `--injected-resources`: checked here, so that a typo stops the operator at start-up instead
/// of making the API server reject every injected pod.
fn parse_resources(json: &str) -> Result<ResourceRequirements, String> {
    let not_resources = |e: &dyn std::fmt::Display| {
        format!("not the JSON of a container's resources ({{\"requests\": {{...}}, \"limits\": {{...}}}}): {e}")
    };
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| not_resources(&e))?;
    // k8s-openapi skips unknown fields; a misspelt "request" must not vanish silently.
    if let Some(unknown) = value.as_object().and_then(|o| o.keys().find(|k| !["requests", "limits", "claims"].contains(&k.as_str()))) {
        return Err(not_resources(&format!("unknown field {unknown:?}")));
    }
    let r: ResourceRequirements = serde_json::from_value(numbers_as_strings(value)).map_err(|e| not_resources(&e))?;
    if r.claims.is_some() {
        return Err("claims are not supported for injected containers".to_owned());
    }
    for (kind, list) in [("requests", &r.requests), ("limits", &r.limits)] {
        for (name, q) in list.iter().flatten() {
            if !is_quantity(&q.0) {
                return Err(format!("{kind}.{name}: {:?} is not a Kubernetes quantity (e.g. 100m, 64Mi, 1)", q.0));
            }
        }
    }
    Ok(r)
}

/// YAML values like `cpu: 1` arrive as JSON numbers; a Quantity is a string.
fn numbers_as_strings(mut value: serde_json::Value) -> serde_json::Value {
    for list in ["requests", "limits"] {
        if let Some(map) = value.get_mut(list).and_then(serde_json::Value::as_object_mut) {
            for q in map.values_mut() {
                if q.is_number() {
                    *q = serde_json::Value::String(q.to_string());
                }
            }
        }
    }
    value
}

/// The Kubernetes quantity syntax: a decimal number and an optional binary-SI, decimal-SI or
/// exponent suffix; not negative (resources cannot be).
fn is_quantity(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    let number_len = digits.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(digits.len());
    let (number, suffix) = digits.split_at(number_len);
    let number_ok = number.chars().filter(|c| *c == '.').count() <= 1 && number.chars().any(|c| c.is_ascii_digit());
    let suffix_ok = match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        exp => exp
            .strip_prefix(['e', 'E'])
            .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
            .is_some_and(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())),
    };
    number_ok && suffix_ok
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
    use super::{is_quantity, parse_resources, url_host};

    #[test]
    fn injected_resources() {
        let r = parse_resources(r#"{"requests":{"cpu":"20m","memory":"32Mi"},"limits":{"memory":"128Mi"}}"#).expect("valid");
        let requests = r.requests.expect("requests");
        assert_eq!(requests["cpu"].0, "20m");
        assert_eq!(requests["memory"].0, "32Mi");
        assert_eq!(r.limits.expect("limits")["memory"].0, "128Mi");
        assert_eq!(parse_resources("{}").expect("empty is valid"), Default::default());
        let r = parse_resources(r#"{"requests":{"cpu":1,"memory":"32Mi"}}"#).expect("YAML's cpu: 1");
        assert_eq!(r.requests.expect("requests")["cpu"].0, "1");
        assert!(parse_resources(r#"{"requests":{"cpu":-1}}"#).is_err(), "a negative number is no quantity either way");

        let err = parse_resources(r#"{"requests":{"memory":"32MB"}}"#).expect_err("bad quantity");
        assert!(err.contains("requests.memory") && err.contains("32MB"), "{err}");
        let err = parse_resources(r#"{"request":{"memory":"32Mi"}"#).expect_err("not JSON");
        assert!(err.contains("not the JSON"), "{err}");
        let err = parse_resources(r#"{"request":{"memory":"32Mi"}}"#).expect_err("misspelt");
        assert!(err.contains(r#"unknown field "request""#), "{err}");
        assert!(parse_resources("[]").is_err(), "an array");
        let err = parse_resources(r#"{"requests":{"memory":{"Mi":32}}}"#).expect_err("an object, not a quantity");
        assert!(err.contains("not the JSON"), "{err}");
    }

    #[test]
    fn quantities() {
        for q in ["1", "0.5", ".5", "100m", "64Mi", "1Gi", "2e3", "1E-2", "+1k", "1.5G"] {
            assert!(is_quantity(q), "{q} is a quantity");
        }
        for q in ["", "m", "Mi", "1MB", "1.2.3", "1e", "1 Mi", "ten", "1Mi ", "-1"] {
            assert!(!is_quantity(q), "{q:?} is not a quantity");
        }
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://127.0.0.1:9443/mutate-pods").as_deref(), Some("127.0.0.1"));
        assert_eq!(url_host("https://hooks.example.net/x").as_deref(), Some("hooks.example.net"));
        assert_eq!(url_host("https://[::1]:8443/").as_deref(), Some("::1"));
        assert_eq!(url_host("http://127.0.0.1/"), None);
        assert_eq!(url_host("https://:80/"), None);
    }
}
