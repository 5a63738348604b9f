//! The words of the OCI distribution-spec v1.1 and image-spec v1.1 (plus Docker schema2), as
//! types: [`Digest`], repository names, [`Reference`], media types, [`Manifest`] parsing and
//! validation, and the spec's [`ErrorCode`]s. Nothing here does I/O, so every other crate can
//! depend on it and its rules can be unit-tested exhaustively.

pub mod constraint;
pub mod digest;
pub mod error;
pub mod kind;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod pattern;

pub use constraint::Constraint;
pub use digest::{Algorithm, Digest, Hasher};
pub use error::{ErrorCode, SpecError};
pub use kind::ArtifactKind;
pub use manifest::{Descriptor, Manifest, ManifestKind};
pub use name::{validate_repository, validate_tag, Reference, MAX_NAME_LEN};
pub use pattern::Pattern;

/// Seconds since the Unix epoch: the timestamps of the databases, tokens and API keys.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
