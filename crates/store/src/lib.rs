//! Where the registry keeps things. Two traits split the storage the way scale-out deployments
//! split it: a [`BlobStore`] holds content-addressed bytes (blobs and in-progress uploads), a
//! [`MetadataStore`] holds everything that names them (repositories, tags, manifests, blob
//! links, referrers, upload sessions). [`Registry`] is the model on top: the distribution-spec's
//! operations expressed over the two traits, so the HTTP layer never sees a path or a query.

pub mod blob;
pub mod error;
pub mod fs;
pub mod meta;
pub mod registry;
pub mod sqlite;

pub use blob::{BlobStore, ByteStream};
pub use error::{Result, StoreError};
pub use fs::FsBlobStore;
pub use meta::{MetadataStore, NewManifest, ReferrerRecord, StoredManifest, UploadRecord};
pub use registry::{Limits, ManifestPut, MountOutcome, Registry, Upload};
pub use sqlite::SqliteMetadataStore;
