//! SBOMs beside what they describe: SPDX JSON and CycloneDX JSON documents attached as OCI
//! 1.1 referrers whose artifactType is the document's media type (what `oras attach
//! --artifact-type application/spdx+json` writes), or pushed as an artifact of their own
//! under a tag (the `oras push REPO:sbom ./sbom.spdx:application/spdx+json` pattern).

use std::path::Path;
use std::sync::Arc;

use wharf_oci::{Descriptor, Manifest};

use crate::artifact::{ArtifactResult, PushFile, PushRequest, ANNOTATION_CREATED};
use crate::blobs::{NoProgress, SharedProgress};
use crate::{Client, Error, Reference, Result};

pub const SPDX_JSON: &str = "application/spdx+json";
pub const CYCLONEDX_JSON: &str = "application/vnd.cyclonedx+json";

/// The SBOM formats by the name `--format` takes.
pub fn media_type_of_format(name: &str) -> Result<&'static str> {
    match name {
        "spdx" => Ok(SPDX_JSON),
        "cyclonedx" => Ok(CYCLONEDX_JSON),
        other => Err(Error::Invalid(format!(
            "unknown SBOM format {other:?}: spdx or cyclonedx"
        ))),
    }
}

/// The media type of an SBOM document, read from its content: SPDX JSON names its
/// `spdxVersion`, CycloneDX JSON its `bomFormat`.
pub fn detect(bytes: &[u8]) -> Option<&'static str> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if v.get("spdxVersion").and_then(|s| s.as_str()).is_some() {
        Some(SPDX_JSON)
    } else if v.get("bomFormat").and_then(|s| s.as_str()) == Some("CycloneDX") {
        Some(CYCLONEDX_JSON)
    } else {
        None
    }
}

fn is_sbom_type(t: &str) -> bool {
    t == SPDX_JSON || t == CYCLONEDX_JSON
}

/// An SBOM found for a manifest.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sbom {
    /// The manifest that holds it.
    pub reference: String,
    pub media_type: String,
    /// The document's blob.
    pub layer: Descriptor,
    pub created: Option<String>,
}

impl Client {
    /// Attaches the SBOM at `path` to `subject`; its media type is detected from the content
    /// unless `media_type` is given.
    pub async fn attach_sbom(
        &self,
        subject: &Reference,
        path: &Path,
        media_type: Option<&str>,
    ) -> Result<(Descriptor, ArtifactResult)> {
        let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        let mt = match media_type {
            Some(m) => m.to_string(),
            None => detect(&bytes)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: neither SPDX JSON (spdxVersion) nor CycloneDX JSON (bomFormat); give --media-type to attach it anyway",
                        path.display()
                    ))
                })?
                .to_string(),
        };
        let desc = self.resolve(subject).await?;
        let req = PushRequest {
            files: vec![PushFile {
                path: path.to_path_buf(),
                media_type: Some(mt.clone()),
                annotations: Default::default(),
            }],
            artifact_type: Some(mt),
            subject: Some(crate::manifests::descriptor(
                desc.media_type.clone(),
                desc.digest.clone(),
                desc.size,
            )),
            ..PushRequest::default()
        };
        let target = Reference {
            tag: None,
            digest: None,
            ..subject.clone()
        };
        let quiet: SharedProgress = Arc::new(NoProgress);
        let res = self.push_artifact(&target, &[], req, &quiet).await?;
        Ok((desc, res))
    }

    /// The SBOMs of `r`: its own SBOM layer when it is an SBOM artifact itself, and those of
    /// its SBOM referrers, newest first; only `media_type` when given.
    pub async fn sboms(&self, r: &Reference, media_type: Option<&str>) -> Result<Vec<Sbom>> {
        let (desc, bytes) = self.manifest(r).await?;
        let at = r.with_digest(desc.digest.clone());
        let wanted = |t: &str| is_sbom_type(t) && media_type.is_none_or(|m| m == t);
        let mut out = Vec::new();
        let own = Manifest::parse(Some(&desc.media_type), &bytes)?;
        let created = |m: &Manifest| {
            m.annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_CREATED))
                .cloned()
        };
        for l in own.layers.iter().filter(|l| wanted(&l.media_type)) {
            out.push(Sbom {
                reference: at.to_string(),
                media_type: l.media_type.clone(),
                layer: l.clone(),
                created: created(&own),
            });
        }
        for d in self.referrers(&at, None).await? {
            if !d.artifact_type.as_deref().is_some_and(wanted) {
                continue;
            }
            let rr = at.with_digest(d.digest.clone());
            let (rd, rb) = self.manifest(&rr).await?;
            let m = Manifest::parse(Some(&rd.media_type), &rb)?;
            for l in m.layers.iter().filter(|l| wanted(&l.media_type)) {
                out.push(Sbom {
                    reference: rr.to_string(),
                    media_type: l.media_type.clone(),
                    layer: l.clone(),
                    created: created(&m),
                });
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        assert_eq!(detect(br#"{"spdxVersion": "SPDX-2.3"}"#), Some(SPDX_JSON));
        assert_eq!(
            detect(br#"{"bomFormat": "CycloneDX", "specVersion": "1.5"}"#),
            Some(CYCLONEDX_JSON)
        );
        assert_eq!(detect(br#"{"bomFormat": "Other"}"#), None);
        assert_eq!(detect(b"not json"), None);
        assert!(media_type_of_format("spdx").is_ok() && media_type_of_format("xml").is_err());
    }
}
