//! Artifacts as oras writes them: files become layers titled with their names
//! (`org.opencontainers.image.title`), directories go up as tar+gzip marked for unpacking, the
//! config is the empty descriptor unless one is given, and `artifactType` says what it is.
//! Pulling restores the files by title, never outside the chosen directory.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use wharf_oci::media_type::{OCI_EMPTY, OCI_MANIFEST};
use wharf_oci::{Descriptor, Digest};

use crate::blobs::{BytesSource, SharedProgress, Transfer};
use crate::manifests::descriptor;
use crate::{Client, Error, Reference, Result};

pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// oras marks a layer that is a packed directory with these two.
pub const ANNOTATION_UNPACK: &str = "io.deis.oras.content.unpack";
pub const ANNOTATION_CONTENT_DIGEST: &str = "io.deis.oras.content.digest";
/// oras's layer media type when a file names none.
pub const DEFAULT_LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DIRECTORY_LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// oras's artifact type when neither a type nor a config is given.
pub const DEFAULT_ARTIFACT_TYPE: &str = "application/vnd.unknown.artifact.v1";

/// One file (or directory) to push.
#[derive(Debug, Clone)]
pub struct PushFile {
    pub path: PathBuf,
    pub media_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// What to push as one artifact manifest.
#[derive(Debug, Clone, Default)]
pub struct PushRequest {
    pub files: Vec<PushFile>,
    pub artifact_type: Option<String>,
    /// A config file and its media type; the empty config when absent.
    pub config: Option<(PathBuf, String)>,
    pub config_annotations: BTreeMap<String, String>,
    pub manifest_annotations: BTreeMap<String, String>,
    /// The manifest this one refers to (`attach`).
    pub subject: Option<Descriptor>,
}

/// An image manifest in the field order oras and the image-spec examples use.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactManifest {
    schema_version: u32,
    media_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// The outcome of pushing or pulling: the manifest and what each blob did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactResult {
    pub reference: String,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Every tag the manifest was given (push); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(serialize_with = "crate::blobs::serialize_transfers")]
    pub blobs: Vec<(Descriptor, Transfer)>,
}

/// The title a file gets: the path as given, without `./`, when relative and inside the
/// working directory; else its last component.
pub fn title_for(path: &Path) -> Result<String> {
    let clean: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let inside = clean
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    let title = if inside && !clean.as_os_str().is_empty() {
        clean
    } else {
        PathBuf::from(path.file_name().ok_or_else(|| {
            Error::Invalid(format!(
                "{}: cannot name a file by this path",
                path.display()
            ))
        })?)
    };
    title
        .to_str()
        .map(|s| s.to_string())
        .ok_or_else(|| Error::Invalid(format!("{}: the file name is not UTF-8", path.display())))
}

/// The entries of a directory in name order (walks that must give the same result twice).
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::file(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Creates the directory a command writes into (`-o`), saying so when `dir` names a file:
/// the system's "File exists" or "Not a directory" does not tell which argument is wrong.
pub(crate) fn create_output_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Invalid(format!(
            "{} is a file: the output names a directory to write into",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))
}

/// Where a layer titled `title` goes under `dir`, refusing titles that would leave it.
pub fn safe_join(dir: &Path, title: &str) -> Result<PathBuf> {
    let p = Path::new(title);
    let ok = !title.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !ok {
        return Err(Error::Invalid(format!(
            "refusing to write {title:?}: the title must be a relative path inside the output directory"
        )));
    }
    Ok(dir.join(p))
}

fn past_limit(limit: u64) -> Error {
    Error::Invalid(format!(
        "refusing the archive: it expands past {} MiB (raise the limit if it is meant to)",
        limit >> 20
    ))
}

