//! The metadata store trait: everything that names content. One implementation per database;
//! each method is one transaction, so every state a reader can observe is a consistent one.

use async_trait::async_trait;
use bytes::Bytes;
use wharf_oci::{Digest, Reference};

use crate::index::{ArtifactInfo, ArtifactQuery, ArtifactRecord};
use crate::{Result, StoreError};

/// A manifest as stored: the exact bytes that were pushed and the media type they were pushed as.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
}

/// A manifest about to be stored, with what it depends on.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub repo: String,
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
    pub subject: Option<Digest>,
    /// What a referrers listing reports for this manifest.
    pub artifact_type: Option<String>,
    /// The manifest's annotations as a JSON object, for referrers listings.
    pub annotations: Option<String>,
    /// Blobs that must be linked in the repository.
    pub blobs: Vec<Digest>,
    /// Manifests (children of an index) that must exist in the repository.
    pub manifests: Vec<Digest>,
    pub tag: Option<String>,
    /// Whether `tag` may be moved off another manifest; when not, the put fails with
    /// [`StoreError::TagProtected`] inside the same transaction, so no race slips a move past.
    pub tag_may_move: bool,
    /// What listings and search know of it.
    pub info: ArtifactInfo,
}

/// A manifest whose `subject` is some digest, as a referrers listing needs it.
#[derive(Debug, Clone)]
pub struct ReferrerRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub id: String,
    pub repo: String,
    /// Bytes received and acknowledged so far.
    pub size: u64,
    /// The blob store's state for continuing the upload.
    pub state: Vec<u8>,
}

