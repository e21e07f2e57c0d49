//! `hsm-sidecar enroll`: ppin-style enrollment. A one-time setup password is
//! exchanged once for a permanent secret, which goes to files or to the
//! Kubernetes Secret the operator created for it (operator/CONTRACT.md, "The
//! enrollment Job's container").
//!
//! - [`init_pin`]: the `pkcs11-init-pin` method (any PKCS#11 token);
//! - [`ppin`]: the `ppin` method (runs the Securosys Primus `ppin` tool);
//! - [`output`]: where the credential goes, files or [`k8s_secret`];
//! - [`redact`]: keeps secrets out of messages built from outside text.
//!
//! Order of work, so that a setup password is never spent for nothing: the
//! destination is checked first (a Secret that already holds `pin` is left
//! alone: never enroll twice), then the setup password is read and the method
//! runs, and the credential is delivered before the setup password is made
//! unusable (pkcs11-init-pin).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, ValueEnum};
use tracing::{error, info};
use zeroize::Zeroizing;

use crate::backend::LoadError;
use crate::rv::Rv;

mod init_pin;
mod k8s_secret;
mod output;
mod ppin;
mod redact;

use output::{Destination, Opened, OutputError, Sink};
use ppin::{PpinError, PpinOptions};

/// Exit codes (CONTRACT.md): the operator tells "never retry" from "try again" by them.
pub mod exit {
    pub const ENROLLED: u8 = 0;
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const SETUP_PASSWORD_REJECTED: u8 = 3;
    pub const NO_TOKEN: u8 = 4;
}

/// `hsm-sidecar enroll` arguments.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("output").required(true).args(["pin_out", "secret"])))]
pub struct EnrollArgs {
    /// How to exchange the setup password for the permanent secret.
    #[arg(long, value_enum, default_value_t = MethodName::Pkcs11InitPin)]
    pub method: MethodName,

    /// File holding the one-time setup password (one line; mode 0400 or 0600).
    #[arg(long, value_name = "FILE")]
    pub setup_password_file: PathBuf,

    /// pkcs11-init-pin: the PKCS#11 module (libsofthsm2.so, ...).
    #[arg(long, value_name = "PATH", help_heading = "pkcs11-init-pin")]
    pub module: Option<PathBuf>,

    /// pkcs11-init-pin: label of the token to enroll.
    #[arg(long, value_name = "LABEL", help_heading = "pkcs11-init-pin")]
    pub token: Option<String>,

    /// ppin: the vendor's ppin tool.
    #[arg(long, value_name = "PATH", default_value = ppin::DEFAULT_PATH, help_heading = "ppin")]
    pub ppin: PathBuf,

    /// ppin: the partition's user name (`ppin -a -e USER`).
    #[arg(long, value_name = "USER", help_heading = "ppin")]
    pub user: Option<String>,

    /// ppin: the provider config (`ppin -c`); default: SECUROSYS_PKCS11_CONF or ppin's own default.
    #[arg(long, value_name = "FILE", help_heading = "ppin")]
    pub config: Option<PathBuf>,

    /// ppin: stop ppin if it has not finished after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120, help_heading = "ppin")]
    pub ppin_timeout_secs: u64,

    /// Write the permanent secret (the PKCS#11 user PIN) to this file (mode 0600).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub pin_out: Option<PathBuf>,

    /// ppin with --pin-out: write the secrets file ppin produced here (mode 0600).
    #[arg(long, value_name = "FILE", requires = "pin_out", help_heading = "Output")]
    pub secrets_out: Option<PathBuf>,

    /// Store the result in this existing Kubernetes Secret (keys `pin`, `secrets.cfg`).
    #[arg(long, value_name = "NAME", help_heading = "Output")]
    pub secret: Option<String>,

