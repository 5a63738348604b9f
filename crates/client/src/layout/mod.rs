//! Backup and restore between a registry and an OCI image layout (a directory, or a tar of
//! one): `oci-layout`, `index.json` naming each tag with `org.opencontainers.image.ref.name`,
//! and `blobs/<alg>/<hex>`. Referrers are kept as further `index.json` entries without a
//! name, so a restore can put them back (through the tag schema where needed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use wharf_oci::media_type::OCI_INDEX;
use wharf_oci::{Descriptor, Digest, Manifest};

use crate::blobs::{FileSource, SharedProgress, Transfer};
use crate::walk::{walk, ManifestSource, Node, RepositoryManifests, Role};
use crate::{Client, Error, Reference, Result};

mod archive;
pub use archive::read_tar;
use archive::{blob_entry, TarSink};

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout directory.
pub struct OciLayout {
    root: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// What a backup or restore moved.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayoutResult {
    /// Tags (or digests, for untagged entries) written.
    pub references: Vec<String>,
    pub manifests: usize,
    pub referrers: usize,
    #[serde(serialize_with = "serialize_digests")]
    pub blobs: Vec<(Digest, Transfer)>,
}

fn serialize_digests<S: serde::Serializer>(
    v: &[(Digest, Transfer)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    #[derive(serde::Serialize)]
    struct Item<'a> {
        digest: &'a Digest,
        transfer: Transfer,
    }
    s.collect_seq(v.iter().map(|(digest, t)| Item {
        digest,
        transfer: *t,
    }))
}

impl OciLayout {
    /// Opens a layout directory, creating an empty one if `root` does not exist yet.
    pub fn create(root: &Path) -> Result<OciLayout> {
        if root.exists() && !root.is_dir() {
            return Err(Error::Invalid(format!(
                "{} is a file: a layout is a directory (or a tar, for a name ending in .tar)",
                root.display()
            )));
        }
        std::fs::create_dir_all(root.join("blobs")).map_err(|e| Error::file(root, e))?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            std::fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(|e| Error::file(&marker, e))?;
        }
        let l = OciLayout {
            root: root.to_path_buf(),
        };
        if !root.join("index.json").exists() {
            l.write_index(&Index {
                schema_version: 2,
                media_type: Some(OCI_INDEX.into()),
                manifests: Vec::new(),
            })?;
        }
        Ok(l)
    }

    /// Opens an existing layout.
    pub fn open(root: &Path) -> Result<OciLayout> {
        if !root.join("oci-layout").is_file() || !root.join("index.json").is_file() {
            return Err(Error::Invalid(format!(
                "{}: not an OCI image layout (no oci-layout or index.json)",
                root.display()
            )));
        }
        Ok(OciLayout {
            root: root.to_path_buf(),
        })
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    fn read_index(&self) -> Result<Index> {
        let p = self.root.join("index.json");
        let text = std::fs::read(&p).map_err(|e| Error::file(&p, e))?;
        serde_json::from_slice(&text).map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))
    }

    fn write_index(&self, i: &Index) -> Result<()> {
        let p = self.root.join("index.json");
        let tmp = self.root.join("index.json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(i).expect("index serialises"),
        )
        .and_then(|_| std::fs::rename(&tmp, &p))
        .map_err(|e| Error::file(&p, e))
    }

    /// Reads a blob that is small enough for memory (a manifest), verified.
    fn read_verified(&self, d: &Descriptor) -> Result<Bytes> {
        let p = self.blob_path(&d.digest);
        let b = std::fs::read(&p).map_err(|e| Error::file(&p, e))?;
        let actual = Digest::of(d.digest.algorithm(), &b);
        if actual != d.digest {
            return Err(Error::DigestMismatch {
                expected: d.digest.clone(),
                actual,
            });
        }
        Ok(Bytes::from(b))
    }

    fn write_blob(&self, d: &Digest, bytes: &[u8]) -> Result<()> {
        let p = self.blob_path(d);
        let dir = p.parent().expect("blob path has a parent");
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        std::fs::write(&p, bytes).map_err(|e| Error::file(&p, e))
    }
}