/// The garbage collector's part ([`crate::gc::GcStore`]) is a trait of its own, implemented
/// beside each backend's collection queries.
#[async_trait]
pub trait MetadataStore: crate::gc::GcStore + Send + Sync + 'static {
    /// The size of `digest` if it is linked into `repo`.
    async fn blob_get(&self, repo: &str, digest: &Digest) -> Result<Option<u64>>;
    /// The size of `digest` if any repository links it.
    async fn blob_find(&self, digest: &Digest) -> Result<Option<u64>>;
    async fn blob_link(&self, repo: &str, digest: &Digest, size: u64) -> Result<()>;
    /// Returns false when the blob was not linked.
    async fn blob_unlink(&self, repo: &str, digest: &Digest) -> Result<bool>;

    async fn upload_create(&self, repo: &str, id: &str, state: &[u8]) -> Result<()>;
    async fn upload_get(&self, id: &str) -> Result<Option<UploadRecord>>;
    /// Moves an upload's acknowledged size from `from` to `to`, with its new state; false if it
    /// was not at `from` (another request advanced it first).
    async fn upload_advance(&self, id: &str, from: u64, to: u64, state: &[u8]) -> Result<bool>;
    /// Removes the session, linking `blob` into its repository in the same transaction.
    async fn upload_complete(&self, id: &str, blob: Option<(&Digest, u64)>) -> Result<bool>;
    async fn upload_ids(&self) -> Result<Vec<String>>;
    /// Claims and deletes up to `limit` sessions not advanced since `updated_before` (Unix
    /// seconds), returning their ids and states so their bytes can be discarded. Replicas
    /// calling it at once claim disjoint sessions.
    async fn uploads_expire(
        &self,
        updated_before: i64,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>>;

    /// Stores a manifest (and its tag) after checking, in the same transaction, that all it
    /// references is present. Storing an existing manifest again only moves the tag.
    /// Stores a manifest (and its tag); returns the digest the tag named before, when it
    /// named another manifest (the tag moved).
    async fn manifest_put(&self, m: NewManifest) -> Result<Option<Digest>>;
    async fn manifest_get(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>>;
    /// Deletes a manifest and every tag on it; false when it was absent.
    async fn manifest_delete(&self, repo: &str, digest: &Digest) -> Result<bool>;
    async fn tag_delete(&self, repo: &str, tag: &str) -> Result<bool>;
    /// The tags of `repo` that name `digest`.
    async fn tags_of(&self, repo: &str, digest: &Digest) -> Result<Vec<String>>;

    /// Up to `n` tags after `last` in lexical order; `None` when the repository is unknown.
    async fn tags(&self, repo: &str, last: Option<&str>, n: usize) -> Result<Option<Vec<String>>>;
    /// Up to `n` repository names after `last` in lexical order.
    async fn repositories(&self, last: Option<&str>, n: usize) -> Result<Vec<String>>;
    /// Manifests in `repo` whose subject is `subject`, in digest order.
    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<ReferrerRecord>>;

    /// Indexed manifests matching `q` (see [`ArtifactQuery`]).
    async fn artifacts(&self, q: &ArtifactQuery) -> Result<Vec<ArtifactRecord>>;
    /// Up to `limit` manifests stored before the index existed, to index them.
    async fn manifests_unindexed(&self, limit: usize) -> Result<Vec<(String, StoredManifest)>>;
    async fn manifest_set_info(
        &self,
        repo: &str,
        digest: &Digest,
        info: &ArtifactInfo,
    ) -> Result<()>;

    /// Up to `limit` distinct blob digests linked anywhere, after `after` in digest order,
    /// each with its recorded size.
    async fn blob_digests(&self, after: Option<&str>, limit: usize) -> Result<Vec<(Digest, u64)>>;

    /// Links a blob into `repo` only if some repository links it already (a mount): read and
    /// write in one transaction, so a collector unlinking its last link in between leaves
    /// the mount to fail rather than to link bytes that are being deleted. False: not linked.
    async fn blob_link_if_linked(&self, repo: &str, digest: &Digest, size: u64) -> Result<bool>;

    /// What the registry holds, with at most `max_repositories` repositories named (see
    /// [`crate::Usage`]).
    async fn usage(&self, max_repositories: usize) -> Result<crate::Usage>;
    /// The right to run scheduled pass `name` now, when no other replica runs it.
    async fn scheduled_pass_lock(&self, _name: &str) -> Result<Option<crate::gc::GcLock>> {
        Ok(Some(crate::gc::GcLock::local()))
    }
    /// A number the registry keeps for itself under `key` (a quota's tally, when a
    /// scheduled pass last finished), shared by every replica.
    async fn state_get(&self, key: &str) -> Result<Option<i64>>;
    async fn state_set(&self, key: &str, value: i64) -> Result<()>;
    /// The lock commits to `namespace` hold across replicas while they check its quota and
    /// link (this process's own lock is taken first, by the caller).
    async fn namespace_lock(&self, _namespace: &str) -> Result<crate::gc::GcLock> {
        Ok(crate::gc::GcLock::local())
    }
    /// Whether `namespace` holds blob `digest` already, or `repo` (in it) manifest `digest`.
    async fn namespace_contains(
        &self,
        namespace: &str,
        repo: &str,
        digest: &Digest,
    ) -> Result<bool>;
    /// The bytes `namespace` (a repository and everything under it) holds, each blob and
    /// manifest once.
    async fn namespace_usage(&self, namespace: &str) -> Result<u64>;
}

/// Seconds since the epoch: the databases' timestamps.
pub use wharf_oci::unix_now as now;

/// A digest read back from a database, which wrote only valid ones.
pub(crate) fn parse_digest(s: String) -> Result<Digest> {
    s.parse()
        .map_err(|e| StoreError::Database(format!("corrupt digest in database: {e}")))
}

/// API keys live in the metadata database; access control reads them through its own trait,
/// which each backend implements by delegating to its `db_api_key_*` methods.
macro_rules! api_key_store {
    ($backend:ty) => {
        #[async_trait::async_trait]
        impl wharf_auth::ApiKeyStore for $backend {
            async fn api_key_create(
                &self,
                key: &wharf_auth::ApiKeyRecord,
            ) -> Result<bool, wharf_auth::AuthError> {
                Ok(self.db_api_key_create(key).await?)
            }
            async fn api_key_get(
                &self,
                name: &str,
            ) -> Result<Option<wharf_auth::ApiKeyRecord>, wharf_auth::AuthError> {
                Ok(self.db_api_key_get(name).await?)
            }
            async fn api_key_list(
                &self,
            ) -> Result<Vec<wharf_auth::ApiKeyRecord>, wharf_auth::AuthError> {
                Ok(self.db_api_key_list().await?)
            }
            async fn api_key_revoke(
                &self,
                name: &str,
                at: i64,
            ) -> Result<bool, wharf_auth::AuthError> {
                Ok(self.db_api_key_revoke(name, at).await?)
            }
        }
    };
}
pub(crate) use api_key_store;
