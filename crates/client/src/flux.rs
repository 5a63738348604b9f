//! Flux manifest bundles (`flux push artifact`'s format): one
//! `application/vnd.cncf.flux.content.v1.tar+gzip` layer holding a directory (entries
//! relative to it, `.` first, owners and times zeroed, symlinks left out), the config
//! `application/vnd.cncf.flux.config.v1+json` with the bytes flux writes, and the
//! `org.opencontainers.image.created|source|revision` annotations flux controllers read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use serde::Serialize;
use wharf_oci::media_type::{FLUX_CONFIG, FLUX_CONTENT, OCI_MANIFEST};
use wharf_oci::{Digest, Manifest};

use crate::artifact::{now_rfc3339, unpack_directory_limited, ANNOTATION_CREATED};
use crate::blobs::{BytesSource, FileSource, NoProgress, SharedProgress};
use crate::manifests::descriptor;
use crate::{Client, Error, Reference, Result};

pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";
pub const ANNOTATION_REVISION: &str = "org.opencontainers.image.revision";

/// What `flux push artifact` leaves out unless told otherwise (`--ignore-paths`).
pub const DEFAULT_IGNORE: &[&str] = &[
    ".git/",
    ".gitignore",
    ".gitmodules",
    ".gitattributes",
    "*.jpg",
    "*.jpeg",
    "*.gif",
    "*.png",
    "*.wmv",
    "*.flv",
    "*.tar.gz",
    "*.zip",
];

/// How much a pulled bundle may expand to by default (flux's own untar limit).
pub const DEFAULT_MAX_SIZE: u64 = 100 << 20;

/// The config blob flux writes: go-containerregistry's empty image config, byte for byte.
const CONFIG: &[u8] = br#"{"architecture":"","created":"0001-01-01T00:00:00Z","os":"","rootfs":{"type":"layers","diff_ids":null},"config":{}}"#;

/// A bundle's provenance: where its files came from.
#[derive(Debug, Clone, Default)]
pub struct BundleMeta {
    pub source: String,
    pub revision: String,
    /// RFC 3339; now when absent.
    pub created: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// One tagged bundle, as `flux list artifacts` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleInfo {
    pub reference: String,
    pub tag: String,
    pub digest: Digest,
    pub source: Option<String>,
    pub revision: Option<String>,
    pub created: Option<String>,
}

/// What a bundle push stored.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundlePushed {
    pub reference: String,
    pub digest: Digest,
    pub files: usize,
    pub size: u64,
}

/// One difference between a directory and a bundle.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "change", content = "path")]
pub enum Difference {
    /// In the directory, not in the bundle.
    Added(String),
    /// In the bundle, not in the directory.
    Removed(String),
    /// In both, with other content or mode.
    Changed(String),
}

// Field order of go-containerregistry's manifest and descriptor.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FluxManifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: FluxDescriptor<'a>,
    layers: [FluxDescriptor<'a>; 1],
    annotations: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FluxDescriptor<'a> {
    media_type: &'a str,
    size: u64,
    digest: &'a Digest,
}

fn ignore_matcher(root: &Path, patterns: &[String]) -> Result<Gitignore> {
    let mut b = GitignoreBuilder::new(root);
    for p in patterns {
        b.add_line(None, p)
            .map_err(|e| Error::Invalid(format!("ignore pattern {p:?}: {e}")))?;
    }
    b.build().map_err(|e| Error::Invalid(e.to_string()))
}