    /// Namespace of --secret; default: the pod's namespace, else the kubeconfig's.
    #[arg(long, value_name = "NS", requires = "secret", help_heading = "Output")]
    pub namespace: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MethodName {
    /// SO login with the setup password, C_InitPIN with a random PIN, SO PIN replaced.
    #[value(name = "pkcs11-init-pin")]
    Pkcs11InitPin,
    /// The Securosys Primus `ppin` tool fetches the permanent secret.
    #[value(name = "ppin")]
    Ppin,
}

/// What to do, checked once ("parse, don't validate").
#[derive(Debug)]
pub struct Plan {
    pub method: Method,
    pub setup_password_file: PathBuf,
    pub destination: Destination,
}

#[derive(Debug)]
pub enum Method {
    InitPin { module: PathBuf, token: String },
    Ppin(PpinOptions),
}

impl Plan {
    pub fn from_args(a: EnrollArgs) -> Result<Plan, String> {
        let method = match a.method {
            MethodName::Pkcs11InitPin => {
                refuse(a.user.is_some(), "--user is for --method ppin")?;
                refuse(a.config.is_some(), "--config is for --method ppin")?;
                refuse(
                    a.secrets_out.is_some(),
                    "--secrets-out is for --method ppin (pkcs11-init-pin makes no secrets file)",
                )?;
                let module = a.module.ok_or("--method pkcs11-init-pin needs --module PATH")?;
                let token = a.token.ok_or("--method pkcs11-init-pin needs --token LABEL")?;
                Method::InitPin { module, token }
            }
            MethodName::Ppin => {
                refuse(a.module.is_some(), "--module is for --method pkcs11-init-pin")?;
                refuse(a.token.is_some(), "--token is for --method pkcs11-init-pin")?;
                refuse(
                    a.pin_out.is_some() && a.secrets_out.is_none(),
                    "--method ppin with --pin-out needs --secrets-out FILE for the secrets file ppin writes",
                )?;
                let user = a
                    .user
                    .ok_or("--method ppin needs --user USER (the partition's user name)")?;
                refuse(user.is_empty() || user.starts_with('-'), "--user must be a user name")?;
                refuse(a.ppin_timeout_secs == 0, "--ppin-timeout-secs must be at least 1")?;
                Method::Ppin(PpinOptions {
                    path: a.ppin,
                    user,
                    config: a.config,
                    timeout: Duration::from_secs(a.ppin_timeout_secs),
                })
            }
        };
        let destination = match (a.pin_out, a.secret) {
            (Some(pin), None) => {
                refuse(a.namespace.is_some(), "--namespace goes with --secret NAME")?;
                Destination::Files {
                    pin,
                    secrets: a.secrets_out,
                }
            }
            (None, Some(name)) => {
                refuse(
                    a.secrets_out.is_some(),
                    "--secrets-out goes with --pin-out (--secret stores `secrets.cfg` in the Secret)",
                )?;
                refuse(name.is_empty(), "--secret must name a Secret")?;
                refuse(a.namespace.as_deref() == Some(""), "--namespace must not be empty")?;
                Destination::Secret {
                    name,
                    namespace: a.namespace,
                }
            }
            // clap's "output" group makes exactly one of them present.
            _ => return Err("give exactly one of --pin-out FILE or --secret NAME".into()),
        };
        Ok(Plan {
            method,
            setup_password_file: a.setup_password_file,
            destination,
        })
    }
}

fn refuse(bad: bool, why: &str) -> Result<(), String> {
    if bad {
        Err(why.to_string())
    } else {
        Ok(())
    }
}

/// The enrolled credential: what the sidecar (and the vendor module) need later.
pub struct Credential {
    /// The permanent secret / PKCS#11 user PIN (key `pin`).
    pub pin: Zeroizing<Vec<u8>>,
    /// ppin: the vendor secrets file (key `secrets.cfg`).
    pub secrets_cfg: Option<Zeroizing<Vec<u8>>>,
}

/// Why enrollment failed, as the annotation `hsmbridge.io/enrollment-error` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    SetupPasswordRejected,
    NoToken,
    EnrollmentFailed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SetupPasswordRejected => "SetupPasswordRejected",
            Reason::NoToken => "NoToken",
            Reason::EnrollmentFailed => "EnrollmentFailed",
        }
    }
}

