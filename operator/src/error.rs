//! Errors of one reconciliation. They name the API call and the object; they never carry a
//! Secret's contents (the operator never puts them anywhere an error could reach).

use kube::runtime::finalizer;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} {kind} {name}: {source}")]
    Kube {
        verb: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("HsmPartition has no {0}")]
    MissingField(&'static str),
    #[error("cannot encode a {kind} patch: {source}")]
    Encode {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// A kube API error on `verb kind/name`.
    pub fn kube(verb: &'static str, kind: &'static str, name: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let name = name.into();
        move |source| Error::Kube {
            verb,
            kind,
            name,
            source,
        }
    }

    /// Short, fixed label for `hsm_operator_reconcile_failures_total{reason}`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => kube_reason(source),
            Error::MissingField(_) => "invalid_object",
            Error::Encode { .. } => "encode",
            Error::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => inner.metric_reason(),
                finalizer::Error::AddFinalizer(source) | finalizer::Error::RemoveFinalizer(source) => {
                    kube_reason(source)
                }
                _ => "finalizer",
            },
        }
    }
}

fn kube_reason(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(status) => match status.code {
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            409 => "conflict",
            422 => "invalid",
            429 => "throttled",
            500..=599 => "server_error",
            _ => "api_error",
        },
        _ => "transport",
    }
}

/// The API error's HTTP code, if it is one.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
