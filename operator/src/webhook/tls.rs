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

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tracing::info;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::names;

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

/// What the self-managed Secret holds (PEM text).
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    /// The CAs the API server should trust: the current one (it signed `cert`) first.
    pub ca_bundle: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the keys.
        f.debug_struct("Material")
            .field("ca_bundle", &self.ca_bundle)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl Material {
    /// From the Secret's data; `None` when a key is missing or not UTF-8.
    pub fn from_secret_data(data: &BTreeMap<String, ByteString>) -> Option<Self> {
        let text = |key: &str| data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok());
        Some(Material {
            ca_bundle: text(KEY_CA_CERT)?,
            ca_key: text(KEY_CA_KEY)?,
            cert: text(KEY_TLS_CERT)?,
            key: text(KEY_TLS_KEY)?,
        })
    }

    pub fn to_secret_data(&self) -> BTreeMap<String, ByteString> {
        [
            (KEY_CA_CERT, &self.ca_bundle),
            (KEY_CA_KEY, &self.ca_key),
            (KEY_TLS_CERT, &self.cert),
            (KEY_TLS_KEY, &self.key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect()
    }
}

/// What to do with the Secret.
#[derive(Debug)]
pub enum Plan {
    /// Valid for long enough, for every name.
    Keep,
    /// Write this.
    Write(Material),
}

/// The names the serving certificate must hold: `<service>.<namespace>.svc`, then `extra`
/// (DNS names or IP addresses).
pub fn names_for(service: &str, namespace: &str, extra: &[String]) -> Vec<String> {
    let mut names = vec![format!("{service}.{namespace}.svc")];
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// Decides, at `now` (Unix seconds), whether `existing` serves `names` long enough, and if not,
/// makes the replacement: a new serving certificate from the same CA while the CA outlives it,
/// else a new CA too.
pub fn plan(existing: Option<&Material>, names: &[String], now: i64) -> Result<Plan, TlsError> {
    if let Some(m) = existing {
        if serving_cert_ok(m, names, now) {
            return Ok(Plan::Keep);
        }
        if ca_reusable(m, now) {
            let (cert, key) = issue_serving_cert(&m.ca_bundle, &m.ca_key, names, now)?;
            return Ok(Plan::Write(Material { cert, key, ..m.clone() }));
        }
    }
    let (ca_cert, ca_key) = new_ca(now)?;
    let (cert, key) = issue_serving_cert(&ca_cert, &ca_key, names, now)?;
    // Keep trusting the previous CA while it is valid: other replicas may still serve its cert.
    let previous = existing
        .and_then(|m| first_pem(&m.ca_bundle))
        .filter(|pem| parse(pem, |c| c.validity().not_after.timestamp() > now).unwrap_or(false));
    let ca_bundle = match previous {
        Some(old) => format!("{ca_cert}{old}"),
        None => ca_cert,
    };
    Ok(Plan::Write(Material {
        ca_bundle,
        ca_key,
        cert,
        key,
    }))
}

/// The serving certificate is signed by the bundle's first CA, goes with its key, names every
/// name, and both it and the CA have more than [`RENEW_BEFORE`] left.
fn serving_cert_ok(m: &Material, names: &[String], now: i64) -> bool {
    let Some(ca_pem) = first_pem(&m.ca_bundle) else {
        return false;
    };
    if certified_key(m.cert.as_bytes(), m.key.as_bytes()).is_err() {
        return false;
    }
    let Some(ca_der) = der_of(&ca_pem) else {
        return false;
    };
    let Some(leaf_der) = der_of(&m.cert) else {
        return false;
    };
    let (Ok((_, ca)), Ok((_, leaf))) = (
        x509_parser::parse_x509_certificate(&ca_der),
        x509_parser::parse_x509_certificate(&leaf_der),
    ) else {
        return false;
    };
    let valid = |c: &X509Certificate<'_>| {
        c.validity().not_before.timestamp() <= now + BACKDATE && c.validity().not_after.timestamp() > now + RENEW_BEFORE
    };
    valid(&ca)
        && valid(&leaf)
        && leaf.verify_signature(Some(ca.public_key())).is_ok()
        && names.iter().all(|n| has_name(&leaf, n))
}

/// The CA's key matches it and it outlives a new serving certificate by [`RENEW_BEFORE`].
fn ca_reusable(m: &Material, now: i64) -> bool {
    let Some(ca_pem) = first_pem(&m.ca_bundle) else {
        return false;
    };
    let Ok(key) = KeyPair::from_pem(&m.ca_key) else {
        return false;
    };
    parse(&ca_pem, |ca| {
        ca.public_key().raw == key.subject_public_key_info().as_slice()
            && ca.validity().not_after.timestamp() > now + LEAF_LIFETIME + RENEW_BEFORE
            && ca.is_ca()
    })
    .unwrap_or(false)
}

fn has_name(cert: &X509Certificate<'_>, name: &str) -> bool {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let ip = name.parse::<IpAddr>().ok();
    san.value.general_names.iter().any(|g| match (g, ip) {
        (GeneralName::IPAddress(bytes), Some(IpAddr::V4(v4))) => *bytes == v4.octets(),
        (GeneralName::IPAddress(bytes), Some(IpAddr::V6(v6))) => *bytes == v6.octets(),
        (GeneralName::DNSName(dns), None) => dns.eq_ignore_ascii_case(name),
        _ => false,
    })
}

fn new_ca(now: i64) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(TlsError::Generate)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("hsmbridge webhook CA {now}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = datetime(now - BACKDATE)?;
    params.not_after = datetime(now + CA_LIFETIME)?;
    let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn issue_serving_cert(ca_bundle: &str, ca_key: &str, names: &[String], now: i64) -> Result<(String, String), TlsError> {
    let ca_pem = first_pem(ca_bundle).ok_or(TlsError::NoCertificate)?;
    let ca_key = KeyPair::from_pem(ca_key).map_err(TlsError::Generate)?;
    let ca_not_after = parse(&ca_pem, |c| c.validity().not_after.timestamp()).ok_or(TlsError::NoCertificate)?;
    let ca_der = der_of(&ca_pem).ok_or(TlsError::NoCertificate)?;
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca_der), ca_key).map_err(TlsError::Generate)?;

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(TlsError::Generate)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "hsmbridge-webhook".to_owned()),
    );
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .as_str()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| TlsError::Name(n.clone())),
        })
        .collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = datetime(now - BACKDATE)?;
    params.not_after = datetime((now + LEAF_LIFETIME).min(ca_not_after))?;
    let cert = params.signed_by(&key, &issuer).map_err(TlsError::Generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn datetime(unix: i64) -> Result<time::OffsetDateTime, TlsError> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|e| TlsError::Pem(format!("time out of range: {e}")))
}

