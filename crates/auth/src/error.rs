//! The auth crate's one error type. The server maps each variant to an OCI error code in its
//! single error mapping; nothing here knows about HTTP statuses.

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Credentials were given and are wrong (or malformed, or of an unknown scheme).
    #[error("authentication failed")]
    InvalidCredentials,
    /// Too many failed logins from this client address; retry after the given seconds.
    #[error("too many failed logins from this address; wait a minute")]
    TooManyFailures { retry_after_secs: u64 },
    /// A token was asked of a registry that runs no token service.
    #[error("this registry issues no tokens; use basic auth")]
    NoTokenService,
    /// A token was asked for another service than this one.
    #[error("this token service is for {expected:?}, not {asked:?}")]
    WrongService { expected: String, asked: String },
    /// The access-control configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The API-key store failed; the text is for logs only.
    #[error("API key store: {0}")]
    Store(String),
}
