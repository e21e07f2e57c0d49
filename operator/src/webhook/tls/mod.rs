//! The webhook's serving certificate, in one of two modes:
//!
//! - self-managed: a CA and a serving certificate made here (rcgen), kept in the Secret
//!   `hsmbridge-webhook-tls` of the operator's namespace (`ca.crt`, `ca.key`, `tls.crt`,
//!   `tls.key`). Every replica converges on the same Secret: it is created if absent (the loser
//!   of a create race reads the winner's), reused while valid, renewed when it has less than 30
//!   days left or misses a name (replace with the read resourceVersion: one renewal wins), and
//!   reloaded by every replica when it changes. `ca.crt` is the bundle the API server trusts (the
//!   current CA, then the previous one while still valid, so replicas still serving a
//!   certificate of the old CA stay trusted during a CA rotation); it is written into
//!   `webhooks[].clientConfig.caBundle` of the MutatingWebhookConfiguration.
//! - files: `tls.crt` and `tls.key` from a directory (a cert-manager Secret mounted in the pod),
//!   reloaded when they change; cert-manager's cainjector patches the caBundle.
//!
//! Either way rustls asks [`CertResolver`] for the current certificate at every handshake.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

mod material;
mod secret;

pub use material::{names_for, now, plan, Material, Plan};
pub use secret::{converge_secret, patch_ca_bundle};

/// Secret of the self-managed mode.
pub const SECRET_NAME: &str = "hsmbridge-webhook-tls";
pub const KEY_CA_CERT: &str = "ca.crt";
pub const KEY_CA_KEY: &str = "ca.key";
pub const KEY_TLS_CERT: &str = "tls.crt";
pub const KEY_TLS_KEY: &str = "tls.key";

const DAY: i64 = 24 * 3600;
const CA_LIFETIME: i64 = 10 * 365 * DAY;
const LEAF_LIFETIME: i64 = 365 * DAY;
/// Renew when less than this is left.
pub const RENEW_BEFORE: i64 = 30 * DAY;
/// Backdating, for clocks a little behind ours.
const BACKDATE: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate in the PEM data")]
    NoCertificate,
    #[error("cannot read the PEM data: {0}")]
    Pem(String),
    #[error("certificate and key do not go together, or the key type is unsupported: {0}")]
    Key(#[source] rustls::Error),
    #[error("cannot make a certificate: {0}")]
    Generate(#[source] rcgen::Error),
    #[error("invalid name for the certificate: {0:?}")]
    Name(String),
    #[error("{verb} Secret {namespace}/{name}: {source}")]
    Secret {
        verb: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{verb} MutatingWebhookConfiguration {name}: {source}")]
    WebhookConfiguration {
        verb: &'static str,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("Secret {namespace}/{name} kept changing under us; will try again")]
    Contended { namespace: String, name: String },
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The certificate rustls serves; swapped without locks when a new one is loaded.
#[derive(Default)]
pub struct CertResolver {
    current: ArcSwapOption<Loaded>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl CertResolver {
    /// Loads `cert_pem` (leaf first, then any chain) and `key_pem`. `Ok(true)` when they
    /// differ from what is served; the old certificate stays when they are unusable.
    pub fn load(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<bool, TlsError> {
        if let Some(current) = self.current.load().as_ref() {
            if current.cert_pem == cert_pem && current.key_pem == key_pem {
                return Ok(false);
            }
        }
        let key = certified_key(cert_pem, key_pem)?;
        self.current.store(Some(Arc::new(Loaded {
            key: Arc::new(key),
            cert_pem: cert_pem.to_vec(),
            key_pem: key_pem.to_vec(),
        })));
        Ok(true)
    }

    /// Whether a certificate is loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load().as_ref().map(|l| l.key.clone())
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

/// A certificate chain and its key, checked to go together.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem(e.to_string()))?;
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider()).map_err(TlsError::Key)
}

/// The TLS configuration of the webhook server: HTTP/2 and HTTP/1.1, certificate from `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
