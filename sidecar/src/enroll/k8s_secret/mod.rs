//! The credential Secret `<name>-credentials` (operator/CONTRACT.md): the
//! operator creates it empty; the enrollment Job, whose Role allows only
//! `get`, `update` and `patch` on that one name, fills it.
//!
//! - open: GET it (it must exist; one holding `pin` is already enrolled);
//! - success: a JSON merge patch sets `data.pin` (and `data["secrets.cfg"]`),
//!   `data.generation` (the one read at open + 1; absent or not a decimal
//!   counts as 0, so the first enrollment writes 1) and removes the error
//!   annotations; retried on transient errors, since the setup password may
//!   already be spent;
//! - failure: a merge patch sets `hsmbridge.io/enrollment-error` and
//!   `hsmbridge.io/enrollment-message`, and no credential.
//!
//! Merge patches carry no resourceVersion, so a concurrent change to the
//! Secret (labels, owner references) never makes the credential bounce.
//! The client uses `kube::Config::infer()`: KUBECONFIG (tests playing the
//! kubelet) or the pod's service account. Its async runtime lives here only.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hsmbridge_contract::GENERATION_KEY;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use tracing::warn;
use zeroize::{Zeroize, Zeroizing};

use crate::enroll::redact::redact;
use crate::enroll::{Credential, Reason};

mod patch;

pub use patch::SecretPatch;

pub const KEY_PIN: &str = "pin";
pub const KEY_SECRETS_CFG: &str = "secrets.cfg";
pub const ANNOTATION_ERROR: &str = "hsmbridge.io/enrollment-error";
pub const ANNOTATION_MESSAGE: &str = "hsmbridge.io/enrollment-message";

/// The field manager named in the Secret's managedFields.
const FIELD_MANAGER: &str = "hsm-sidecar-enroll";
/// Deadline of one API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts to store the credential (back-off 1, 2, 4, 8, 16 s between them).
const STORE_ATTEMPTS: u32 = 6;
/// Attempts to read the Secret before enrolling (back-off 1, 2 s).
const GET_ATTEMPTS: u32 = 3;
/// Attempts to record a failure.
const ANNOTATE_ATTEMPTS: u32 = 3;
/// Longest `hsmbridge.io/enrollment-message`, in characters.
const MESSAGE_LIMIT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot start the Kubernetes client's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("no Kubernetes client configuration (KUBECONFIG, or the pod's service account): {0}")]
    Config(String),
    #[error("cannot create the Kubernetes client: {0}")]
    Client(String),
    #[error("the Secret {0} does not exist: the operator creates it (empty) before the enrollment Job runs")]
    Missing(String),
    #[error("not allowed to {verb} the Secret {target}: {detail}")]
    Forbidden {
        verb: &'static str,
        target: String,
        detail: String,
    },
    #[error("cannot {verb} the Secret {target}: {detail}")]
    Api {
        verb: &'static str,
        target: String,
        detail: String,
    },
}

impl SecretError {
    /// Failures an operator fixes in the configuration (exit code 2).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            SecretError::Config(_) | SecretError::Missing(_) | SecretError::Forbidden { .. }
        )
    }
}

pub struct SecretSink {
    runtime: tokio::runtime::Runtime,
    api: Api<Secret>,
    name: String,
    namespace: String,
    /// `data.generation` as read at open (0: absent or not a decimal).
    generation: u64,
}

