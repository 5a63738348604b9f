//! Pulling a manifest's content into a directory, by what the manifest is: an oras-style
//! artifact (files by their titles), a Helm chart (`NAME-VERSION.tgz`, as `helm pull` names
//! it), a Flux bundle (unpacked, as `flux pull artifact` does), or, with `unpack`, a
//! container image's root filesystem. What cannot be written is an error that says why and
//! what to run instead: a pull never succeeds having written nothing.

use std::path::{Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};
use wharf_oci::media_type::{
    FLUX_CONFIG, FLUX_CONTENT, HELM_CHART_CONTENT, HELM_CHART_PROVENANCE, HELM_CONFIG,
    IMAGE_LAYERS_TAR, IMAGE_LAYERS_TAR_GZIP, IMAGE_LAYERS_TAR_ZSTD,
};
use wharf_oci::{Descriptor, Digest, Manifest, ManifestKind};

use crate::artifact::{
    create_output_dir, safe_join, unpack_directory, ArtifactResult, ANNOTATION_TITLE,
    ANNOTATION_UNPACK,
};
use crate::blobs::{SharedProgress, Transfer};
use crate::copy::Platform;
use crate::{rootfs, Client, Error, Reference, Result};

/// How to pull.
///
/// ```
/// use wharf_client::pull::PullOptions;
/// let opts = PullOptions { platform: Some("linux/amd64".parse()?), unpack: true };
/// assert!(opts.unpack);
/// # Ok::<(), wharf_client::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// From an index, the manifest for this platform.
    pub platform: Option<Platform>,
    /// Write a container image's layers as a root filesystem.
    pub unpack: bool,
}

/// What a manifest holds, as far as pulling it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PulledKind {
    Artifact,
    HelmChart,
    FluxBundle,
    Image,
}

/// One thing a pull wrote: a file, or a directory tree unpacked from a layer.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    pub path: String,
    pub digest: Digest,
    pub size: u64,
}

/// The outcome of a pull: the manifest, what kind of content it was, and what was written.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullResult {
    #[serde(flatten)]
    pub artifact: ArtifactResult,
    pub kind: PulledKind,
    pub written: Vec<Written>,
}

/// `os/arch[/variant]` of an index entry, or `unknown`.
fn platform_name(d: &Descriptor) -> String {
    let p = d.platform.as_ref();
    let field = |k: &str| p.and_then(|p| p.get(k)).and_then(|v| v.as_str());
    match (field("os"), field("architecture")) {
        (Some(os), Some(arch)) => match field("variant") {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        },
        _ => "unknown".into(),
    }
}

