//! Helm charts in OCI registries, in exactly the format `helm push` writes: a manifest with
//! config `application/vnd.cncf.helm.config.v1+json` (Chart.yaml as JSON), the chart's
//! `.tgz` as one layer and its provenance as another, tagged by version (`+` written as `_`).
//! Also packaging (`helm package`'s layout, deterministic), version constraints, and
//! dependencies (`Chart.lock` that helm accepts).

pub mod archive;
pub mod deps;
pub mod meta;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use wharf_oci::media_type::{HELM_CHART_CONTENT, HELM_CHART_PROVENANCE, HELM_CONFIG, OCI_MANIFEST};
use wharf_oci::{Descriptor, Digest, Manifest};

pub use archive::{package, ChartArchive};
pub use meta::{tag_to_version, version_to_tag, ChartMeta};
pub use wharf_oci::Constraint;

use crate::artifact::now_rfc3339;
use crate::blobs::{BytesSource, NoProgress, SharedProgress};
use crate::manifests::descriptor;
use crate::{Client, Error, Reference, Result};

/// Before helm 3.8 charts were pushed with this layer type; helm still reads it.
pub const LEGACY_CHART_CONTENT: &str = "application/tar+gzip";

/// A registry path written `oci://HOST/PATH[:TAG]`, as helm writes chart locations.
///
/// ```
/// use wharf_client::chart::parse_oci;
/// let r = parse_oci("oci://localhost:5000/charts/demo:1.0.0+build")?;
/// assert_eq!((r.repository.as_str(), r.tag.as_deref()), ("charts/demo", Some("1.0.0_build")));
/// assert!(parse_oci("localhost:5000/charts").is_err());
/// # Ok::<(), wharf_client::Error>(())
/// ```
pub fn parse_oci(s: &str) -> Result<Reference> {
    let rest = s.strip_prefix("oci://").ok_or_else(|| {
        Error::Reference(
            s.into(),
            "chart locations start with oci:// (oci://HOST/NAMESPACE[/NAME])".into(),
        )
    })?;
    // A version tag may carry SemVer build metadata; tags cannot, so `+` is stored as `_`.
    let last = rest.rfind('/').map_or(0, |i| i + 1);
    let rest = match rest[last..].find(':') {
        Some(i) if !rest[..last].is_empty() => {
            let (name, tag) = rest.split_at(last + i);
            format!("{name}{}", version_to_tag(tag))
        }
        _ => rest.to_string(),
    };
    rest.parse()
}

/// `oci://HOST[/NAMESPACE]` as a push target: the registry and the namespace (maybe empty)
/// the chart's name goes under.
pub fn parse_oci_namespace(s: &str) -> Result<(String, String)> {
    let rest = s.strip_prefix("oci://").ok_or_else(|| {
        Error::Reference(
            s.into(),
            "push targets are written oci://HOST/NAMESPACE".into(),
        )
    })?;
    let (host, ns) = rest.split_once('/').unwrap_or((rest, ""));
    let ns = ns.trim_end_matches('/');
    if ns.contains(':') || ns.contains('@') {
        return Err(Error::Reference(
            s.into(),
            "give the namespace only: the chart's name and version make the tag (oci://HOST/NAMESPACE)".into(),
        ));
    }
    // Validates host and namespace by parsing a reference under them.
    let probe = match ns.is_empty() {
        true => format!("{host}/probe"),
        false => format!("{host}/{ns}/probe"),
    };
    probe
        .parse::<Reference>()
        .map_err(|e| Error::Reference(s.into(), e.to_string()))?;
    Ok((host.to_string(), ns.to_string()))
}

/// What a chart push stored.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartPushed {
    pub reference: String,
    pub digest: Digest,
    pub name: String,
    pub version: String,
    pub config: Descriptor,
    pub chart: Descriptor,
    pub provenance: Option<Descriptor>,
}

/// A chart fetched from a registry: where it was, its manifest digest, and its bytes.
#[derive(Debug, Clone)]
pub struct FetchedChart {
    pub reference: Reference,
    pub digest: Digest,
    pub archive: ChartArchive,
    pub tgz: Bytes,
    pub provenance: Option<Bytes>,
}