/// Counts what an archive reader takes from its decompressor: past a limit, a short read is
/// a bomb cut off, not a damaged file.
pub(crate) struct Counted<R> {
    pub inner: R,
    pub read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// Now, as the `org.opencontainers.image.created` annotations of oras, helm and flux write it.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Packs `dir` as a gzip-compressed tar (entries named `<dir name>/...`) into a temporary
/// file; returns it and the digest of the uncompressed tar.
fn pack_directory(dir: &Path, name: &str) -> Result<(tempfile::NamedTempFile, Digest)> {
    struct HashWriter<W> {
        inner: W,
        hasher: wharf_oci::Hasher,
    }
    impl<W: std::io::Write> std::io::Write for HashWriter<W> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(b)?;
            self.hasher.update(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let tmp = tempfile::NamedTempFile::new().map_err(|e| Error::file(dir, e))?;
    let gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(tmp.reopen().map_err(|e| Error::file(dir, e))?),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(HashWriter {
        inner: gz,
        hasher: wharf_oci::Algorithm::Sha256.hasher(),
    });
    tar.follow_symlinks(false);
    tar.append_dir_all(name, dir)
        .map_err(|e| Error::file(dir, e))?;
    let hw = tar.into_inner().map_err(|e| Error::file(dir, e))?;
    let digest = hw.hasher.finish();
    let mut buf = hw.inner.finish().map_err(|e| Error::file(dir, e))?;
    std::io::Write::flush(&mut buf).map_err(|e| Error::file(dir, e))?;
    Ok((tmp, digest))
}

/// Unpacks a tar+gzip blob into `dir`. Entries that would land outside it (absolute paths,
/// `..`, links pointing out) are refused.
pub(crate) fn unpack_directory(blob: &Path, dir: &Path) -> Result<()> {
    unpack_directory_limited(blob, dir, u64::MAX)
}

/// [`unpack_directory`], refusing an archive that expands past `limit` bytes (a gzip or
/// tar bomb); what was unpacked before the limit stays for the caller to remove.
pub(crate) fn unpack_directory_limited(blob: &Path, dir: &Path, limit: u64) -> Result<()> {
    let f = std::fs::File::open(blob).map_err(|e| Error::file(blob, e))?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(f));
    let read = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let mut a = tar::Archive::new(Counted {
        inner: std::io::Read::take(gz, limit.saturating_add(1)),
        read: read.clone(),
    });
    let over = || read.get() > limit;
    a.set_preserve_permissions(true);
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    for entry in a.entries().map_err(|e| Error::file(blob, e))? {
        let mut entry = entry.map_err(|e| match over() {
            true => past_limit(limit),
            false => Error::file(blob, e),
        })?;
        let path = entry.path().map_err(|e| Error::file(blob, e))?.into_owned();
        let escapes = |p: &Path| {
            p.components().any(|c| {
                matches!(
                    c,
                    Component::ParentDir | Component::RootDir | Component::Prefix(_)
                )
            })
        };
        if escapes(&path) {
            return Err(Error::Invalid(format!(
                "refusing archive entry {}: it leaves the output directory",
                path.display()
            )));
        }
        if let Some(target) = entry.link_name().map_err(|e| Error::file(blob, e))? {
            if escapes(&target) {
                return Err(Error::Invalid(format!(
                    "refusing link {} -> {}: it points outside the output directory",
                    path.display(),
                    target.display()
                )));
            }
        }
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            return Err(Error::Invalid(format!(
                "refusing archive entry {}: a device file or FIFO",
                path.display()
            )));
        }
        // unpack_in also refuses to write through a symlink that leads outside `dir`.
        let unpacked = entry.unpack_in(dir);
        if over() {
            return Err(past_limit(limit));
        }
        unpacked.map_err(|e| Error::file(dir.join(&path), e))?;
    }
    if over() {
        return Err(past_limit(limit));
    }
    Ok(())
}

