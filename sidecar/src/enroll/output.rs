//! Where the credential goes: 0600 files (`--pin-out`, `--secrets-out`) or
//! the Kubernetes Secret the operator created (`--secret`, see
//! [`super::k8s_secret`]). A destination is checked before the setup
//! password is used, so a bad path or a missing Secret costs nothing.

use std::fmt;
use std::path::{Path, PathBuf};

use super::k8s_secret::{SecretError, SecretSink};
use super::{Credential, Reason};

#[derive(Debug)]
pub enum Destination {
    Files { pin: PathBuf, secrets: Option<PathBuf> },
    Secret { name: String, namespace: Option<String> },
}

/// An opened destination.
pub enum Opened {
    Ready(Sink),
    /// The Secret already holds a credential: never enroll twice.
    AlreadyEnrolled(String),
}

pub enum Sink {
    Files { pin: PathBuf, secrets: Option<PathBuf> },
    Secret(Box<SecretSink>),
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("the directory of {what} {path} does not exist")]
    NoDirectory { what: &'static str, path: String },
    #[error("ppin produced a secrets file but there is nowhere to put it (--secrets-out)")]
    NoSecretsOut,
    #[error("cannot write {what} to {path}: {source}")]
    Write {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl OutputError {
    /// Failures an operator fixes in the configuration (exit code 2).
    pub fn is_config(&self) -> bool {
        match self {
            OutputError::NoDirectory { .. } | OutputError::NoSecretsOut => true,
            OutputError::Secret(e) => e.is_config(),
            OutputError::Write { .. } => false,
        }
    }
}

impl Sink {
    pub fn open(destination: &Destination) -> Result<Opened, OutputError> {
        match destination {
            Destination::Files { pin, secrets } => {
                existing_parent("the PIN file", pin)?;
                if let Some(secrets) = secrets {
                    existing_parent("the secrets file", secrets)?;
                }
                Ok(Opened::Ready(Sink::Files {
                    pin: pin.clone(),
                    secrets: secrets.clone(),
                }))
            }
            Destination::Secret { name, namespace } => {
                let (sink, enrolled) = SecretSink::open(name, namespace.as_deref())?;
                if enrolled {
                    Ok(Opened::AlreadyEnrolled(sink.to_string()))
                } else {
                    Ok(Opened::Ready(Sink::Secret(Box::new(sink))))
                }
            }
        }
    }

    /// Stores the credential (files: the secrets file first, the PIN last).
    pub fn deliver(&self, credential: &Credential) -> Result<(), OutputError> {
        match self {
            Sink::Files { pin, secrets } => {
                if let Some(data) = &credential.secrets_cfg {
                    let path = secrets.as_ref().ok_or(OutputError::NoSecretsOut)?;
                    write("the secrets file", path, data)?;
                }
                write("the permanent secret", pin, &credential.pin)
            }
            Sink::Secret(sink) => Ok(sink.store(credential)?),
        }
    }

    /// Records a failure where the operator looks for it (the Secret's
    /// annotations); files get nothing. Best effort: the exit code says it too.
    pub fn report_failure(&self, reason: Reason, message: &str) {
        if let Sink::Secret(sink) = self {
            sink.annotate_failure(reason, message);
        }
    }
}

impl fmt::Display for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Files { pin, secrets: None } => write!(f, "file {}", pin.display()),
            Sink::Files { pin, secrets: Some(s) } => write!(f, "files {} and {}", pin.display(), s.display()),
            Sink::Secret(sink) => sink.fmt(f),
        }
    }
}

fn existing_parent(what: &'static str, path: &Path) -> Result<(), OutputError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if parent.is_dir() {
        Ok(())
    } else {
        Err(OutputError::NoDirectory {
            what,
            path: path.display().to_string(),
        })
    }
}

fn write(what: &'static str, path: &Path, data: &[u8]) -> Result<(), OutputError> {
    crate::secret_file::write(path, data).map_err(|source| OutputError::Write {
        what,
        path: path.display().to_string(),
        source,
    })
}