/// Every failure, with a message fit for a human and for the Secret's
/// annotation: it never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("cannot read the setup password file {path}: {source}")]
    SetupPasswordFile { path: String, source: std::io::Error },
    #[error("the setup password file {0} holds more than one line")]
    SetupPasswordMultiline(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("no token labelled {0:?} is present")]
    NoToken(String),
    #[error("the HSM rejected the setup password ({0}); it is not retried: issue a new setup password and update its Secret")]
    SetupPasswordRejected(String),
    #[error("{step} failed: {rv}")]
    Pkcs11 { step: &'static str, rv: Rv },
    #[error(transparent)]
    Ppin(#[from] PpinError),
    #[error(transparent)]
    Output(#[from] OutputError),
}

impl EnrollError {
    /// What the Secret's annotation says: a rejected setup password's cause without the advice
    /// (the operator's condition adds its own); the full message for everything else.
    pub fn detail(&self) -> String {
        match self {
            EnrollError::SetupPasswordRejected(cause) => cause.clone(),
            other => other.to_string(),
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            EnrollError::SetupPasswordRejected(_) => Reason::SetupPasswordRejected,
            EnrollError::NoToken(_) => Reason::NoToken,
            _ => Reason::EnrollmentFailed,
        }
    }

    /// Distinct exit codes let the operator tell a spent or wrong setup
    /// password (never retry) from a transient failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            EnrollError::SetupPasswordRejected(_) => exit::SETUP_PASSWORD_REJECTED,
            EnrollError::NoToken(_) => exit::NO_TOKEN,
            EnrollError::SetupPasswordFile { .. } | EnrollError::SetupPasswordMultiline(_) => exit::USAGE,
            EnrollError::Load(LoadError::Open { .. } | LoadError::NotPkcs11 { .. }) => exit::USAGE,
            EnrollError::Ppin(e) if e.is_config() => exit::USAGE,
            EnrollError::Output(e) if e.is_config() => exit::USAGE,
            _ => exit::OTHER,
        }
    }
}

/// Runs `hsm-sidecar enroll` and returns the contract's exit code.
pub fn run(args: EnrollArgs) -> ExitCode {
    let plan = match Plan::from_args(args) {
        Ok(plan) => plan,
        Err(why) => {
            error!("usage: {why}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let sink = match Sink::open(&plan.destination) {
        Ok(Opened::Ready(sink)) => sink,
        Ok(Opened::AlreadyEnrolled(place)) => {
            info!(destination = %place, "already enrolled: the credential is kept and the setup password is not used");
            return ExitCode::from(exit::ENROLLED);
        }
        Err(e) => {
            let e = EnrollError::from(e);
            error!(
                reason = e.reason().as_str(),
                "enrollment failed before the setup password was used: {e}"
            );
            return ExitCode::from(e.exit_code());
        }
    };
    match enroll(&plan, &sink) {
        Ok(()) => {
            info!(destination = %sink, "enrolled: permanent secret stored");
            ExitCode::from(exit::ENROLLED)
        }
        Err(e) => {
            error!(reason = e.reason().as_str(), "enrollment failed: {e}");
            sink.report_failure(e.reason(), &e.detail());
            ExitCode::from(e.exit_code())
        }
    }
}

fn enroll(plan: &Plan, sink: &Sink) -> Result<(), EnrollError> {
    let setup = read_setup_password(&plan.setup_password_file)?;
    match &plan.method {
        Method::InitPin { module, token } => {
            init_pin::enroll(module, token, &setup, &mut |credential| Ok(sink.deliver(credential)?))
        }
        Method::Ppin(options) => {
            let credential = ppin::enroll(options, &setup)?;
            Ok(sink.deliver(&credential)?)
        }
    }
}

/// Lower-case hex of `raw`, built in place (no intermediate copies to wipe).
fn hex(raw: &[u8]) -> Zeroizing<Vec<u8>> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Zeroizing::new(Vec::with_capacity(raw.len() * 2));
    for &b in raw {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    out
}

fn read_setup_password(path: &std::path::Path) -> Result<Zeroizing<Vec<u8>>, EnrollError> {
    let shown = path.display().to_string();
    let setup = crate::secret_file::read(path).map_err(|source| EnrollError::SetupPasswordFile {
        path: shown.clone(),
        source,
    })?;
    if setup.iter().any(|&b| b == b'\n' || b == b'\r') {
        return Err(EnrollError::SetupPasswordMultiline(shown));
    }
    Ok(setup)
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