impl Client {
    /// Pushes files as one artifact and tags it with every tag in `tags` (the first goes
    /// with the manifest, the others are added after). `r` needs a tag or nothing (then
    /// `latest`), unless `subject` is set, when it may have none.
    pub async fn push_artifact(
        &self,
        r: &Reference,
        tags: &[String],
        req: PushRequest,
        progress: &SharedProgress,
    ) -> Result<ArtifactResult> {
        // Everything to upload: the files, then the config.
        let mut packed = Vec::new(); // temporary files that must outlive the upload
        let mut jobs = Vec::new();
        for f in &req.files {
            let meta = std::fs::metadata(&f.path).map_err(|e| Error::file(&f.path, e))?;
            let title = title_for(&f.path)?;
            let mut annotations = f.annotations.clone();
            annotations.insert(ANNOTATION_TITLE.into(), title.clone());
            let (path, media_type) = if meta.is_dir() {
                // tar+gzip is CPU work: a blocking thread, not the async ones.
                let (dir, name) = (f.path.clone(), title.clone());
                let (tmp, tar_digest) =
                    tokio::task::spawn_blocking(move || pack_directory(&dir, &name))
                        .await
                        .map_err(|e| {
                            Error::Invalid(format!("packing {}: {e}", f.path.display()))
                        })??;
                annotations.insert(ANNOTATION_UNPACK.into(), "true".into());
                annotations.insert(ANNOTATION_CONTENT_DIGEST.into(), tar_digest.to_string());
                let p = tmp.path().to_path_buf();
                packed.push(tmp);
                (
                    p,
                    f.media_type
                        .clone()
                        .unwrap_or_else(|| DIRECTORY_LAYER_TYPE.into()),
                )
            } else {
                (
                    f.path.clone(),
                    f.media_type
                        .clone()
                        .unwrap_or_else(|| DEFAULT_LAYER_TYPE.into()),
                )
            };
            jobs.push(Upload::File(path, media_type, Some(annotations)));
        }
        let config_annotations =
            (!req.config_annotations.is_empty()).then(|| req.config_annotations.clone());
        jobs.push(match &req.config {
            Some((path, mt)) => Upload::File(path.clone(), mt.clone(), config_annotations),
            // The empty config with its content embedded, as oras writes it.
            None => Upload::Empty(Descriptor {
                data: Some("e30=".into()),
                annotations: config_annotations,
                ..descriptor(OCI_EMPTY.into(), Digest::sha256_of(b"{}"), 2)
            }),
        });

        // Blobs first, concurrently; then the manifest that points at them.
        let mut blobs: Vec<(usize, Descriptor, Transfer)> = futures_util::stream::iter(jobs)
            .enumerate()
            .map(|(i, job)| async move {
                let (d, t) = match job {
                    Upload::File(path, media_type, annotations) => {
                        self.push_file(r, &path, &media_type, annotations, progress)
                            .await?
                    }
                    Upload::Empty(d) => {
                        let t = self
                            .push_blob(r, &d, &BytesSource(Bytes::from_static(b"{}")), progress)
                            .await?;
                        (d, t)
                    }
                };
                Ok::<_, Error>((i, d, t))
            })
            .buffer_unordered(self.opts.concurrency.max(1))
            .try_collect()
            .await?;
        blobs.sort_by_key(|(i, _, _)| *i);
        let blobs: Vec<(Descriptor, Transfer)> =
            blobs.into_iter().map(|(_, d, t)| (d, t)).collect();
        let (config, layers) = blobs.split_last().expect("the config is always pushed");
        let artifact_type = req
            .artifact_type
            .clone()
            .or_else(|| (req.config.is_none()).then(|| DEFAULT_ARTIFACT_TYPE.to_string()));
        let mut annotations = req.manifest_annotations.clone();
        annotations
            .entry(ANNOTATION_CREATED.into())
            .or_insert_with(now_rfc3339);
        let manifest = ArtifactManifest {
            schema_version: 2,
            media_type: OCI_MANIFEST,
            artifact_type,
            config: config.0.clone(),
            layers: layers.iter().map(|(d, _)| d.clone()).collect(),
            subject: req.subject.clone(),
            annotations,
        };
        drop(packed);

        let bytes = Bytes::from(serde_json::to_vec(&manifest).expect("JSON serialises"));
        let first = match tags.first() {
            Some(t) => r.with_tag(t)?,
            None if req.subject.is_some() => r.with_digest(Digest::sha256_of(&bytes)),
            None => r.with_tag("latest")?,
        };
        let digest = if req.subject.is_some() {
            self.put_referrer(&first, OCI_MANIFEST, bytes.clone())
                .await?
        } else {
            self.put_manifest(&first, OCI_MANIFEST, bytes.clone())
                .await?
        };
        for t in tags.iter().skip(1) {
            self.put_manifest(&r.with_tag(t)?, OCI_MANIFEST, bytes.clone())
                .await?;
        }
        Ok(ArtifactResult {
            reference: first.to_string(),
            digest,
            media_type: OCI_MANIFEST.into(),
            size: bytes.len() as u64,
            tags: first
                .tag
                .iter()
                .chain(tags.iter().skip(1))
                .cloned()
                .collect(),
            blobs,
        })
    }
}