// The manifest as helm marshals `ocispec.Manifest`: no mediaType field, in this order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HelmManifest<'a> {
    schema_version: u32,
    config: GoDescriptor<'a>,
    layers: Vec<GoDescriptor<'a>>,
    annotations: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GoDescriptor<'a> {
    media_type: &'a str,
    digest: &'a Digest,
    size: u64,
}

impl<'a> From<&'a Descriptor> for GoDescriptor<'a> {
    fn from(d: &'a Descriptor) -> Self {
        GoDescriptor {
            media_type: &d.media_type,
            digest: &d.digest,
            size: d.size,
        }
    }
}

impl Client {
    /// Pushes `CHART.tgz` (and `CHART.tgz.prov` beside it, if any) as `NAMESPACE/NAME:VERSION`,
    /// with the manifest `helm push` writes.
    pub async fn push_chart(
        &self,
        registry: &str,
        namespace: &str,
        tgz_path: &Path,
        progress: &SharedProgress,
    ) -> Result<ChartPushed> {
        let (archive, tgz) = ChartArchive::read_path(tgz_path)?;
        let meta = &archive.meta;
        let prov_path = tgz_path.with_extension("tgz.prov");
        let prov = match std::fs::read(&prov_path) {
            Ok(b) => Some(Bytes::from(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::file(&prov_path, e)),
        };
        let repo = match namespace.is_empty() {
            true => meta.name.clone(),
            false => format!("{namespace}/{}", meta.name),
        };
        let r = Reference::repository(registry, &repo)?.with_tag(&version_to_tag(&meta.version))?;
        let config_bytes = Bytes::from(meta.config_json());
        let desc =
            |mt: &str, b: &Bytes| descriptor(mt.into(), Digest::sha256_of(b), b.len() as u64);
        let config = desc(HELM_CONFIG, &config_bytes);
        let chart = desc(HELM_CHART_CONTENT, &tgz);
        let provenance = prov.as_ref().map(|p| desc(HELM_CHART_PROVENANCE, p));
        let mut uploads = vec![(chart.clone(), tgz.clone())];
        if let (Some(d), Some(b)) = (&provenance, &prov) {
            uploads.push((d.clone(), b.clone()));
        }
        for (d, b) in &uploads {
            self.push_blob(&r, d, &BytesSource(b.clone()), progress)
                .await?;
        }
        let quiet: SharedProgress = Arc::new(NoProgress);
        self.push_blob(&r, &config, &BytesSource(config_bytes), &quiet)
            .await?;
        // helm sorts layers by digest, "for determinism, similar to how ORAS v1 does it".
        let mut layers: Vec<&Descriptor> = uploads.iter().map(|(d, _)| d).collect();
        layers.sort_by_key(|d| d.digest.to_string());
        let annotations = meta.oci_annotations(&now_rfc3339());
        let manifest = meta::go_json(&HelmManifest {
            schema_version: 2,
            config: (&config).into(),
            layers: layers.into_iter().map(Into::into).collect(),
            annotations: &annotations,
        });
        let digest = self.put_manifest(&r, OCI_MANIFEST, manifest.into()).await?;
        Ok(ChartPushed {
            reference: r.to_string(),
            digest,
            name: meta.name.clone(),
            version: meta.version.clone(),
            config,
            chart,
            provenance,
        })
    }

    /// The chart versions in `repo`'s tags, newest first (tags that are not SemVer are left
    /// out, as helm leaves them out).
    pub async fn chart_versions(&self, repo: &Reference) -> Result<Vec<semver::Version>> {
        let mut v: Vec<semver::Version> = self
            .tags(repo)
            .await?
            .iter()
            .filter_map(|t| tag_to_version(t))
            .collect();
        v.sort_by(|a, b| b.cmp_precedence(a));
        Ok(v)
    }

    /// `r` with the tag to pull: its own tag or digest, else the newest version matching
    /// `version` (an exact version or a constraint), else the newest release, as helm picks.
    pub async fn resolve_chart(&self, r: &Reference, version: Option<&str>) -> Result<Reference> {
        if r.tag.is_some() || r.digest.is_some() {
            if version.is_some() {
                return Err(Error::Invalid(format!(
                    "{r} already names a version; drop --version or the tag"
                )));
            }
            return Ok(r.clone());
        }
        let versions = self.chart_versions(r).await?;
        if let Some(v) = version {
            if let Some(exact) = versions.iter().find(|x| x.to_string() == v) {
                return r.with_tag(&version_to_tag(&exact.to_string()));
            }
        }
        let c = Constraint::parse(version.unwrap_or("*")).map_err(Error::Invalid)?;
        let best = c.best(&versions).ok_or_else(|| {
            let have = versions
                .iter()
                .take(10)
                .map(|v| v.to_string())
                .collect::<Vec<_>>();
            Error::NotFound(match (version, have.is_empty()) {
                (_, true) => format!("a chart version in {r} (it has no SemVer tags)"),
                (Some(v), false) => format!(
                    "a version of {r} matching {v} (versions there: {})",
                    have.join(", ")
                ),
                (None, false) => format!(
                    "a release of {r} (only pre-releases there: {})",
                    have.join(", ")
                ),
            })
        })?;
        r.with_tag(&version_to_tag(&best.to_string()))
    }

    /// Fetches the chart `r` names (resolved with [`Client::resolve_chart`] first if it has no
    /// tag), checked as a chart archive before anything is written.
    pub async fn fetch_chart(&self, r: &Reference, version: Option<&str>) -> Result<FetchedChart> {
        let r = self.resolve_chart(r, version).await?;
        let (desc, bytes) = self.manifest(&r).await?;
        let m = Manifest::parse(Some(&desc.media_type), &bytes)?;
        let config_type = m.config.as_ref().map(|c| c.media_type.as_str());
        if config_type != Some(HELM_CONFIG) {
            return Err(Error::Invalid(format!(
                "{r} is not a Helm chart (its config is {}); pull it with `wharf pull`",
                config_type.unwrap_or("missing")
            )));
        }
        let at = r.with_digest(desc.digest.clone());
        let layer = |mt: &[&str]| {
            m.layers
                .iter()
                .find(|l| mt.contains(&l.media_type.as_str()))
        };
        let content = layer(&[HELM_CHART_CONTENT, LEGACY_CHART_CONTENT]).ok_or_else(|| {
            Error::Invalid(format!(
                "{r}: a chart manifest without a {HELM_CHART_CONTENT} layer"
            ))
        })?;
        if content.size > archive::MAX_EXPANDED {
            return Err(Error::Invalid(format!(
                "{r}: the chart layer is {} bytes, past the {} MiB a chart may have",
                content.size,
                archive::MAX_EXPANDED >> 20
            )));
        }
        let tgz = self.fetch_blob_bytes(&at, content).await?;
        let archive = ChartArchive::read(&tgz).map_err(|e| Error::Invalid(format!("{r}: {e}")))?;
        let provenance = match layer(&[HELM_CHART_PROVENANCE]) {
            Some(p) if p.size <= archive::MAX_FILE => Some(self.fetch_blob_bytes(&at, p).await?),
            Some(p) => {
                return Err(Error::Invalid(format!(
                    "{r}: the provenance layer is {} bytes; refusing it",
                    p.size
                )))
            }
            None => None,
        };
        Ok(FetchedChart {
            reference: r,
            digest: desc.digest,
            archive,
            tgz,
            provenance,
        })
    }
}

/// Writes `bytes` to `path` whole or not at all (a temporary file renamed into place).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::file(dir, e))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(|e| Error::file(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::file(path, e))?;
    tmp.persist(path).map_err(|e| Error::file(path, e.error))?;
    Ok(())
}

impl FetchedChart {
    /// Writes `NAME-VERSION.tgz` (and `.prov`) into `dir`, byte for byte as pushed.
    pub fn save(&self, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
        let file = dir.join(self.archive.meta.archive_name());
        write_atomic(&file, &self.tgz)?;
        let mut out = vec![file.clone()];
        if let Some(p) = &self.provenance {
            let prov = dir.join(format!("{}.prov", self.archive.meta.archive_name()));
            write_atomic(&prov, p)?;
            out.push(prov);
        }
        Ok(out)
    }
}
