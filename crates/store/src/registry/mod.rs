//! The registry model: the distribution-spec's operations over a [`BlobStore`] and a
//! [`MetadataStore`]. Ordering is what keeps a crash harmless: bytes become durable before the
//! metadata that names them, so the metadata never names something missing.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use wharf_oci::manifest::ManifestKind;
use wharf_oci::{Descriptor, Digest, Manifest, Reference};

use crate::index::{ArtifactInfo, ArtifactQuery, ArtifactRecord};
use crate::indexer::{accepted_kinds, describe, KindRule};
use crate::meta::{MetadataStore, NewManifest, StoredManifest};
use crate::{BlobStore, ByteStream, Result, StoreError};

mod uploads;

/// Sizes the registry enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_manifest_size: usize,
    /// Per repository pattern, the artifact kinds a push may store (first match decides;
    /// repositories no rule matches accept every kind).
    pub kind_rules: Vec<KindRule>,
    /// Tags that never move and are never deleted (see `crate::immutable`).
    pub immutable_tags: Vec<crate::ImmutableRule>,
    /// What garbage collection keeps, per repository pattern (see `crate::retention`).
    pub retention: Vec<crate::RetentionRule>,
    /// The bytes a namespace may hold (see `crate::quota`).
    pub quotas: Vec<crate::Quota>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_size: 4 * 1024 * 1024,
            kind_rules: Vec::new(),
            immutable_tags: Vec::new(),
            retention: Vec::new(),
            quotas: Vec::new(),
        }
    }
}

/// An upload session as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub size: u64,
}

pub enum MountOutcome {
    Mounted {
        size: u64,
    },
    /// The blob could not be mounted; an ordinary upload session was opened instead.
    Upload(Upload),
}

#[derive(Debug)]
pub struct ManifestPut {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// What kind of artifact it is, as the index records it.
    pub kind: wharf_oci::ArtifactKind,
    pub media_type: String,
    pub size: u64,
    /// The manifest the tag named before, when the put moved it.
    pub moved_from: Option<Digest>,
}

pub struct Registry {
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) meta: Arc<dyn MetadataStore>,
    /// Garbage collection's gate in this process (see `crate::gc`): held shared by writes
    /// that make content referenced, exclusively by each collection step.
    pub(crate) gc_gate: tokio::sync::RwLock<()>,
    /// One collection pass at a time in this process.
    pub(crate) gc_pass: tokio::sync::Mutex<()>,
    limits: Limits,
    /// Requests on one upload session are serialised so their bytes never interleave. The
    /// lock is the session's own: a client stalled mid-chunk holds up its own session only.
    upload_locks: crate::keyed_lock::KeyedLock,
    /// Commits to a namespace under a quota check and link one at a time.
    pub(crate) quota_locks: crate::keyed_lock::KeyedLock,
}

impl Registry {
    pub fn new(blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetadataStore>, limits: Limits) -> Self {
        Registry {
            blobs,
            meta,
            limits,
            upload_locks: Default::default(),
            quota_locks: Default::default(),
            gc_gate: tokio::sync::RwLock::new(()),
            gc_pass: tokio::sync::Mutex::new(()),
        }
    }