/// One blob of an artifact push.
enum Upload {
    /// A file (or a packed directory): its path, media type and descriptor annotations.
    File(PathBuf, String, Option<BTreeMap<String, String>>),
    /// The empty config.
    Empty(Descriptor),
}

/// The sha256 digest and size of a file, read in a blocking thread.
pub async fn hash_file(path: &Path) -> Result<(Digest, u64)> {
    crate::digest_cache::digest_file(path, None).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn titles() {
        assert_eq!(title_for(Path::new("./a/b.txt")).unwrap(), "a/b.txt");
        assert_eq!(title_for(Path::new("/tmp/x.bin")).unwrap(), "x.bin");
        assert_eq!(title_for(Path::new("../up.txt")).unwrap(), "up.txt");
    }

    #[test]
    fn joins_stay_inside() {
        let d = Path::new("/out");
        assert_eq!(safe_join(d, "a/b").unwrap(), Path::new("/out/a/b"));
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(safe_join(d, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn directories_round_trip_and_escapes_are_refused() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("d/sub")).unwrap();
        std::fs::write(src.path().join("d/sub/f.txt"), b"hello").unwrap();
        let (tmp, _) = pack_directory(&src.path().join("d"), "d").unwrap();
        let out = tempfile::tempdir().unwrap();
        unpack_directory(tmp.path(), out.path()).unwrap();
        assert_eq!(
            std::fs::read(out.path().join("d/sub/f.txt")).unwrap(),
            b"hello"
        );

        // An archive with a link out of the directory is refused.
        let evil = tempfile::NamedTempFile::new().unwrap();
        {
            let gz =
                flate2::write::GzEncoder::new(evil.reopen().unwrap(), flate2::Compression::fast());
            let mut b = tar::Builder::new(gz);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, "d/link", "../../etc").unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        let out = tempfile::tempdir().unwrap();
        let e = unpack_directory(evil.path(), out.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside"), "{e}");
    }

    fn gz_tar(
        build: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<std::fs::File>>),
    ) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let gz = flate2::write::GzEncoder::new(f.reopen().unwrap(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        build(&mut b);
        b.into_inner().unwrap().finish().unwrap();
        f
    }

    #[test]
    fn device_files_and_bombs_are_refused() {
        let dev = gz_tar(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Block);
            h.set_size(0);
            b.append_data(&mut h, "disk", std::io::empty()).unwrap();
        });
        let out = tempfile::tempdir().unwrap();
        let e = unpack_directory(dev.path(), out.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("a device file"), "{e}");
        assert!(!out.path().join("disk").exists());

        // 3 MiB of zeros, a few KiB packed: past a 1 MiB limit, within a 4 MiB one.
        let bomb = gz_tar(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_size(3 << 20);
            h.set_mode(0o644);
            b.append_data(&mut h, "zeros", std::io::repeat(0).take(3 << 20))
                .unwrap();
        });
        assert!(std::fs::metadata(bomb.path()).unwrap().len() < 64 << 10);
        let out = tempfile::tempdir().unwrap();
        let e = unpack_directory_limited(bomb.path(), out.path(), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expands past 1 MiB"), "{e}");
        unpack_directory_limited(bomb.path(), out.path(), 4 << 20).unwrap();
        assert_eq!(
            std::fs::metadata(out.path().join("zeros")).unwrap().len(),
            3 << 20
        );
    }
}