/// The first certificate's PEM block of `bundle`.
fn first_pem(bundle: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = bundle.find(BEGIN)?;
    let end = start + bundle.get(start..)?.find(END)? + END.len();
    Some(format!("{}\n", bundle.get(start..end)?))
}

fn der_of(pem: &str) -> Option<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()
        .map(|d| d.to_vec())
}

fn parse<T>(pem: &str, f: impl FnOnce(&X509Certificate<'_>) -> T) -> Option<T> {
    let der = der_of(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(f(&cert))
}

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        .try_into()
        .unwrap_or(i64::MAX)
}

/// Makes the Secret hold valid material for `names` (creating or renewing it), and returns it.
pub async fn converge_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    names: &[String],
) -> Result<Material, TlsError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let err = |verb: &'static str| {
        move |source| TlsError::Secret {
            verb,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        }
    };
    for _ in 0..5 {
        let existing = api.get_opt(name).await.map_err(err("get"))?;
        let material = existing
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(Material::from_secret_data);
        let new = match plan(material.as_ref(), names, now())? {
            Plan::Keep => {
                if let Some(m) = material {
                    return Ok(m);
                }
                continue;
            }
            Plan::Write(new) => new,
        };
        let written = match existing {
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.to_owned()),
                        namespace: Some(namespace.to_owned()),
                        labels: Some(BTreeMap::from([
                            (names::LABEL_MANAGED_BY.to_owned(), names::MANAGER.to_owned()),
                            (names::LABEL_COMPONENT.to_owned(), "webhook-tls".to_owned()),
                        ])),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".to_owned()),
                    data: Some(new.to_secret_data()),
                    ..Secret::default()
                };
                api.create(&PostParams::default(), &secret).await
            }
            Some(mut secret) => {
                // resourceVersion from the read: a concurrent renewal makes this a 409.
                let mut data = secret.data.take().unwrap_or_default();
                data.extend(new.to_secret_data());
                secret.data = Some(data);
                secret.string_data = None;
                api.replace(name, &PostParams::default(), &secret).await
            }
        };
        match written {
            Ok(_) => {
                info!(secret = %format!("{namespace}/{name}"), "wrote the webhook's serving certificate");
                return Ok(new);
            }
            // Another replica created or renewed it first: read theirs.
            Err(e) if crate::error::api_code(&e) == Some(409) => continue,
            Err(e) => return Err(err("write")(e)),
        }
    }
    Err(TlsError::Contended {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

/// Sets `caBundle` on every webhook of the MutatingWebhookConfiguration `name` that lacks it.
/// `Ok(false)` when the configuration does not exist (yet).
pub async fn patch_ca_bundle(client: &Client, name: &str, ca_bundle: &str) -> Result<bool, TlsError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let err = |verb: &'static str| {
        move |source| TlsError::WebhookConfiguration {
            verb,
            name: name.to_owned(),
            source: Box::new(source),
        }
    };
    let Some(config) = api.get_opt(name).await.map_err(err("get"))? else {
        return Ok(false);
    };
    let want = ByteString(ca_bundle.as_bytes().to_vec());
    let stale: Vec<&str> = config
        .webhooks
        .iter()
        .flatten()
        .filter(|w| w.client_config.ca_bundle.as_ref() != Some(&want))
        .map(|w| w.name.as_str())
        .collect();
    if stale.is_empty() {
        return Ok(true);
    }
    // Strategic merge: webhooks merge by name, so the patch touches only caBundle. The
    // resourceVersion makes it conditional on what was read.
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": config.metadata.resource_version},
        "webhooks": stale.iter().map(|n| serde_json::json!({
            "name": n,
            "clientConfig": {"caBundle": &want},
        })).collect::<Vec<_>>(),
    });
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map_err(err("patch"))?;
    info!(configuration = name, webhooks = ?stale, "set the caBundle");
    Ok(true)
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