impl Client {
    /// The manifest `r` names; from an index, the one for `platform`. Without a platform, an
    /// index is an error listing its platforms and digests, so the caller can pick.
    pub async fn manifest_for_platform(
        &self,
        r: &Reference,
        platform: Option<&Platform>,
    ) -> Result<(Descriptor, bytes::Bytes)> {
        let (desc, bytes) = self.manifest(r).await?;
        let m = Manifest::parse(Some(&desc.media_type), &bytes)?;
        if m.kind != ManifestKind::Index {
            return Ok((desc, bytes));
        }
        let Some(p) = platform else {
            let list = m
                .manifests
                .iter()
                .map(|c| format!("{} ({})", platform_name(c), c.digest))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Error::Invalid(format!(
                "{r} is an index of {} manifests; pick one with --platform OS/ARCH[/VARIANT] or by digest: {list}",
                m.manifests.len()
            )));
        };
        let child = m
            .manifests
            .iter()
            .find(|c| c.platform.as_ref().is_some_and(|v| p.matches(v)))
            .ok_or_else(|| {
                let have: Vec<String> = m.manifests.iter().map(platform_name).collect();
                Error::NotFound(format!("{r} for platform {p} (it has {})", have.join(", ")))
            })?;
        self.manifest(&r.with_digest(child.digest.clone())).await
    }

    /// Pulls `r` into `dir` by what it is (see the module doc).
    pub async fn pull(
        &self,
        r: &Reference,
        dir: &Path,
        opts: &PullOptions,
        progress: &SharedProgress,
    ) -> Result<PullResult> {
        let (desc, bytes) = self
            .manifest_for_platform(r, opts.platform.as_ref())
            .await?;
        let m = Manifest::parse(Some(&desc.media_type), &bytes)?;
        if m.kind == ManifestKind::Index {
            return Err(Error::Invalid(format!(
                "{r} for {} is itself an index; pull one of its manifests by digest",
                opts.platform
                    .as_ref()
                    .map_or("that platform".into(), |p| p.to_string())
            )));
        }
        let at = r.with_digest(desc.digest.clone());
        let config_type = m.config.as_ref().map(|c| c.media_type.as_str());
        let titled = m.layers.iter().any(|l| {
            l.annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(ANNOTATION_TITLE))
        });
        let (kind, plan) = if config_type == Some(HELM_CONFIG) {
            (PulledKind::HelmChart, self.chart_plan(&at, &m).await?)
        } else if config_type == Some(FLUX_CONFIG)
            || m.layers.iter().any(|l| l.media_type == FLUX_CONTENT) && !titled
        {
            let plan = m
                .layers
                .iter()
                .filter(|l| l.media_type == FLUX_CONTENT || l.media_type.ends_with("tar+gzip"))
                .map(|l| (l.clone(), Place::Unpack(None)))
                .collect();
            (PulledKind::FluxBundle, plan)
        } else if titled {
            let mut plan = Vec::new();
            for l in &m.layers {
                let Some(title) = l.annotations.as_ref().and_then(|a| a.get(ANNOTATION_TITLE))
                else {
                    continue;
                };
                let unpack = l
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_UNPACK))
                    .is_some_and(|v| v == "true");
                let place = if unpack {
                    // The archive's entries start with the title, so this is where it lands.
                    Place::Unpack(Some(safe_join(dir, title)?))
                } else {
                    Place::File(safe_join(dir, title)?)
                };
                plan.push((l.clone(), place));
            }
            (PulledKind::Artifact, plan)
        } else if !m.layers.is_empty() && m.layers.iter().all(is_image_layer) {
            if !opts.unpack {
                return Err(Error::Invalid(format!(
                    "{at} is a container image ({} layers) with no file names to write: pass --unpack to write its root filesystem into {}, or keep it as an image with `wharf cp` or `wharf backup`",
                    m.layers.len(),
                    dir.display()
                )));
            }
            if let Some(l) = m
                .layers
                .iter()
                .find(|l| IMAGE_LAYERS_TAR_ZSTD.contains(&l.media_type.as_str()))
            {
                return Err(Error::Invalid(format!(
                    "{at}: layer {} is zstd-compressed, which --unpack does not read yet",
                    l.digest
                )));
            }
            let plan = m.layers.iter().map(|l| (l.clone(), Place::Layer)).collect();
            (PulledKind::Image, plan)
        } else {
            let digests: Vec<String> = m.layers.iter().map(|l| l.digest.to_string()).collect();
            return Err(Error::Invalid(if digests.is_empty() {
                format!("{at} has no layers: nothing to write (its manifest: wharf manifest fetch {at})")
            } else {
                format!(
                    "{at} has {} layer{} without a file name (no {ANNOTATION_TITLE}), so nothing was written; fetch one with `wharf blob fetch {}@DIGEST -o FILE`: {}",
                    digests.len(),
                    if digests.len() == 1 { "" } else { "s" },
                    r.name(),
                    digests.join(", ")
                )
            }));
        };
        create_output_dir(dir)?;
        let written = self.write_plan(&at, dir, kind, plan, progress).await?;
        Ok(PullResult {
            artifact: ArtifactResult {
                reference: r.to_string(),
                digest: desc.digest,
                media_type: desc.media_type,
                size: desc.size,
                tags: Vec::new(),
                blobs: written
                    .iter()
                    .map(|(d, _)| (d.clone(), Transfer::Downloaded))
                    .collect(),
            },
            kind,
            written: written.into_iter().map(|(_, w)| w).collect(),
        })
    }

    /// A chart goes where `helm pull` puts it: `NAME-VERSION.tgz`, and its provenance beside
    /// it as `NAME-VERSION.tgz.prov`, named from the chart's config.
    async fn chart_plan(&self, at: &Reference, m: &Manifest) -> Result<Vec<(Descriptor, Place)>> {
        let config = m.config.as_ref().expect("a helm manifest has a config");
        let bytes = self.fetch_blob_bytes(at, config).await?;
        let meta: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("{at}: the chart's config is not JSON: {e}")))?;
        let field = |k: &str| {
            meta.get(k)
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty() && !v.contains(['/', '\\']) && *v != ".." && *v != ".")
                .map(str::to_string)
                .ok_or_else(|| {
                    Error::Invalid(format!("{at}: the chart's config has no usable {k:?}"))
                })
        };
        let file = format!("{}-{}.tgz", field("name")?, field("version")?);
        let mut plan = Vec::new();
        for l in &m.layers {
            let name = match l.media_type.as_str() {
                HELM_CHART_CONTENT => file.clone(),
                HELM_CHART_PROVENANCE => format!("{file}.prov"),
                _ => continue,
            };
            plan.push((l.clone(), Place::Named(name)));
        }
        if plan.is_empty() {
            return Err(Error::Invalid(format!(
                "{at}: a chart manifest without a {HELM_CHART_CONTENT} layer"
            )));
        }
        Ok(plan)
    }

    async fn write_plan(
        &self,
        at: &Reference,
        dir: &Path,
        kind: PulledKind,
        plan: Vec<(Descriptor, Place)>,
        progress: &SharedProgress,
    ) -> Result<Vec<(Descriptor, Written)>> {
        // Layers of an image apply in order, over each other: fetch all (verified), then apply.
        if kind == PulledKind::Image {
            let tmp = tempfile::tempdir_in(dir).map_err(|e| Error::file(dir, e))?;
            let fetched: Vec<(Descriptor, PathBuf)> = futures_util::stream::iter(plan)
                .map(|(l, _)| {
                    let path = tmp.path().join(l.digest.hex());
                    async move {
                        self.fetch_blob(at, &l, &path, progress).await?;
                        Ok::<_, Error>((l, path))
                    }
                })
                .buffered(self.opts.concurrency.max(1))
                .try_collect()
                .await?;
            let into = dir.to_path_buf();
            let layers = fetched.clone();
            tokio::task::spawn_blocking(move || rootfs::apply_layers(&layers, &into))
                .await
                .map_err(|e| Error::Invalid(format!("unpacking: {e}")))??;
            return Ok(fetched
                .into_iter()
                .map(|(l, _)| {
                    let w = Written {
                        path: dir.display().to_string(),
                        digest: l.digest.clone(),
                        size: l.size,
                    };
                    (l, w)
                })
                .collect());
        }
        futures_util::stream::iter(plan)
            .map(|(l, place)| async move {
                let dest = match &place {
                    Place::File(p) => p.clone(),
                    Place::Named(n) => dir.join(n),
                    Place::Unpack(_) | Place::Layer => {
                        let tmp = tempfile::NamedTempFile::new_in(dir)
                            .map_err(|e| Error::file(dir, e))?;
                        let tmp_path = tmp.into_temp_path();
                        self.fetch_blob(at, &l, &tmp_path, progress).await?;
                        let (blob, into) = (tmp_path.to_path_buf(), dir.to_path_buf());
                        tokio::task::spawn_blocking(move || unpack_directory(&blob, &into))
                            .await
                            .map_err(|e| Error::Invalid(format!("unpacking: {e}")))??;
                        let landed = match &place {
                            Place::Unpack(Some(p)) => p.as_path(),
                            _ => dir,
                        };
                        let w = Written {
                            path: landed.display().to_string(),
                            digest: l.digest.clone(),
                            size: l.size,
                        };
                        return Ok((l, w));
                    }
                };
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::file(parent, e))?;
                }
                self.fetch_blob(at, &l, &dest, progress).await?;
                let w = Written {
                    path: dest.display().to_string(),
                    digest: l.digest.clone(),
                    size: l.size,
                };
                Ok::<_, Error>((l, w))
            })
            .buffered(self.opts.concurrency.max(1))
            .try_collect()
            .await
    }
}

/// Where a layer goes.
enum Place {
    /// A file by its title, inside the directory.
    File(PathBuf),
    /// A file by a name we chose (a chart's).
    Named(String),
    /// A tar+gzip unpacked into the directory; a titled one lands at the path given.
    Unpack(Option<PathBuf>),
    /// A container image layer, applied over the ones before it.
    Layer,
}

fn is_image_layer(l: &Descriptor) -> bool {
    let t = l.media_type.as_str();
    IMAGE_LAYERS_TAR.contains(&t)
        || IMAGE_LAYERS_TAR_GZIP.contains(&t)
        || IMAGE_LAYERS_TAR_ZSTD.contains(&t)
}