/// The files of a bundle directory after the ignore rules, directories first in walk order,
/// as flux's tar walks it. Symlinks and other special files are left out, as flux leaves
/// them out.
fn walk(root: &Path, ignore: &Gitignore) -> Result<Vec<(String, PathBuf, std::fs::Metadata)>> {
    let mut out = Vec::new();
    fn go(
        root: &Path,
        dir: &Path,
        ignore: &Gitignore,
        out: &mut Vec<(String, PathBuf, std::fs::Metadata)>,
    ) -> Result<()> {
        let entries = crate::artifact::sorted_entries(dir)?;
        for e in entries {
            let path = e.path();
            let md = std::fs::symlink_metadata(&path).map_err(|err| Error::file(&path, err))?;
            if !md.is_dir() && !md.is_file() {
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .expect("walked from root")
                .to_string_lossy()
                .replace('\\', "/");
            if ignore
                .matched_path_or_any_parents(&rel, md.is_dir())
                .is_ignore()
            {
                continue;
            }
            let is_dir = md.is_dir();
            out.push((rel, path.clone(), md));
            if is_dir {
                go(root, &path, ignore, out)?;
            }
        }
        Ok(())
    }
    go(root, root, ignore, &mut out)?;
    Ok(out)
}

/// Packs `path` (a directory, or one file) as flux does into a temporary `.tgz`; returns it
/// and how many files it holds.
pub fn build_bundle(path: &Path, ignore: &[String]) -> Result<(tempfile::NamedTempFile, usize)> {
    let md = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::Invalid(format!("{}: no such file or directory", path.display()))
        }
        _ => Error::file(path, e),
    })?;
    let (root, entries) = if md.is_dir() {
        let m = ignore_matcher(path, ignore)?;
        (path.to_path_buf(), walk(path, &m)?)
    } else {
        // One file: flux stages it alone in a directory and packs that.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::Invalid(format!("{}: no file name", path.display())))?;
        (
            path.to_path_buf(),
            vec![(name, path.to_path_buf(), md.clone())],
        )
    };
    let tmp = tempfile::NamedTempFile::new().map_err(|e| Error::file(&root, e))?;
    let gz = flate2::GzBuilder::new().mtime(0).write(
        std::io::BufWriter::new(tmp.reopen().map_err(|e| Error::file(&root, e))?),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    let header = |md: &std::fs::Metadata, size: u64| {
        use std::os::unix::fs::PermissionsExt;
        let mut h = tar::Header::new_ustar();
        h.set_mode(md.permissions().mode() & 0o7777);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let root_md = std::fs::metadata(if md.is_dir() { path } else { Path::new(".") })
        .map_err(|e| Error::file(path, e))?;
    let mut h = header(&root_md, 0);
    h.set_entry_type(tar::EntryType::Directory);
    tar.append_data(&mut h, ".", std::io::empty())
        .map_err(|e| Error::file(path, e))?;
    let mut files = 0;
    for (rel, src, md) in &entries {
        if md.is_dir() {
            let mut h = header(md, 0);
            h.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut h, rel, std::io::empty())
        } else {
            files += 1;
            let f = std::fs::File::open(src).map_err(|e| Error::file(src, e))?;
            let mut h = header(md, md.len());
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, rel, f)
        }
        .map_err(|e| Error::file(src, e))?;
    }
    let gz = tar.into_inner().map_err(|e| Error::file(path, e))?;
    let mut w = gz.finish().map_err(|e| Error::file(path, e))?;
    std::io::Write::flush(&mut w).map_err(|e| Error::file(path, e))?;
    Ok((tmp, files))
}

fn quiet() -> SharedProgress {
    Arc::new(NoProgress)
}

impl Client {
    /// Pushes `path` as a Flux bundle under `r`'s tag.
    pub async fn push_bundle(
        &self,
        r: &Reference,
        path: &Path,
        meta: &BundleMeta,
        ignore: &[String],
        progress: &SharedProgress,
    ) -> Result<BundlePushed> {
        if r.tag.is_none() {
            return Err(Error::Invalid(format!(
                "{r}: give the bundle a tag (oci://HOST/REPO:TAG)"
            )));
        }
        let created = match &meta.created {
            Some(c) => {
                humantime::parse_rfc3339_weak(c).map_err(|e| {
                    Error::Invalid(format!("--created {c:?} is not an RFC 3339 time: {e}"))
                })?;
                c.clone()
            }
            None => now_rfc3339(),
        };
        let (p, ign) = (path.to_path_buf(), ignore.to_vec());
        let (tgz, files) = tokio::task::spawn_blocking(move || build_bundle(&p, &ign))
            .await
            .map_err(|e| Error::Invalid(format!("packing: {e}")))??;
        let (digest, size) = crate::artifact::hash_file(tgz.path()).await?;
        let layer = descriptor(FLUX_CONTENT.into(), digest, size);
        let config = descriptor(
            FLUX_CONFIG.into(),
            Digest::sha256_of(CONFIG),
            CONFIG.len() as u64,
        );
        self.push_blob(r, &layer, &FileSource(tgz.path().to_path_buf()), progress)
            .await?;
        self.push_blob(
            r,
            &config,
            &BytesSource(Bytes::from_static(CONFIG)),
            &quiet(),
        )
        .await?;
        let mut annotations = meta.annotations.clone();
        annotations.insert(ANNOTATION_CREATED.into(), created);
        annotations.insert(ANNOTATION_SOURCE.into(), meta.source.clone());
        annotations.insert(ANNOTATION_REVISION.into(), meta.revision.clone());
        let manifest = serde_json::to_vec(&FluxManifest {
            schema_version: 2,
            media_type: OCI_MANIFEST,
            config: FluxDescriptor {
                media_type: FLUX_CONFIG,
                size: config.size,
                digest: &config.digest,
            },
            layers: [FluxDescriptor {
                media_type: FLUX_CONTENT,
                size: layer.size,
                digest: &layer.digest,
            }],
            annotations: &annotations,
        })
        .expect("JSON serialises");
        let digest = self.put_manifest(r, OCI_MANIFEST, manifest.into()).await?;
        Ok(BundlePushed {
            reference: r.with_digest(digest.clone()).to_string(),
            digest,
            files,
            size,
        })
    }

