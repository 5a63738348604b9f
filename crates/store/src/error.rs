//! The storage crate's one error type. It names what went wrong in the registry's terms; the
//! server maps it to an OCI error code.

use wharf_oci::{Digest, SpecError};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob unknown to this repository")]
    BlobUnknown,
    #[error("upload session unknown")]
    UploadUnknown,
    #[error("chunk must start at offset {size}, where the upload ends")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    UploadInvalid(String),
    #[error("content digest is {actual}, not the {expected} given")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("manifest unknown")]
    ManifestUnknown,
    #[error("manifest references {0}, which is not in this repository")]
    ManifestBlobUnknown(Digest),
    #[error("tag {0} already points to other content; moving it needs the overwrite right")]
    TagProtected(String),
    #[error("repository unknown")]
    NameUnknown,
    #[error("manifest is larger than the {limit}-byte limit")]
    ManifestTooLarge { limit: usize },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("request body ended early: {0}")]
    BodyIncomplete(std::io::Error),
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata database failed: {0}")]
    Database(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Io(std::io::Error::other(e))
    }
}

/// What access control is told of a store failure: the text, for its logs.
impl From<StoreError> for wharf_auth::AuthError {
    fn from(e: StoreError) -> Self {
        wharf_auth::AuthError::Store(e.to_string())
    }
}