impl Client {
    /// Copies `src` (one tag or digest, or every tag when it names neither) and, with
    /// `referrers`, everything that refers to it, into the layout directory `dir` (created,
    /// or added to).
    pub async fn backup(
        &self,
        src: &Reference,
        dir: &Path,
        referrers: bool,
        progress: &SharedProgress,
    ) -> Result<LayoutResult> {
        let layout = OciLayout::create(dir)?;
        let index = layout.read_index()?;
        self.backup_into(src, Sink::Dir(layout), index, referrers, progress)
            .await
    }

    /// As [`Client::backup`], into a new tar file at `tar_path`. Blobs stream from the
    /// registry straight into the tar, one at a time, each written once; the file appears
    /// under its name only when complete.
    pub async fn backup_tar(
        &self,
        src: &Reference,
        tar_path: &Path,
        referrers: bool,
        progress: &SharedProgress,
    ) -> Result<LayoutResult> {
        let sink = Sink::Tar(Box::new(TarSink::create(tar_path).await?));
        self.backup_into(src, sink, Index::default(), referrers, progress)
            .await
    }

    async fn backup_into(
        &self,
        src: &Reference,
        mut sink: Sink,
        mut index: Index,
        referrers: bool,
        progress: &SharedProgress,
    ) -> Result<LayoutResult> {
        let refs = if src.tag.is_none() && src.digest.is_none() {
            // Tag-schema indexes (`sha256-<hex>`) are not images; the referrers they list are
            // backed up with their subjects.
            let tags = self.tags(src).await?;
            tags.iter()
                .filter(|t| !crate::referrers::is_referrers_tag(t))
                .map(|t| src.with_tag(t))
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![src.clone()]
        };
        let mut out = LayoutResult::default();
        let mut roots = Vec::new();
        for r in &refs {
            let (desc, bytes) = self.manifest(r).await?;
            let mut entry = desc.clone();
            if let Some(t) = &r.tag {
                entry.annotations = Some(BTreeMap::from([(
                    ANNOTATION_REF_NAME.to_string(),
                    t.clone(),
                )]));
                index.manifests.retain(|m| {
                    m.annotations
                        .as_ref()
                        .and_then(|a| a.get(ANNOTATION_REF_NAME))
                        != Some(t)
                });
            }
            index
                .manifests
                .retain(|m| m.digest != entry.digest || m.annotations != entry.annotations);
            index.manifests.push(entry);
            out.references
                .push(r.tag.clone().unwrap_or_else(|| desc.digest.to_string()));
            roots.push((desc, bytes));
        }
        let source = RepositoryManifests {
            client: self,
            repository: src,
        };
        for node in walk(&source, roots, referrers).await? {
            let done = sink.blobs(self, src, node.blobs(), progress).await?;
            out.blobs.extend(done);
            sink.manifest(&node.desc.digest, &node.bytes).await?;
            if node.role == Role::Referrer {
                if !index.manifests.iter().any(|m| m.digest == node.desc.digest) {
                    index.manifests.push(node.desc.clone());
                }
                out.referrers += 1;
            }
            if let (Role::Attachment, Some(tag)) = (node.role, &node.tag) {
                // Under its tag, as a tagged entry, so restore puts it back under that tag.
                index.manifests.retain(|m| {
                    m.annotations
                        .as_ref()
                        .and_then(|a| a.get(ANNOTATION_REF_NAME))
                        != Some(tag)
                });
                let mut entry = node.desc.clone();
                entry.annotations = Some(BTreeMap::from([(
                    ANNOTATION_REF_NAME.to_string(),
                    tag.clone(),
                )]));
                index.manifests.push(entry);
                out.references.push(tag.clone());
                out.referrers += 1;
            }
            out.manifests += 1;
        }
        sink.finish(&index).await?;
        Ok(out)
    }

