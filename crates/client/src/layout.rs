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
use crate::{Client, Error, Reference, Result};

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
pub struct LayoutResult {
    /// Tags (or digests, for untagged entries) written.
    pub references: Vec<String>,
    pub manifests: usize,
    pub referrers: usize,
    pub blobs: Vec<(Digest, Transfer)>,
}

impl OciLayout {
    /// Opens a layout directory, creating an empty one if `root` does not exist yet.
    pub fn create(root: &Path) -> Result<OciLayout> {
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
    /// `referrers`, everything that refers to it, into the layout at `dir`.
    pub async fn backup(
        &self,
        src: &Reference,
        dir: &Path,
        referrers: bool,
        progress: &SharedProgress,
    ) -> Result<LayoutResult> {
        let layout = OciLayout::create(dir)?;
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
        let mut index = layout.read_index()?;
        for r in refs {
            let (desc, bytes) = self.manifest(&r).await?;
            self.backup_tree(&r, &layout, &desc, bytes, &mut out, progress)
                .await?;
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
            if referrers {
                let mut pending = vec![desc.digest.clone()];
                while let Some(subject) = pending.pop() {
                    for d in self.referrers(&r.with_digest(subject), None).await? {
                        let (rd, rb) = self.manifest(&r.with_digest(d.digest.clone())).await?;
                        self.backup_tree(&r, &layout, &rd, rb, &mut out, progress)
                            .await?;
                        if !index.manifests.iter().any(|m| m.digest == d.digest) {
                            index.manifests.push(d.clone());
                        }
                        out.referrers += 1;
                        pending.push(d.digest);
                    }
                }
            }
        }
        layout.write_index(&index)?;
        Ok(out)
    }

    fn backup_tree<'a>(
        &'a self,
        src: &'a Reference,
        layout: &'a OciLayout,
        desc: &'a Descriptor,
        bytes: Bytes,
        out: &'a mut LayoutResult,
        progress: &'a SharedProgress,
    ) -> futures_util::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let m = Manifest::parse(Some(&desc.media_type), &bytes)?;
            for child in &m.manifests {
                let (cd, cb) = self
                    .manifest(&src.with_digest(child.digest.clone()))
                    .await?;
                self.backup_tree(src, layout, &cd, cb, out, progress)
                    .await?;
            }
            let blobs: Vec<Descriptor> = m.config.iter().chain(&m.layers).cloned().collect();
            let done: Vec<(Digest, Transfer)> = futures_util::stream::iter(blobs)
                .map(|d| async move {
                    let path = layout.blob_path(&d.digest);
                    if std::fs::metadata(&path).is_ok_and(|m| m.len() == d.size) {
                        progress.finish(&d, Transfer::Exists);
                        return Ok((d.digest, Transfer::Exists));
                    }
                    let dir = path.parent().expect("blob path has a parent");
                    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
                    self.fetch_blob(src, &d, &path, progress).await?;
                    Ok::<_, Error>((d.digest, Transfer::Downloaded))
                })
                .buffer_unordered(self.opts.concurrency.max(1))
                .try_collect()
                .await?;
            out.blobs.extend(done);
            layout.write_blob(&desc.digest, &bytes)?;
            out.manifests += 1;
            Ok(())
        })
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
        let mut out = LayoutResult::default();
        for m in &tagged {
            let name = &m.annotations.as_ref().expect("partitioned on it")[ANNOTATION_REF_NAME];
            let target = match &dst.tag {
                Some(_) => dst.clone(),
                None => dst.with_tag(name)?,
            };
            self.restore_tree(&layout, &target, m, false, &mut out, progress)
                .await?;
            out.references.push(target.to_string());
        }
        // Referrers after their subjects, each after any referrer it refers to.
        let mut pending = untagged;
        let mut rounds = 0;
        while !pending.is_empty() && rounds < 64 {
            rounds += 1;
            let mut next = Vec::new();
            for m in pending {
                let target = dst.with_digest(m.digest.clone());
                let bytes = layout.read_verified(&m)?;
                let subject = Manifest::parse(Some(&m.media_type), &bytes)?.subject;
                let ready = match &subject {
                    Some(s) => self
                        .resolve(&dst.with_digest(s.digest.clone()))
                        .await
                        .is_ok(),
                    None => true,
                };
                if ready {
                    self.restore_tree(&layout, &target, &m, subject.is_some(), &mut out, progress)
                        .await?;
                    out.referrers += subject.is_some() as usize;
                    out.references.push(target.to_string());
                } else {
                    next.push(m);
                }
            }
            pending = next;
        }
        Ok(out)
    }

    fn restore_tree<'a>(
        &'a self,
        layout: &'a OciLayout,
        target: &'a Reference,
        desc: &'a Descriptor,
        as_referrer: bool,
        out: &'a mut LayoutResult,
        progress: &'a SharedProgress,
    ) -> futures_util::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let bytes = layout.read_verified(desc)?;
            let m = Manifest::parse(Some(&desc.media_type), &bytes)?;
            for child in &m.manifests {
                let child_target = target.with_digest(child.digest.clone());
                self.restore_tree(layout, &child_target, child, false, out, progress)
                    .await?;
            }
            let blobs: Vec<Descriptor> = m.config.iter().chain(&m.layers).cloned().collect();
            let done: Vec<(Digest, Transfer)> = futures_util::stream::iter(blobs)
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
                .await?;
            out.blobs.extend(done);
            if as_referrer {
                self.put_referrer(target, &desc.media_type, bytes).await?;
            } else {
                self.put_manifest(target, &desc.media_type, bytes).await?;
            }
            out.manifests += 1;
            Ok(())
        })
    }
}

/// Writes the layout directory `dir` as a tar file at `tar_path`.
pub fn write_tar(dir: &Path, tar_path: &Path) -> Result<()> {
    let f = std::fs::File::create(tar_path).map_err(|e| Error::file(tar_path, e))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    b.follow_symlinks(false);
    b.append_dir_all(".", dir)
        .map_err(|e| Error::file(tar_path, e))?;
    let mut w = b.into_inner().map_err(|e| Error::file(tar_path, e))?;
    std::io::Write::flush(&mut w).map_err(|e| Error::file(tar_path, e))?;
    w.get_ref().sync_all().map_err(|e| Error::file(tar_path, e))
}

/// Unpacks a layout tar into `dir`, refusing entries that would land outside it.
pub fn read_tar(tar_path: &Path, dir: &Path) -> Result<()> {
    let f = std::fs::File::open(tar_path).map_err(|e| Error::file(tar_path, e))?;
    let mut a = tar::Archive::new(std::io::BufReader::new(f));
    for entry in a.entries().map_err(|e| Error::file(tar_path, e))? {
        let mut entry = entry.map_err(|e| Error::file(tar_path, e))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue; // a layout holds only files and directories
        }
        if !entry.unpack_in(dir).map_err(|e| Error::file(tar_path, e))? {
            let p = entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(Error::Invalid(format!(
                "{}: entry {p:?} leaves the layout",
                tar_path.display()
            )));
        }
    }
    Ok(())
}