impl SecretSink {
    /// Connects and reads the Secret; the flag says it already holds `pin`.
    pub fn open(name: &str, namespace: Option<&str>) -> Result<(SecretSink, bool), SecretError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(SecretError::Runtime)?;
        let (api, namespace, enrolled, generation) = runtime.block_on(async {
            let config = kube::Config::infer()
                .await
                .map_err(|e| SecretError::Config(chain(&e)))?;
            let namespace = namespace
                .map(str::to_string)
                .unwrap_or_else(|| config.default_namespace.clone());
            let client = kube::Client::try_from(config).map_err(|e| SecretError::Client(chain(&e)))?;
            let api: Api<Secret> = Api::namespaced(client, &namespace);
            let target = format!("{namespace}/{name}");
            let mut secret = with_retries(GET_ATTEMPTS, "reading the Secret", &target, &[], || api.get(name))
                .await
                .map_err(|e| call_error("get", &target, e, &[]))?;
            let enrolled = holds(&secret, KEY_PIN);
            let generation = generation_of(&secret);
            wipe(&mut secret);
            Ok::<_, SecretError>((api, namespace, enrolled, generation))
        })?;
        Ok((
            SecretSink {
                runtime,
                api,
                name: name.to_string(),
                namespace,
                generation,
            },
            enrolled,
        ))
    }

    /// Stores the credential with the next generation and clears the error annotations.
    pub fn store(&self, credential: &Credential) -> Result<(), SecretError> {
        let patch = SecretPatch::enrolled(credential, self.generation.saturating_add(1));
        // An API server's error could quote the request: keep the secrets, raw and encoded, out.
        let pin_b64 = Zeroizing::new(STANDARD.encode(&credential.pin));
        let cfg_b64 = Zeroizing::new(
            credential
                .secrets_cfg
                .as_ref()
                .map(|c| STANDARD.encode(c))
                .unwrap_or_default(),
        );
        let cfg: &[u8] = credential
            .secrets_cfg
            .as_ref()
            .map(|c| c.as_slice())
            .unwrap_or_default();
        let secrets: [&[u8]; 4] = [&credential.pin, pin_b64.as_bytes(), cfg, cfg_b64.as_bytes()];
        let target = self.to_string();
        let mut secret = self
            .runtime
            .block_on(self.patch(&patch, STORE_ATTEMPTS, "storing the credential", &secrets))
            .map_err(|e| call_error("patch", &target, e, &secrets))?;
        let stored = holds(&secret, KEY_PIN) && (credential.secrets_cfg.is_none() || holds(&secret, KEY_SECRETS_CFG));
        wipe(&mut secret);
        if stored {
            Ok(())
        } else {
            Err(SecretError::Api {
                verb: "patch",
                target,
                detail: "the API server accepted the patch but the Secret does not hold the credential".into(),
            })
        }
    }

    /// Records why enrollment failed (best effort: logged when it cannot).
    pub fn annotate_failure(&self, reason: Reason, message: &str) {
        let message = clip(message, MESSAGE_LIMIT);
        let patch = SecretPatch::failed(reason, &message);
        let result = self
            .runtime
            .block_on(self.patch(&patch, ANNOTATE_ATTEMPTS, "recording the failure", &[]));
        match result {
            Ok(mut secret) => wipe(&mut secret),
            Err(e) => {
                warn!(secret = %self, "cannot record the failure on the Secret: {}", call_error("patch", &self.to_string(), e, &[]))
            }
        }
    }

    async fn patch(
        &self,
        patch: &SecretPatch<'_>,
        attempts: u32,
        what: &str,
        secrets: &[&[u8]],
    ) -> Result<Secret, CallError> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let (target, body) = (self.to_string(), Patch::Merge(patch));
        with_retries(attempts, what, &target, secrets, || {
            self.api.patch(&self.name, &params, &body)
        })
        .await
    }
}

/// Runs `call` up to `attempts` times while it fails transiently (back-off 1 s, doubling).
async fn with_retries<T, F, Fut>(
    attempts: u32,
    what: &str,
    target: &str,
    secrets: &[&[u8]],
    mut call: F,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    let mut delay = Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        match timed(call()).await {
            Ok(value) => return Ok(value),
            Err(e) if attempt < attempts && e.is_transient() => {
                warn!(secret = %target, attempt, "{what} failed, retrying in {delay:?}: {}", redact(&e.to_string(), secrets));
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

impl fmt::Display for SecretSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret {}/{}", self.namespace, self.name)
    }
}

/// A failed API call: the client's error, or our deadline.
#[derive(Debug)]
enum CallError {
    Kube(kube::Error),
    Timeout,
}

impl CallError {
    /// Worth another try: timeouts, connection trouble, conflicts, throttling, server errors.
    fn is_transient(&self) -> bool {
        match self {
            CallError::Timeout => true,
            CallError::Kube(kube::Error::Api(status)) => status.code == 409 || status.code == 429 || status.code >= 500,
            CallError::Kube(_) => true,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout => write!(f, "no answer within {CALL_TIMEOUT:?}"),
            CallError::Kube(kube::Error::Api(s)) => write!(f, "{} {}: {}", s.code, s.reason, s.message),
            CallError::Kube(e) => f.write_str(&chain(e)),
        }
    }
}

async fn timed<T>(call: impl Future<Output = kube::Result<T>>) -> Result<T, CallError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(CallError::Kube(e)),
        Err(_) => Err(CallError::Timeout),
    }
}

fn call_error(verb: &'static str, target: &str, e: CallError, secrets: &[&[u8]]) -> SecretError {
    let detail = redact(&e.to_string(), secrets);
    match &e {
        CallError::Kube(kube::Error::Api(s)) if s.code == 404 => SecretError::Missing(target.to_string()),
        CallError::Kube(kube::Error::Api(s)) if s.code == 403 => SecretError::Forbidden {
            verb,
            target: target.to_string(),
            detail,
        },
        _ => SecretError::Api {
            verb,
            target: target.to_string(),
            detail,
        },
    }
}

/// An error and its sources, "outer: inner: innermost".
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// `data.generation` as a decimal; 0 when absent or anything else.
fn generation_of(secret: &Secret) -> u64 {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(GENERATION_KEY))
        .and_then(|v| std::str::from_utf8(&v.0).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn holds(secret: &Secret, key: &str) -> bool {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .is_some_and(|v| !v.0.is_empty())
}

/// Wipes the secret bytes a response carried.
fn wipe(secret: &mut Secret) {
    if let Some(data) = secret.data.as_mut() {
        for value in data.values_mut() {
            value.0.zeroize();
        }
    }
}

/// At most `max` characters.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests;