    /// Unpacks the bundle `r` names into `out`, refusing one that expands past `max_size`.
    /// The files land in a staging directory first: a refused bundle leaves `out` untouched.
    pub async fn pull_bundle(
        &self,
        r: &Reference,
        out: &Path,
        max_size: u64,
    ) -> Result<BundleInfo> {
        let (desc, bytes) = self.manifest(r).await?;
        let m = Manifest::parse(Some(&desc.media_type), &bytes)?;
        let layer = m
            .layers
            .iter()
            .find(|l| l.media_type == FLUX_CONTENT)
            .or_else(|| m.layers.iter().find(|l| l.media_type.ends_with("tar+gzip")))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{r} is not a Flux bundle (no {FLUX_CONTENT} layer); pull it with `wharf pull`"
                ))
            })?
            .clone();
        let at = r.with_digest(desc.digest.clone());
        crate::artifact::create_output_dir(out)?;
        let staging = tempfile::Builder::new()
            .prefix(".wharf-bundle-")
            .tempdir_in(out)
            .map_err(|e| Error::file(out, e))?;
        let blob = staging.path().join(".layer");
        self.fetch_blob(&at, &layer, &blob, &quiet()).await?;
        let files = staging.path().join("files");
        let (b, f) = (blob.clone(), files.clone());
        tokio::task::spawn_blocking(move || unpack_directory_limited(&b, &f, max_size))
            .await
            .map_err(|e| Error::Invalid(format!("unpacking: {e}")))??;
        move_into(&files, out)?;
        Ok(info(r, r.tag.clone().unwrap_or_default(), desc.digest, &m))
    }

    /// Every tagged bundle of `repo`, with its source, revision and creation time.
    pub async fn list_bundles(&self, repo: &Reference) -> Result<Vec<BundleInfo>> {
        let tags = self.tags(repo).await?;
        let found: Vec<Option<BundleInfo>> = futures_util::stream::iter(tags)
            .map(|t| async move {
                let r = repo.with_tag(&t)?;
                let (desc, bytes) = self.manifest(&r).await?;
                let m = Manifest::parse(Some(&desc.media_type), &bytes)?;
                let is_bundle = m
                    .config
                    .as_ref()
                    .is_some_and(|c| c.media_type == FLUX_CONFIG)
                    || m.layers.iter().any(|l| l.media_type == FLUX_CONTENT);
                Ok::<_, Error>(is_bundle.then(|| info(&r, t, desc.digest, &m)))
            })
            .buffered(self.opts.concurrency.max(1))
            .try_collect()
            .await?;
        let mut out: Vec<BundleInfo> = found.into_iter().flatten().collect();
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.tag.cmp(&b.tag)));
        Ok(out)
    }

    /// How the directory `path` (after the ignore rules) differs from the bundle `r`.
    pub async fn diff_bundle(
        &self,
        r: &Reference,
        path: &Path,
        ignore: &[String],
        max_size: u64,
    ) -> Result<Vec<Difference>> {
        let tmp = tempfile::tempdir().map_err(|e| Error::file(path, e))?;
        self.pull_bundle(r, tmp.path(), max_size).await?;
        let local = file_set(path, ignore)?;
        let remote = file_set(tmp.path(), &[])?;
        let mut out = Vec::new();
        for (p, l) in &local {
            match remote.get(p) {
                None => out.push(Difference::Added(p.clone())),
                Some(r) if r != l => out.push(Difference::Changed(p.clone())),
                _ => {}
            }
        }
        for p in remote.keys().filter(|p| !local.contains_key(*p)) {
            out.push(Difference::Removed(p.clone()));
        }
        out.sort_by(|a, b| key(a).cmp(key(b)));
        Ok(out)
    }
}

