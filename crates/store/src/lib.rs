//! Where the registry keeps things. Two traits split the storage the way scale-out deployments
//! split it: a [`BlobStore`] (filesystem embedded, S3 for replicas) holds content-addressed bytes (blobs and in-progress uploads), a
//! [`MetadataStore`] (SQLite embedded, PostgreSQL for replicas) holds everything that names them (repositories, tags, manifests, blob
//! links, referrers, upload sessions). [`Registry`] is the model on top: the distribution-spec's
//! operations expressed over the two traits, so the HTTP layer never sees a path or a query.

pub mod blob;
pub mod error;
pub mod fs;
pub mod meta;
pub mod postgres;
pub mod registry;
pub mod s3;
pub mod sqlite;

pub use blob::{BlobStore, ByteStream, UploadState};
pub use error::{Result, StoreError};
pub use fs::FsBlobStore;
pub use meta::{
    ApiKeyRecord, MetadataStore, NewManifest, ReferrerRecord, StoredManifest, UploadRecord,
};
pub use postgres::{PostgresMetadataStore, SchemaVersions};
pub use registry::{Limits, ManifestPut, MountOutcome, Registry, Upload};
pub use s3::{S3BlobStore, S3Config};
pub use sqlite::SqliteMetadataStore;

/// Where the metadata lives.
#[derive(Debug, Clone)]
pub enum MetadataLocation {
    /// SQLite, `metadata.db` in the data directory: the embedded default.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL URL, for replicas sharing one database.
    Postgres(String),
}

impl MetadataLocation {
    /// `metadata_url` when given (it must be a `postgres://` or `postgresql://` URL), else
    /// SQLite in `data_dir`.
    pub fn choose(data_dir: &std::path::Path, metadata_url: Option<&str>) -> Result<Self> {
        match metadata_url {
            None => Ok(MetadataLocation::Sqlite(data_dir.join("metadata.db"))),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(MetadataLocation::Postgres(u.to_string()))
            }
            Some(_) => Err(StoreError::Database(
                "metadata_url must be a postgres:// URL (leave it unset for SQLite)".into(),
            )),
        }
    }

    /// Opens the metadata store, applying any migrations it lacks.
    pub async fn open(&self) -> Result<(std::sync::Arc<dyn MetadataStore>, SchemaVersions)> {
        Ok(match self {
            MetadataLocation::Sqlite(path) => {
                let path = path.clone();
                let store = tokio::task::spawn_blocking(move || {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    SqliteMetadataStore::open(path)
                })
                .await??;
                let v = store.schema_versions();
                (std::sync::Arc::new(store), v)
            }
            MetadataLocation::Postgres(url) => {
                let store = PostgresMetadataStore::connect(url)?;
                let v = store.migrate().await?;
                (std::sync::Arc::new(store), v)
            }
        })
    }
}

/// Where the blobs live.
#[derive(Debug, Clone)]
pub enum BlobLocation {
    /// A content-addressed directory: the embedded default.
    Filesystem(std::path::PathBuf),
    /// An S3-compatible bucket, for replicas sharing one store.
    S3(S3Config),
}

impl BlobLocation {
    pub fn open(&self) -> Result<std::sync::Arc<dyn BlobStore>> {
        Ok(match self {
            BlobLocation::Filesystem(dir) => {
                std::fs::create_dir_all(dir)?;
                std::sync::Arc::new(FsBlobStore::open(dir)?)
            }
            BlobLocation::S3(c) => std::sync::Arc::new(S3BlobStore::new(c)?),
        })
    }
}

/// Opens the registry: blobs and metadata where they are configured to be, after discarding
/// upload bytes that a crash left without a session. Returns the registry and how many
/// orphaned uploads were discarded.
pub async fn open_registry(
    blobs: &BlobLocation,
    metadata: &MetadataLocation,
    limits: Limits,
) -> Result<(std::sync::Arc<Registry>, usize)> {
    let blobs = blobs.open()?;
    let (meta, _) = metadata.open().await?;
    let registry = Registry::new(blobs, meta, limits);
    let orphans = registry.reconcile().await?;
    Ok((std::sync::Arc::new(registry), orphans))
}
