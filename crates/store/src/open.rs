//! Opening the configured stores: the one function that `wharf serve`, `migrate` and `admin`
//! (and later `gc` and `scrub`) call, so where the metadata and the blobs live is decided in
//! one place. SQLite and the filesystem are always built in; PostgreSQL and S3 are the
//! `postgres` and `s3` features (on by default), and asking for a backend that this build
//! lacks is an error that says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wharf_auth::ApiKeyStore;

use crate::{BlobStore, FsBlobStore, Limits, MetadataStore, Registry, Result, SchemaVersions};
use crate::{SqliteMetadataStore, StoreError};

#[cfg(feature = "s3")]
pub use crate::s3::S3Config;

/// Where the metadata lives.
#[derive(Debug, Clone)]
pub enum MetadataLocation {
    /// SQLite, `metadata.db` in the data directory: the embedded default.
    Sqlite(PathBuf),
    /// A PostgreSQL URL, for replicas sharing one database.
    Postgres(String),
}

impl MetadataLocation {
    /// `metadata_url` when given (it must be a `postgres://` or `postgresql://` URL), else
    /// SQLite in `data_dir`.
    pub fn choose(data_dir: &Path, metadata_url: Option<&str>) -> Result<Self> {
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
}

/// Where the blobs live.
#[derive(Debug, Clone)]
pub enum BlobLocation {
    /// A content-addressed directory: the embedded default.
    Filesystem(PathBuf),
    /// An S3-compatible bucket, for replicas sharing one store.
    #[cfg(feature = "s3")]
    S3(S3Config),
}

/// Everything that says where a registry's data is.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub metadata: MetadataLocation,
    pub blobs: BlobLocation,
    pub limits: Limits,
}

impl StoreConfig {
    /// The embedded default, or PostgreSQL when `metadata_url` is given; blobs in `data_dir`.
    pub fn new(data_dir: &Path, metadata_url: Option<&str>) -> Result<StoreConfig> {
        Ok(StoreConfig {
            metadata: MetadataLocation::choose(data_dir, metadata_url)?,
            blobs: BlobLocation::Filesystem(data_dir.to_path_buf()),
            limits: Limits::default(),
        })
    }
}

/// The metadata database, seen through both of its traits.
pub struct Metadata {
    pub content: Arc<dyn MetadataStore>,
    pub api_keys: Arc<dyn ApiKeyStore>,
    pub schema: SchemaVersions,
}

/// An opened registry.
pub struct Opened {
    pub registry: Arc<Registry>,
    pub api_keys: Arc<dyn ApiKeyStore>,
    /// Upload files that a crash left without a session, discarded at start.
    pub orphans: usize,
}

/// Opens the metadata store, applying any migrations it lacks.
pub async fn open_metadata(location: &MetadataLocation) -> Result<Metadata> {
    match location {
        MetadataLocation::Sqlite(path) => {
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                SqliteMetadataStore::open(path)
            })
            .await??;
            let schema = store.schema_versions();
            let store = Arc::new(store);
            Ok(Metadata {
                content: store.clone(),
                api_keys: store,
                schema,
            })
        }
        #[cfg(feature = "postgres")]
        MetadataLocation::Postgres(url) => {
            let store = crate::PostgresMetadataStore::connect(url)?;
            let schema = store.migrate().await?;
            let store = Arc::new(store);
            Ok(Metadata {
                content: store.clone(),
                api_keys: store,
                schema,
            })
        }
        #[cfg(not(feature = "postgres"))]
        MetadataLocation::Postgres(_) => Err(StoreError::Database(
            "this Wharf was built without PostgreSQL support (the `postgres` feature)".into(),
        )),
    }
}

/// Opens the blob store.
pub fn open_blobs(location: &BlobLocation) -> Result<Arc<dyn BlobStore>> {
    Ok(match location {
        BlobLocation::Filesystem(dir) => {
            std::fs::create_dir_all(dir)?;
            Arc::new(FsBlobStore::open(dir)?)
        }
        #[cfg(feature = "s3")]
        BlobLocation::S3(c) => Arc::new(crate::S3BlobStore::new(c)?),
    })
}

/// Opens the registry for a tool that runs beside serving replicas (`wharf scrub`): no
/// leftovers are cleaned up, since the servers' uploads in flight look just like them.
pub async fn open_beside(config: &StoreConfig) -> Result<Arc<Registry>> {
    let blobs: Arc<dyn BlobStore> = match &config.blobs {
        BlobLocation::Filesystem(dir) => Arc::new(FsBlobStore::attach(dir)?),
        #[cfg(feature = "s3")]
        BlobLocation::S3(c) => Arc::new(crate::S3BlobStore::new(c)?),
    };
    let meta = open_metadata(&config.metadata).await?;
    Ok(Arc::new(Registry::new(
        blobs,
        meta.content,
        config.limits.clone(),
    )))
}

/// Opens the registry: blobs and metadata where they are configured to be, after discarding
/// upload bytes that a crash left without a session.
pub async fn open(config: &StoreConfig) -> Result<Opened> {
    let blobs = open_blobs(&config.blobs)?;
    let meta = open_metadata(&config.metadata).await?;
    let registry = Registry::new(blobs, meta.content, config.limits.clone());
    let orphans = registry.reconcile().await?;
    Ok(Opened {
        registry: Arc::new(registry),
        api_keys: meta.api_keys,
        orphans,
    })
}
