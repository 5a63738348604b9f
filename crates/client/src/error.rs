//! The client's one error type. Registry answers keep the spec's error code, so the CLI can
//! print it and map it to an exit code.

use std::fmt;
use std::time::Duration;

use wharf_oci::{Digest, ErrorCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, each variant with a message a person can act on.
///
/// ```
/// use wharf_client::{Error, Reference};
/// match "localhost:5000/Bad Name".parse::<Reference>() {
///     Err(e @ Error::Reference(..)) => assert!(e.to_string().starts_with("invalid reference")),
///     other => panic!("{other:?}"),
/// }
/// ```
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
        code: Option<RegistryCode>,
        message: Option<String>,
        /// How long the registry asked us to wait (`Retry-After`), on 429 and 503.
        retry_after: Option<Duration>,
    },
    #[error("{0}: authentication required (run `wharf login {0}`)")]
    Unauthorized(String),
    #[error("{0}")]
    Auth(String),
    #[error("{}", transport_message(.url, .source))]
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
    /// Content that should carry a valid signature does not.
    #[error("{0}")]
    Verification(String),
    /// The registry does not offer what was asked (a tag DELETE, the referrers API, ...).
    #[error("{0}")]
    Unsupported(String),
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

/// An error code from a registry's error body: one the spec defines, or another registry's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryCode {
    Spec(ErrorCode),
    Other(String),
}

impl RegistryCode {
    pub fn parse(s: &str) -> RegistryCode {
        match ErrorCode::parse(s) {
            Some(c) => RegistryCode::Spec(c),
            None => RegistryCode::Other(s.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            RegistryCode::Spec(c) => c.as_str(),
            RegistryCode::Other(s) => s,
        }
    }
}

impl fmt::Display for RegistryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// "cannot reach HOST: REASON", the reason in words (with what to do about it) from the
/// innermost cause reqwest kept, never a debug dump of the error chain.
fn transport_message(url: &str, e: &reqwest::Error) -> String {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            let h = u.host_str()?.to_string();
            Some(match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h,
            })
        })
        .unwrap_or_else(|| url.to_string());
    let https = url.starts_with("https://");
    let mut causes = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        causes.push(c.to_string());
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return format!("cannot reach {host}: connection refused")
                }
                std::io::ErrorKind::ConnectionReset if !https => {
                    return format!(
                        "cannot reach {host}: connection reset (if it speaks HTTPS: drop --plain-http or use --https)"
                    )
                }
                _ => {}
            }
        }
        cur = c.source();
    }
    let all = causes.join(": ").to_lowercase();
    let reason = if e.is_timeout() {
        "timed out".to_string()
    } else if all.contains("dns error") || all.contains("failed to lookup address") {
        "cannot resolve the host name".to_string()
    } else if https && (all.contains("invalidcontenttype") || all.contains("corrupt message")) {
        format!("{host} speaks plain HTTP, not HTTPS: use --plain-http")
    } else if https && all.contains("certificate") {
        format!(
            "{}: pass --ca-file FILE with the CA that signed it, or --insecure for a test registry",
            certificate_reason(&all, &host)
        )
    } else if !https
        && (all.contains("invalid http version")
            || all.contains("connection closed before message completed")
            || all.contains("invalid status code"))
    {
        format!("{host} did not answer plain HTTP (if it speaks HTTPS: drop --plain-http or use --https)")
    } else {
        causes.last().cloned().unwrap_or_else(|| e.to_string())
    };
    format!("cannot reach {host}: {reason}")
}

/// Why a TLS certificate was refused, in words, from rustls' error names.
fn certificate_reason(chain: &str, host: &str) -> String {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if chain.contains("unknownissuer") {
        "TLS certificate signed by an unknown authority".into()
    } else if chain.contains("notvalidforname") || chain.contains("not valid for name") {
        format!("TLS certificate is not valid for {name}")
    } else if chain.contains("notvalidyet") || chain.contains("not valid yet") {
        "TLS certificate is not valid yet".into()
    } else if chain.contains("expired") {
        "TLS certificate has expired".into()
    } else if chain.contains("revoked") {
        "TLS certificate has been revoked".into()
    } else if chain.contains("unsupportedsignaturealgorithm") || chain.contains("badsignature") {
        "TLS certificate has a signature that does not verify".into()
    } else {
        "TLS certificate not accepted".into()
    }
}

fn code_suffix(code: &Option<RegistryCode>, message: &Option<String>) -> String {
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

    /// The spec's error code of a registry answer, if it named one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Registry {
                code: Some(RegistryCode::Spec(c)),
                ..
            } => Some(*c),
            _ => None,
        }
    }

    /// How long the registry asked to be left alone, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Registry { retry_after, .. } => *retry_after,
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
