//! The storage crate's one error type. It names what went wrong in the registry's terms; the
//! server maps it to an OCI error code.

use wharf_oci::{Digest, SpecError};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob unknown to this repository")]
    BlobUnknown,
    /// The metadata names a blob whose bytes are gone or of another size: a storage fault.
    #[error("blob {digest} is missing from storage or damaged (recorded {recorded} bytes, found {found:?})")]
    BlobMissing {
        digest: Digest,
        recorded: u64,
        found: Option<u64>,
    },
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
    #[error("{0}")]
    TagImmutable(String),
    /// A push of a kind the repository does not accept (an operator's rule).
    #[error("{0}")]
    KindRefused(String),
    /// A push that would pass a namespace's quota (an operator's rule).
    #[error("{0}")]
    QuotaExceeded(String),
    /// Others' writes held something this one needs for longer than it waits.
    #[error("{0}")]
    Busy(String),
    #[error("repository unknown")]
    NameUnknown,
    #[error("manifest is larger than the {limit}-byte limit")]
    ManifestTooLarge { limit: usize },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("request body ended early: {0}")]
    BodyIncomplete(std::io::Error),
    #[error("storage I/O failed: {0}")]
    Io(std::io::Error),
    #[error("metadata database failed: {0}")]
    Database(String),
    /// No space left for blobs or metadata; the detail is for the log.
    #[error("storage is full: {0}")]
    StorageFull(String),
    /// The data directory (or the database) cannot be written; reads still work.
    #[error("storage is read-only: {0}")]
    ReadOnly(String),
}

impl StoreError {
    /// An I/O error by its kind: a full or read-only filesystem is a state of the registry,
    /// not a failure of one request.
    pub fn from_io(e: std::io::Error) -> StoreError {
        match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                StoreError::StorageFull(e.to_string())
            }
            std::io::ErrorKind::ReadOnlyFilesystem => StoreError::ReadOnly(e.to_string()),
            _ => StoreError::Io(e),
        }
    }

    /// Whether the process ran out of file descriptors.
    pub fn is_out_of_files(&self) -> bool {
        matches!(self, StoreError::Io(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::StorageFull(e.to_string()),
            Some(rusqlite::ErrorCode::ReadOnly) => StoreError::ReadOnly(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::from_io(e)
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
