//! One walk over a tree of manifests, shared by copy, backup and restore. It reads the
//! manifests and decides their order; what to do with each (copy its blobs and put it, write
//! it into a layout, push it from one) is the workflow's. The order is the one a registry
//! accepts: an index's children before the index, and the referrers of what was reached
//! after their subjects (followed recursively, referrers of referrers included). Each
//! manifest appears once, however many tags, indexes or subjects lead to it.

use std::collections::HashSet;

use async_trait::async_trait;
use bytes::Bytes;
use wharf_oci::{Descriptor, Digest, Manifest};

use crate::{Client, Reference, Result};

/// Where the walk reads manifests: a registry repository or an OCI layout.
#[async_trait]
pub(crate) trait ManifestSource: Send + Sync {
    /// The bytes of the manifest `d` names, verified against its digest, and the media type
    /// it is served as.
    async fn manifest(&self, d: &Descriptor) -> Result<(String, Bytes)>;
    /// The manifests whose subject is `subject`.
    async fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>>;
    /// Manifests tied to `subject` by cosign's tag scheme (`sha256-<hex>.sig`, `.att`,
    /// `.sbom`), with their tags.
    async fn attachments(&self, _subject: &Digest) -> Result<Vec<(String, Descriptor)>> {
        Ok(Vec::new())
    }
}

/// The tag suffixes cosign attaches signatures, attestations and SBOMs under.
pub(crate) const ATTACHMENT_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// How a manifest was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// One of the manifests the walk started from.
    Root,
    /// Listed by an index.
    Child,
    /// Refers to a manifest reached before it.
    Referrer,
    /// Tied to a manifest reached before it by cosign's tag scheme; `Node::tag` says which.
    Attachment,
}

/// A manifest in walk order.
pub(crate) struct Node {
    /// The descriptor it was reached by (its media type as served).
    pub desc: Descriptor,
    pub bytes: Bytes,
    pub manifest: Manifest,
    pub role: Role,
    /// The tag an `Attachment` lives under.
    pub tag: Option<String>,
}

impl Node {
    /// The blobs this manifest needs: its config and layers.
    pub fn blobs(&self) -> Vec<Descriptor> {
        self.manifest
            .config
            .iter()
            .chain(&self.manifest.layers)
            .cloned()
            .collect()
    }
}

/// Walks from `roots` (descriptor and bytes each); with `referrers`, also every referrer of
/// a root or of a referrer, recursively, and the manifests cosign's tag scheme ties to them.
pub(crate) async fn walk(
    source: &dyn ManifestSource,
    roots: Vec<(Descriptor, Bytes)>,
    referrers: bool,
) -> Result<Vec<Node>> {
    let mut w = Walk {
        source,
        seen: HashSet::new(),
        nodes: Vec::new(),
    };
    let mut subjects = Vec::new();
    for (desc, bytes) in roots {
        subjects.push(desc.digest.clone());
        w.tree(desc, bytes, Role::Root).await?;
    }
    if referrers {
        while let Some(subject) = subjects.pop() {
            for d in source.referrers(&subject).await? {
                if w.seen.contains(&d.digest) {
                    continue;
                }
                let (media_type, bytes) = source.manifest(&d).await?;
                subjects.push(d.digest.clone());
                w.tree(Descriptor { media_type, ..d }, bytes, Role::Referrer)
                    .await?;
            }
            for (tag, d) in source.attachments(&subject).await? {
                if w.seen.contains(&d.digest) {
                    continue;
                }
                let (media_type, bytes) = source.manifest(&d).await?;
                subjects.push(d.digest.clone());
                w.tree(Descriptor { media_type, ..d }, bytes, Role::Attachment)
                    .await?;
                if let Some(n) = w.nodes.last_mut() {
                    n.tag = Some(tag);
                }
            }
        }
    }
    Ok(w.nodes)
}

struct Walk<'a> {
    source: &'a dyn ManifestSource,
    seen: HashSet<Digest>,
    nodes: Vec<Node>,
}

impl Walk<'_> {
    /// The manifest and, before it, every child it lists that was not reached yet.
    fn tree(
        &mut self,
        desc: Descriptor,
        bytes: Bytes,
        role: Role,
    ) -> futures_util::future::BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if !self.seen.insert(desc.digest.clone()) {
                return Ok(());
            }
            let manifest = Manifest::parse(Some(&desc.media_type), &bytes)?;
            for child in &manifest.manifests {
                if self.seen.contains(&child.digest) {
                    continue;
                }
                let (media_type, cb) = self.source.manifest(child).await?;
                let cd = Descriptor {
                    media_type,
                    ..child.clone()
                };
                self.tree(cd, cb, Role::Child).await?;
            }
            self.nodes.push(Node {
                desc,
                bytes,
                manifest,
                role,
                tag: None,
            });
            Ok(())
        })
    }
}

/// A repository of a registry, as a walk reads it.
pub(crate) struct RepositoryManifests<'a> {
    pub client: &'a Client,
    pub repository: &'a Reference,
}

#[async_trait]
impl ManifestSource for RepositoryManifests<'_> {
    async fn manifest(&self, d: &Descriptor) -> Result<(String, Bytes)> {
        let (fetched, bytes) = self
            .client
            .manifest(&self.repository.with_digest(d.digest.clone()))
            .await?;
        Ok((fetched.media_type, bytes))
    }

    async fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        self.client
            .referrers(&self.repository.with_digest(subject.clone()), None)
            .await
    }

    async fn attachments(&self, subject: &Digest) -> Result<Vec<(String, Descriptor)>> {
        let mut out = Vec::new();
        for suffix in ATTACHMENT_SUFFIXES {
            let tag = format!(
                "{}-{}.{suffix}",
                subject.algorithm().as_str(),
                subject.hex()
            );
            match self.client.resolve(&self.repository.with_tag(&tag)?).await {
                Ok(d) => out.push((tag, d)),
                Err(crate::Error::NotFound(_)) => {}
                Err(e) if e.status() == Some(404) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
