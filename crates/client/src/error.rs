//! The client's one error type. Registry answers keep the spec's error code, so the CLI can
//! print it and map it to an exit code.

use wharf_oci::Digest;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid reference {0:?}: {1}")]
    Reference(String, String),
    /// The registry answered with an error status; `code` is the first OCI error code of the
    /// body, when it had one.
    #[error("{method} {url}: {status}{}", code_suffix(.code, .message))]
    Registry {
        method: String,
        url: String,
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    #[error("{0}: authentication required (run `wharf login {0}`)")]
    Unauthorized(String),
    #[error("{0}")]
    Auth(String),
    #[error("cannot reach {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("content of {expected} does not match its digest (got {actual})")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("{digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("registry protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Spec(#[from] wharf_oci::SpecError),
}

fn code_suffix(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) if !m.is_empty() => format!(" {c}: {m}"),
        (Some(c), _) => format!(" {c}"),
        (None, Some(m)) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

impl Error {
    pub fn file(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Error {
        Error::File {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// The HTTP status of a registry error answer, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Registry { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether retrying the same idempotent request may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Registry { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
