//! What the self-managed Secret holds and when it is renewed: the [`Material`] (PEM text), the
//! [`plan`] that keeps it or makes its replacement, and the CA and serving certificates issued
//! here (rcgen).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::*;

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

#[cfg(test)]
#[path = "material_tests.rs"]
mod tests;