    /// The metadata store, for what is not about content (API keys).
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Discards upload bytes that no session names (a crash between creating the two).
    pub async fn reconcile(&self) -> Result<usize> {
        let live: HashSet<String> = self.meta.upload_ids().await?.into_iter().collect();
        let mut removed = 0;
        for id in self.blobs.upload_ids().await? {
            if !live.contains(&id) {
                self.blobs.upload_abort(&id, &[]).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Discards upload sessions idle for longer than `max_idle`, and their bytes. Returns how
    /// many were expired by this call (other replicas may expire others at the same time).
    pub async fn expire_uploads(&self, max_idle: std::time::Duration) -> Result<usize> {
        const BATCH: usize = 100;
        let cutoff = crate::meta::now() - max_idle.as_secs() as i64;
        let mut total = 0;
        loop {
            let claimed = self.meta.uploads_expire(cutoff, BATCH).await?;
            for (id, state) in &claimed {
                self.blobs.upload_abort(id, state).await?;
                tracing::info!(upload = %id, "expired idle upload");
            }
            total += claimed.len();
            if claimed.len() < BATCH {
                return Ok(total);
            }
        }
    }

    // ---- blobs ----

    pub async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<u64> {
        self.meta
            .blob_get(repo, digest)
            .await?
            .ok_or(StoreError::BlobUnknown)
    }

    /// Where to send the client for `digest` instead of serving it, if the store says so.
    pub async fn blob_redirect(&self, digest: &Digest) -> Result<Option<String>> {
        self.blobs.redirect(digest).await
    }

    /// Streams `range` of a blob of `size` bytes (its recorded size).
    pub async fn blob_read(
        &self,
        digest: &Digest,
        range: Range<u64>,
        size: u64,
    ) -> Result<ByteStream> {
        self.blobs
            .read(digest, range, size)
            .await
            .inspect_err(report_missing)
    }

    /// The recorded size of a blob in `repo`, once the store confirms it holds exactly that
    /// many bytes (what a HEAD promises).
    pub async fn blob_size_checked(&self, repo: &str, digest: &Digest) -> Result<u64> {
        let recorded = self.blob_size(repo, digest).await?;
        match self.blobs.stat(digest).await? {
            Some(n) if n == recorded => Ok(recorded),
            found => {
                let e = StoreError::BlobMissing {
                    digest: digest.clone(),
                    recorded,
                    found,
                };
                report_missing(&e);
                Err(e)
            }
        }
    }

    pub async fn blob_delete(&self, repo: &str, digest: &Digest) -> Result<()> {
        if self.meta.blob_unlink(repo, digest).await? {
            Ok(())
        } else {
            Err(StoreError::BlobUnknown)
        }
    }

    /// Monolithic upload: the whole blob in one request.
    pub async fn blob_put(&self, repo: &str, digest: &Digest, body: ByteStream) -> Result<u64> {
        // The body streams outside the collector's gate; under it, the bytes are confirmed
        // and linked as one step (a collection between the two made them go: push again).
        let size = self.blobs.put(digest, body).await?;
        let checked = async {
            let lock = self.quota_lock(repo).await?;
            self.quota_commit(repo, Some(digest), size).await?;
            Ok::<_, StoreError>(lock)
        };
        let _quota = match checked.await {
            Ok(lock) => lock,
            Err(e) => {
                self.discard_unlinked(digest).await;
                return Err(e);
            }
        };
        let _gate = self.gc_gate.read().await;
        if self.blobs.stat(digest).await? != Some(size) {
            return Err(StoreError::UploadInvalid(
                "the blob was collected as garbage while it was being stored; push it again".into(),
            ));
        }
        self.meta.blob_link(repo, digest, size).await?;
        Ok(size)
    }

    /// Deletes the bytes of a blob refused at commit, unless a repository links them
    /// (another push of the same content). With replicas they are left to collection, whose
    /// age floor protects another replica between writing the same bytes and linking them;
    /// here the gate, held exclusively, keeps out every push of this process.
    async fn discard_unlinked(&self, digest: &Digest) {
        if self.meta.is_shared() {
            return;
        }
        let _gate = self.gc_gate.write().await;
        match self.meta.blob_find(digest).await {
            Ok(None) => {
                if let Err(e) = self.blobs.delete_blob(digest).await {
                    tracing::warn!(%digest, "cannot delete the bytes of a refused blob: {e}");
                }
            }
            Ok(Some(_)) => {}
            Err(e) => tracing::warn!(%digest, "cannot delete the bytes of a refused blob: {e}"),
        }
    }

    /// Links a blob that is already stored into `repo`: from `from` when given, otherwise from
    /// any repository. When it cannot, opens an ordinary upload session instead.
    pub async fn blob_mount(
        &self,
        repo: &str,
        digest: &Digest,
        from: Option<&str>,
    ) -> Result<MountOutcome> {
        let found = match from {
            Some(from) => self.meta.blob_get(from, digest).await?,
            None => self.meta.blob_find(digest).await?,
        };
        if let Some(size) = found {
            let _quota = self.quota_lock(repo).await?;
            self.quota_commit(repo, Some(digest), size).await?;
            let _gate = self.gc_gate.read().await;
            // A blob whose bytes are gone or damaged is not mounted: the client uploads it,
            // which repairs it. Nor is one whose last link went meanwhile.
            if self.blobs.stat(digest).await? == Some(size)
                && self.meta.blob_link_if_linked(repo, digest, size).await?
            {
                return Ok(MountOutcome::Mounted { size });
            }
        }
        Ok(MountOutcome::Upload(self.upload_start(repo).await?))
    }

    // ---- manifests ----

    pub async fn manifest_put(
        &self,
        repo: &str,
        reference: &Reference,
        content_type: Option<&str>,
        content: Bytes,
    ) -> Result<ManifestPut> {
        self.manifest_put_guarded(repo, reference, content_type, content, true)
            .await
    }

    /// As [`Registry::manifest_put`]; with `tag_may_move` false, a tag that points to other
    /// content is left alone and the put fails with [`StoreError::TagProtected`].
    pub async fn manifest_put_guarded(
        &self,
        repo: &str,
        reference: &Reference,
        content_type: Option<&str>,
        content: Bytes,
        tag_may_move: bool,
    ) -> Result<ManifestPut> {
        if content.len() > self.limits.max_manifest_size {
            return Err(StoreError::ManifestTooLarge {
                limit: self.limits.max_manifest_size,
            });
        }
        let manifest = Manifest::parse(content_type, &content)?;
        let immutable = matches!(reference, Reference::Tag(t)
            if crate::immutable::is_immutable(&self.limits.immutable_tags, repo, t));
        let (digest, tag) = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &content);
                if &actual != expected {
                    return Err(StoreError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                (actual, None)
            }
            Reference::Tag(t) => (Digest::sha256_of(&content), Some(t.clone())),
        };
        let size = content.len();
        let info = self.index_info(repo, &manifest, size).await?;
        let subject = manifest.subject.as_ref().map(|s| s.digest.clone());
        let annotations = manifest
            .annotations
            .as_ref()
            .filter(|a| !a.is_empty())
            .map(|a| serde_json::to_string(a).expect("string map serialises"));
        let _quota = self.quota_lock(repo).await?;
        self.quota_commit(repo, Some(&digest), content.len() as u64)
            .await?;
        let _gate = self.gc_gate.read().await;
        let moved_from = self
            .meta
            .manifest_put(NewManifest {
                repo: repo.to_string(),
                digest: digest.clone(),
                media_type: manifest.media_type.clone(),
                subject: subject.clone(),
                artifact_type: manifest.referrer_artifact_type().map(str::to_string),
                annotations,
                blobs: manifest.required_blobs().cloned().collect(),
                manifests: manifest
                    .manifests
                    .iter()
                    .map(|d| d.digest.clone())
                    .collect(),
                tag,
                tag_may_move: tag_may_move && !immutable,
                content,
                info,
            })
            .await
            .map_err(|e| match e {
                StoreError::TagProtected(t) if immutable => StoreError::TagImmutable(format!(
                    "{repo}:{t} is immutable ([[immutable_tags]]): it keeps the manifest it \
                     points to"
                )),
                e => e,
            })?;
        Ok(ManifestPut {
            digest,
            subject,
            kind: wharf_oci::ArtifactKind::of(&manifest),
            media_type: manifest.media_type.clone(),
            size: size as u64,
            moved_from,
        })
    }

    /// What the index records of a manifest about to be stored; refuses a kind the
    /// repository does not accept and a chart or bundle config that is not what it claims.
    async fn index_info(&self, repo: &str, m: &Manifest, size: usize) -> Result<ArtifactInfo> {
        let kind = wharf_oci::ArtifactKind::of(m);
        if let Some(rule) = accepted_kinds(&self.limits.kind_rules, repo) {
            if !rule.accept.contains(&kind) {
                let accepted: Vec<&str> = rule.accept.iter().map(|k| k.as_str()).collect();
                return Err(StoreError::KindRefused(format!(
                    "repository {repo} accepts only {}; this manifest is of kind {kind}",
                    accepted.join(", "),
                )));
            }
        }
        // The config is read to index it: it must be in the repository first.
        if let Some(c) = &m.config {
            let read = matches!(
                c.media_type.as_str(),
                wharf_oci::media_type::HELM_CONFIG | wharf_oci::media_type::FLUX_CONFIG
            );
            if read && self.meta.blob_get(repo, &c.digest).await?.is_none() {
                return Err(StoreError::ManifestBlobUnknown(c.digest.clone()));
            }
        }
        describe(self.blobs.as_ref(), repo, m, size).await
    }

    /// Indexes manifests stored before the index existed, in batches; returns how many.
    /// One whose config cannot be read is indexed by its kind and size alone.
    pub async fn index_backlog(&self) -> Result<usize> {
        let mut done = 0;
        loop {
            let batch = self.meta.manifests_unindexed(100).await?;
            if batch.is_empty() {
                return Ok(done);
            }
            for (repo, stored) in batch {
                let info = match Manifest::parse(Some(&stored.media_type), &stored.content) {
                    Ok(m) => {
                        match describe(self.blobs.as_ref(), &repo, &m, stored.content.len()).await {
                            Ok(info) => info,
                            Err(e) => {
                                tracing::warn!(%repo, digest = %stored.digest, "indexing by kind only: {e}");
                                ArtifactInfo {
                                    kind: wharf_oci::ArtifactKind::of(&m).as_str().into(),
                                    size: stored.content.len() as u64,
                                    ..ArtifactInfo::default()
                                }
                            }
                        }
                    }
                    Err(_) => ArtifactInfo {
                        kind: wharf_oci::ArtifactKind::Other.as_str().into(),
                        size: stored.content.len() as u64,
                        ..ArtifactInfo::default()
                    },
                };
                self.meta
                    .manifest_set_info(&repo, &stored.digest, &info)
                    .await?;
                done += 1;
            }
        }
    }

    /// Whether each store answers: the metadata database (a one-row read) and the blob
    /// store (a lookup of one digest); the errors as text.
    pub async fn ready(
        &self,
    ) -> (
        std::result::Result<(), String>,
        std::result::Result<(), String>,
    ) {
        let meta = self.meta.repositories(None, 1).await.map(drop);
        let probe = Digest::sha256_of(b"");
        let blobs = self.blobs.stat(&probe).await.map(drop);
        (
            meta.map_err(|e| e.to_string()),
            blobs.map_err(|e| e.to_string()),
        )
    }

    /// What the registry holds, naming at most `max_repositories` repositories.
    pub async fn usage(&self, max_repositories: usize) -> Result<crate::Usage> {
        self.meta.usage(max_repositories).await
    }

    /// Indexed manifests matching `q`.
    pub async fn artifacts(&self, q: &ArtifactQuery) -> Result<Vec<ArtifactRecord>> {
        self.meta.artifacts(q).await
    }

    pub async fn manifest_get(&self, repo: &str, reference: &Reference) -> Result<StoredManifest> {
        self.meta
            .manifest_get(repo, reference)
            .await?
            .ok_or(StoreError::ManifestUnknown)
    }

    /// Deleting by digest removes the manifest and its tags; by tag, only the tag.
    pub async fn manifest_delete(&self, repo: &str, reference: &Reference) -> Result<()> {
        self.refuse_deleting_immutable(repo, reference).await?;
        let found = match reference {
            Reference::Digest(d) => self.meta.manifest_delete(repo, d).await?,
            Reference::Tag(t) => self.meta.tag_delete(repo, t).await?,
        };
        if found {
            Ok(())
        } else {
            Err(StoreError::ManifestUnknown)
        }
    }

    /// Refuses to delete an immutable tag, or a manifest an immutable tag names.
    async fn refuse_deleting_immutable(&self, repo: &str, reference: &Reference) -> Result<()> {
        let rules = &self.limits.immutable_tags;
        if rules.is_empty() {
            return Ok(());
        }
        let protected: Vec<String> = match reference {
            Reference::Tag(t) if crate::immutable::is_immutable(rules, repo, t) => {
                match self.meta.manifest_get(repo, reference).await? {
                    Some(_) => vec![t.clone()],
                    None => return Err(StoreError::ManifestUnknown),
                }
            }
            Reference::Tag(_) => Vec::new(),
            Reference::Digest(d) => self
                .meta
                .tags_of(repo, d)
                .await?
                .into_iter()
                .filter(|t| crate::immutable::is_immutable(rules, repo, t))
                .collect(),
        };
        if protected.is_empty() {
            return Ok(());
        }
        Err(StoreError::TagImmutable(format!(
            "{repo}:{} is immutable ([[immutable_tags]]): it cannot be deleted, nor can the \
             manifest it names",
            protected.join(", ")
        )))
    }

    // ---- listings ----

    pub async fn tags(&self, repo: &str, last: Option<&str>, n: usize) -> Result<Vec<String>> {
        self.meta
            .tags(repo, last, n)
            .await?
            .ok_or(StoreError::NameUnknown)
    }

    pub async fn repositories(&self, last: Option<&str>, n: usize) -> Result<Vec<String>> {
        self.meta.repositories(last, n).await
    }

    /// Manifests in `repo` whose subject is `subject`, in digest order: those pushed with a
    /// `subject` field, plus those listed in a referrers-tag-schema index (`<alg>-<hex>` tag)
    /// that a client without referrers API support maintained.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let mut out: Vec<Descriptor> = Vec::new();
        for r in self.meta.referrers(repo, subject).await? {
            out.push(Descriptor {
                media_type: r.media_type,
                digest: r.digest,
                size: r.size,
                urls: None,
                annotations: r.annotations.and_then(|a| serde_json::from_str(&a).ok()),
                data: None,
                artifact_type: r.artifact_type,
                platform: None,
            });
        }
        let fallback_tag = referrers_tag(subject);
        if let Some(index) = self
            .meta
            .manifest_get(repo, &Reference::Tag(fallback_tag))
            .await?
        {
            if let Ok(m) = Manifest::parse(Some(&index.media_type), &index.content) {
                if m.kind == ManifestKind::Index {
                    let seen: HashSet<Digest> = out.iter().map(|d| d.digest.clone()).collect();
                    out.extend(
                        m.manifests
                            .into_iter()
                            .filter(|d| !seen.contains(&d.digest)),
                    );
                    out.sort_by(|a, b| a.digest.cmp(&b.digest));
                }
            }
        }
        if let Some(t) = artifact_type {
            out.retain(|d| d.artifact_type.as_deref() == Some(t));
        }
        Ok(out)
    }
}

/// Storage faults are logged where an operator looks for them, whichever request found them.
fn report_missing(e: &StoreError) {
    if let StoreError::BlobMissing { .. } = e {
        tracing::error!(
            event = "blob_missing",
            "{e}; the next push of it repairs it"
        );
    }
}

/// The tag under which the referrers tag schema keeps the index of `subject`'s referrers.
pub fn referrers_tag(subject: &Digest) -> String {
    let mut t = format!("{}-{}", subject.algorithm().as_str(), subject.hex());
    t.truncate(wharf_oci::name::MAX_TAG_LEN);
    t
}