    /// Puts every tagged manifest of the layout at `dir` (and every referrer it holds) into
    /// `dst`'s repository. A `dst` with a tag restores only the layout's only tagged entry,
    /// under that tag.
    pub async fn restore(
        &self,
        dir: &Path,
        dst: &Reference,
        progress: &SharedProgress,
    ) -> Result<LayoutResult> {
        let layout = OciLayout::open(dir)?;
        let index = layout.read_index()?;
        let (tagged, untagged): (Vec<_>, Vec<_>) = index.manifests.into_iter().partition(|m| {
            m.annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(ANNOTATION_REF_NAME))
        });
        if dst.tag.is_some() && tagged.len() != 1 {
            return Err(Error::Invalid(format!(
                "{} holds {} tagged manifests; restore to a repository without a tag",
                dir.display(),
                tagged.len()
            )));
        }
        // Untagged entries are referrers (by their subject) or untagged roots.
        let mut by_subject: Vec<(Digest, Descriptor)> = Vec::new();
        let mut roots = Vec::new();
        let mut targets: Vec<(Digest, Reference)> = Vec::new();
        for m in &tagged {
            let name = &m.annotations.as_ref().expect("partitioned on it")[ANNOTATION_REF_NAME];
            let target = match &dst.tag {
                Some(_) => dst.clone(),
                None => dst.with_tag(name)?,
            };
            targets.push((m.digest.clone(), target));
            roots.push((m.clone(), layout.read_verified(m)?));
        }
        for m in untagged {
            let bytes = layout.read_verified(&m)?;
            match Manifest::parse(Some(&m.media_type), &bytes)?.subject {
                Some(s) => by_subject.push((s.digest, m)),
                None => {
                    targets.push((m.digest.clone(), dst.with_digest(m.digest.clone())));
                    roots.push((m, bytes));
                }
            }
        }
        let source = LayoutManifests {
            layout: &layout,
            by_subject: &by_subject,
        };
        let nodes = walk(&source, roots, true).await?;
        let mut out = LayoutResult::default();
        for node in &nodes {
            let blob_target = dst.with_digest(node.desc.digest.clone());
            let done = self
                .push_layout_blobs(&layout, &blob_target, node, progress)
                .await?;
            out.blobs.extend(done);
            let (mt, bytes) = (&node.desc.media_type, node.bytes.clone());
            match node.role {
                Role::Referrer => {
                    self.put_referrer(&blob_target, mt, bytes).await?;
                    out.referrers += 1;
                    out.references.push(blob_target.to_string());
                }
                Role::Child | Role::Attachment => {
                    self.put_manifest(&blob_target, mt, bytes).await?;
                }
                Role::Root => {
                    // Every tag of this manifest; the first put stores it, the others only tag.
                    for (_, target) in targets.iter().filter(|(d, _)| *d == node.desc.digest) {
                        self.put_manifest(target, mt, bytes.clone()).await?;
                        out.references.push(target.to_string());
                    }
                }
            }
            out.manifests += 1;
        }
        // Referrers whose subject is not in the layout but already in the registry.
        for (subject, m) in &by_subject {
            if nodes.iter().any(|n| n.desc.digest == m.digest)
                || self
                    .resolve(&dst.with_digest(subject.clone()))
                    .await
                    .is_err()
            {
                continue;
            }
            let target = dst.with_digest(m.digest.clone());
            let source = LayoutManifests {
                layout: &layout,
                by_subject: &[],
            };
            let bytes = layout.read_verified(m)?;
            for node in walk(&source, vec![(m.clone(), bytes)], false).await? {
                let done = self
                    .push_layout_blobs(&layout, &target, &node, progress)
                    .await?;
                out.blobs.extend(done);
                let node_target = dst.with_digest(node.desc.digest.clone());
                if node.desc.digest == m.digest {
                    self.put_referrer(&node_target, &node.desc.media_type, node.bytes)
                        .await?;
                    out.referrers += 1;
                    out.references.push(node_target.to_string());
                } else {
                    self.put_manifest(&node_target, &node.desc.media_type, node.bytes)
                        .await?;
                }
                out.manifests += 1;
            }
        }
        Ok(out)
    }
    /// Pushes the blobs `node` needs from the layout into `target`'s repository.
    async fn push_layout_blobs(
        &self,
        layout: &OciLayout,
        target: &Reference,
        node: &Node,
        progress: &SharedProgress,
    ) -> Result<Vec<(Digest, Transfer)>> {
        futures_util::stream::iter(node.blobs())
            .map(|d| async move {
                let path = layout.blob_path(&d.digest);
                if !path.is_file() {
                    return Err(Error::NotFound(format!(
                        "{} in {}",
                        d.digest,
                        layout.root.display()
                    )));
                }
                let t = self
                    .push_blob(target, &d, &FileSource(path), progress)
                    .await?;
                Ok((d.digest, t))
            })
            .buffer_unordered(self.opts.concurrency.max(1))
            .try_collect()
            .await
    }
}

