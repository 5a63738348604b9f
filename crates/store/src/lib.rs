//! Where the registry keeps things. Two traits split the storage the way scale-out
//! deployments split it: a [`BlobStore`] (filesystem embedded, S3 for replicas) holds
//! content-addressed bytes (blobs and in-progress uploads), a [`MetadataStore`] (SQLite
//! embedded, PostgreSQL for replicas) holds everything that names them (repositories, tags,
//! manifests, blob links, referrers, upload sessions). [`Registry`] is the model on top: the
//! distribution-spec's operations over the two traits, so the HTTP layer never sees a path
//! or a query. [`open`] opens whatever the configuration names. This file only names things.

pub mod blob;
pub mod error;
pub mod fs;
pub mod gc;
pub mod immutable;
pub mod index;
pub mod indexer;
mod keyed_lock;
pub mod meta;
mod open;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod quota;
pub mod registry;
pub mod retention;
#[cfg(feature = "s3")]
pub mod s3;
mod schedule;
mod schema;
pub mod scrub;
pub mod sqlite;
pub mod usage;

pub use blob::{BlobStore, ByteStream, UploadState};
pub use error::{Result, StoreError};
pub use fs::FsBlobStore;
pub use gc::{GcOptions, GcReport};
pub use immutable::ImmutableRule;
pub use index::{ArtifactInfo, ArtifactQuery, ArtifactRecord};
pub use indexer::KindRule;
pub use meta::{MetadataStore, NewManifest, ReferrerRecord, StoredManifest, UploadRecord};
pub use open::{
    open, open_beside, open_blobs, open_metadata, BlobLocation, Metadata, MetadataLocation, Opened,
    StoreConfig,
};
#[cfg(feature = "postgres")]
pub use postgres::PostgresMetadataStore;
pub use quota::{Quota, QuotaUsage};
pub use registry::{Limits, ManifestPut, MountOutcome, Registry, Upload};
pub use retention::{RetentionRule, TagOrder};
#[cfg(feature = "s3")]
pub use s3::{S3BlobStore, S3Config};
pub use schema::SchemaVersions;
pub use scrub::{BlobCondition, ScrubReport};
pub use sqlite::SqliteMetadataStore;
pub use usage::{ArtifactBytes, Usage, OTHER_REPOSITORIES};
