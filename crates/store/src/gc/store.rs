//! What the collector asks of the stores: the [`GcStore`] part of a metadata backend, the
//! records it answers with, and [`GcLock`], the gate or pass lock a backend hands out.

use wharf_oci::Digest;

use crate::retention::TagRecord;
use crate::Result;

/// An untagged manifest old enough to be collected, with what could keep it.
#[derive(Debug, Clone)]
pub struct ManifestCandidate {
    pub repo: String,
    pub digest: Digest,
    pub size: u64,
    /// When it was last pushed, Unix seconds.
    pub pushed_at: i64,
    /// Its subject, when it is a referrer: it lives as long as the subject does.
    pub subject: Option<Digest>,
    /// The manifests of its repository that list it (as an index lists its children).
    pub parents: Vec<Digest>,
}

/// A blob link that doomed manifests reference, with every manifest of its repository
/// that references it.
#[derive(Debug, Clone)]
pub struct HeldLink {
    pub repo: String,
    pub digest: Digest,
    pub size: u64,
    pub holders: Vec<Digest>,
}

/// A blob's bytes in the blob store.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    /// Last modification, Unix seconds.
    pub modified: i64,
}

/// What the collector needs of a metadata store; every one is also a [`crate::MetadataStore`].
#[async_trait::async_trait]
pub trait GcStore: Send + Sync {
    /// Whether replicas share this store (another process may push while this one collects).
    fn is_shared(&self) -> bool;
    /// The right to run a collection pass, when no other replica holds it.
    async fn gc_pass_lock(&self) -> Result<Option<GcLock>>;
    /// The gate held exclusively across replicas, when free (`None`: pushes hold it).
    async fn gc_gate_exclusive(&self) -> Result<Option<GcLock>>;
    /// Untagged manifests created before `cutoff`, with their subjects and holders.
    async fn gc_manifest_candidates(&self, cutoff: i64) -> Result<Vec<ManifestCandidate>>;
    async fn gc_manifest_exists(&self, repo: &str, digest: &Digest) -> Result<bool>;
    /// Deletes each manifest, in order, that is still untagged, created before `cutoff`,
    /// held by no manifest and without a surviving subject; returns those deleted.
    async fn gc_delete_manifests(
        &self,
        victims: &[(String, Digest)],
        cutoff: i64,
    ) -> Result<Vec<(String, Digest, u64)>>;
    /// Up to `limit` blob links made before `cutoff` that no manifest references, after
    /// `after` (repository, digest) in that order.
    async fn gc_link_candidates(
        &self,
        cutoff: i64,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<(String, Digest, u64)>>;
    /// Deletes each link still made before `cutoff` and unreferenced; returns those deleted.
    async fn gc_delete_links(
        &self,
        links: &[(String, Digest)],
        cutoff: i64,
    ) -> Result<Vec<(String, Digest, u64)>>;
    /// The links made before `cutoff` that `manifests` reference, each with every manifest
    /// of its repository that references it.
    async fn gc_children_of(
        &self,
        manifests: &[ManifestCandidate],
        cutoff: i64,
    ) -> Result<Vec<HeldLink>>;
    /// The links (repository, digest) of `digests`, or every link when `None`.
    async fn gc_links(&self, digests: Option<&[Digest]>) -> Result<Vec<(String, Digest)>>;
    /// Every tag of `repo`, for retention.
    async fn gc_tags(&self, repo: &str) -> Result<Vec<TagRecord>>;
    /// Deletes `tag` of `repo` if it still names `digest` (a tag moved since it was listed
    /// stays).
    async fn gc_delete_tag(&self, repo: &str, tag: &str, digest: &Digest) -> Result<bool>;
    /// The manifests `digests` of `repo` as collection candidates, tagged or not (a dry run
    /// asks what retention's deletions would leave untagged).
    async fn gc_manifest_info(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<ManifestCandidate>>;
}

/// A lock a backend holds for the collector (the pass lock, or the gate held exclusively);
/// `release` gives it back. Dropped without release, the backend discards what held it.
pub struct GcLock(Option<Box<dyn FnOnce() -> futures_util::future::BoxFuture<'static, ()> + Send>>);

impl GcLock {
    /// A lock with nothing to give back (the backend has no replicas to exclude).
    pub fn local() -> GcLock {
        GcLock(None)
    }

    pub fn new(
        release: impl FnOnce() -> futures_util::future::BoxFuture<'static, ()> + Send + 'static,
    ) -> GcLock {
        GcLock(Some(Box::new(release)))
    }

    pub async fn release(mut self) {
        if let Some(r) = self.0.take() {
            r().await;
        }
    }
}

impl Drop for GcLock {
    /// A lock dropped unreleased (its pass failed or was cancelled) is given back all the
    /// same, in the background.
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(r());
            }
        }
    }
}
