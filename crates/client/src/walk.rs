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
}

/// How a manifest was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// One of the manifests the walk started from.
    Root,
    /// Listed by an index.
    Child,
    /// Refers to a manifest reached before it.
    Referrer,
}

/// A manifest in walk order.
pub(crate) struct Node {
    /// The descriptor it was reached by (its media type as served).
    pub desc: Descriptor,
    pub bytes: Bytes,
    pub manifest: Manifest,
    pub role: Role,
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
/// a root or of a referrer, recursively.
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
}