fn key(d: &Difference) -> &str {
    match d {
        Difference::Added(p) | Difference::Removed(p) | Difference::Changed(p) => p,
    }
}

/// Files of a directory by relative path: content digest and executable bit.
fn file_set(dir: &Path, ignore: &[String]) -> Result<BTreeMap<String, (Digest, bool)>> {
    use std::os::unix::fs::PermissionsExt;
    let m = ignore_matcher(dir, ignore)?;
    let mut out = BTreeMap::new();
    for (rel, src, md) in walk(dir, &m)? {
        if md.is_file() {
            let bytes = std::fs::read(&src).map_err(|e| Error::file(&src, e))?;
            out.insert(
                rel,
                (
                    Digest::sha256_of(&bytes),
                    md.permissions().mode() & 0o111 != 0,
                ),
            );
        }
    }
    Ok(out)
}

/// Moves the unpacked tree into `out`, over what is there (as `flux pull` overwrites).
fn move_into(from: &Path, out: &Path) -> Result<()> {
    if !from.exists() {
        return Ok(());
    }
    for e in std::fs::read_dir(from).map_err(|e| Error::file(from, e))? {
        let src = e.map_err(|e| Error::file(from, e))?.path();
        let dst = out.join(src.file_name().expect("an entry"));
        if src.is_dir() && dst.is_dir() {
            move_into(&src, &dst)?;
        } else {
            if dst.is_dir() {
                std::fs::remove_dir_all(&dst).map_err(|e| Error::file(&dst, e))?;
            }
            std::fs::rename(&src, &dst).map_err(|e| Error::file(&dst, e))?;
        }
    }
    Ok(())
}

fn info(r: &Reference, tag: String, digest: Digest, m: &Manifest) -> BundleInfo {
    let a = |k: &str| m.annotations.as_ref().and_then(|a| a.get(k)).cloned();
    BundleInfo {
        reference: r.with_digest(digest.clone()).to_string(),
        tag,
        digest,
        source: a(ANNOTATION_SOURCE),
        revision: a(ANNOTATION_REVISION),
        created: a(ANNOTATION_CREATED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_fluxs() {
        // The config digest `flux push artifact` (flux 2.9.5) wrote.
        assert_eq!(
            Digest::sha256_of(CONFIG).to_string(),
            "sha256:5b943e2b943f6c81dbbd4e2eca5121f4fcc39139e3d1219d6d89bd925b77d9fe"
        );
    }

    #[test]
    fn bundles_leave_out_what_flux_leaves_out() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("apps")).unwrap();
        std::fs::create_dir_all(d.path().join(".git")).unwrap();
        std::fs::write(d.path().join("apps/d.yaml"), "kind: Deployment\n").unwrap();
        std::fs::write(d.path().join(".git/HEAD"), "x").unwrap();
        std::fs::write(d.path().join("logo.png"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("leak")).unwrap();
        let ignore: Vec<String> = DEFAULT_IGNORE.iter().map(|s| s.to_string()).collect();
        let (tgz, files) = build_bundle(d.path(), &ignore).unwrap();
        assert_eq!(files, 1);
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(tgz.path()).unwrap(),
        ));
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, [".", "apps", "apps/d.yaml"]);
        // the same input, the same bytes
        let (again, _) = build_bundle(d.path(), &ignore).unwrap();
        assert_eq!(
            std::fs::read(tgz.path()).unwrap(),
            std::fs::read(again.path()).unwrap()
        );
    }
}
