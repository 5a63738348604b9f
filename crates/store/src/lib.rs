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

/// Opens the embedded default under one directory: blobs on the filesystem, metadata in
/// SQLite (`metadata.db`), and discards upload bytes that a crash left without a session.
/// Returns the registry and how many orphaned uploads were discarded.
pub async fn open_embedded(
    data_dir: &std::path::Path,
    limits: Limits,
) -> Result<(std::sync::Arc<Registry>, usize)> {
    std::fs::create_dir_all(data_dir)?;
    let blobs = FsBlobStore::open(data_dir)?;
    let meta = SqliteMetadataStore::open(data_dir.join("metadata.db"))?;
    let registry = Registry::new(
        std::sync::Arc::new(blobs),
        std::sync::Arc::new(meta),
        limits,
    );
    let orphans = registry.reconcile().await?;
    Ok((std::sync::Arc::new(registry), orphans))
}
