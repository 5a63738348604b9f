//! The signing crate's one error type; each message is one line a person can act on.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The password does not open the key (or the key file was altered).
    #[error("wrong password for the private key (or the key file is damaged)")]
    WrongPassword,
    /// A key file that is not a key this code reads.
    #[error("{0}")]
    BadKey(String),
    /// A payload that is not a simple-signing document.
    #[error("{0}")]
    BadPayload(String),
    /// A policy file that cannot be used.
    #[error("policy: {0}")]
    BadPolicy(String),
    /// A signature that does not verify, or cannot be read.
    #[error("{0}")]
    BadSignature(String),
}