/// A layout, as a walk reads it: manifests from its blobs, referrers from the untagged
/// entries of its index.
struct LayoutManifests<'a> {
    layout: &'a OciLayout,
    by_subject: &'a [(Digest, Descriptor)],
}

#[async_trait::async_trait]
impl ManifestSource for LayoutManifests<'_> {
    async fn manifest(&self, d: &Descriptor) -> Result<(String, Bytes)> {
        Ok((d.media_type.clone(), self.layout.read_verified(d)?))
    }

    async fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        Ok(self
            .by_subject
            .iter()
            .filter(|(s, _)| s == subject)
            .map(|(_, m)| m.clone())
            .collect())
    }
}

/// Where a backup writes: a layout directory, or a tar of one written as it goes.
enum Sink {
    Dir(OciLayout),
    Tar(Box<TarSink>),
}

impl Sink {
    async fn blobs(
        &mut self,
        client: &Client,
        src: &Reference,
        blobs: Vec<Descriptor>,
        progress: &SharedProgress,
    ) -> Result<Vec<(Digest, Transfer)>> {
        match self {
            Sink::Dir(layout) => {
                let layout = &*layout;
                futures_util::stream::iter(blobs)
                    .map(|d| async move {
                        let path = layout.blob_path(&d.digest);
                        if std::fs::metadata(&path).is_ok_and(|m| m.len() == d.size) {
                            progress.finish(&d, Transfer::Exists);
                            return Ok((d.digest, Transfer::Exists));
                        }
                        let dir = path.parent().expect("blob path has a parent");
                        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
                        client.fetch_blob(src, &d, &path, progress).await?;
                        Ok::<_, Error>((d.digest, Transfer::Downloaded))
                    })
                    .buffer_unordered(client.opts.concurrency.max(1))
                    .try_collect()
                    .await
            }
            Sink::Tar(tar) => {
                let mut done = Vec::new();
                for d in blobs {
                    done.push((d.digest.clone(), tar.blob(client, src, &d, progress).await?));
                }
                Ok(done)
            }
        }
    }

    async fn manifest(&mut self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        match self {
            Sink::Dir(layout) => layout.write_blob(digest, bytes),
            Sink::Tar(tar) => {
                if tar.written.insert(digest.clone()) {
                    tar.file(&blob_entry(digest), bytes).await?;
                }
                Ok(())
            }
        }
    }

    async fn finish(self, index: &Index) -> Result<()> {
        match self {
            Sink::Dir(layout) => layout.write_index(index),
            Sink::Tar(tar) => tar.finish(index).await,
        }
    }
}
