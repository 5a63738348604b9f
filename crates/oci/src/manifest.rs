//! Parsing and structural validation of manifests: OCI image manifest and index (image-spec
//! v1.1, including `artifactType` and `subject`) and Docker schema2 manifest and manifest list.
//!
//! The registry stores the bytes it was given; this module only decides whether they are a
//! manifest of the claimed type and what they point at.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::media_type::{self, essence};
use crate::{Digest, SpecError};

/// A content descriptor. Unknown fields are dropped; known optional ones round-trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The content itself, base64 (image-spec "embedded content"); oras writes the empty
    /// config this way, `e30=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// OCI image manifest or Docker schema2 manifest: a config and layers.
    Image,
    /// OCI image index or Docker manifest list: child manifests.
    Index,
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub kind: ManifestKind,
    pub media_type: String,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

fn invalid(msg: impl Into<String>) -> SpecError {
    SpecError::Manifest(msg.into())
}

impl Manifest {
    /// Parses `bytes` as the manifest type named by `content_type` (the request's header,
    /// parameters ignored) or, when there is none, by the manifest's own `mediaType` field.
    pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Manifest, SpecError> {
        let raw: Raw =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        let header = content_type.map(essence).filter(|s| !s.is_empty());
        let media_type =
            match (header, raw.media_type.as_deref()) {
                (Some(h), Some(m)) if h != m => {
                    return Err(invalid(format!(
                        "mediaType {m:?} does not match Content-Type {h:?}"
                    )))
                }
                (Some(h), _) => h.to_string(),
                (None, Some(m)) => m.to_string(),
                (None, None) => return Err(invalid(
                    "no Content-Type header and no mediaType field: the manifest type is unknown",
                )),
            };
        let kind = match media_type.as_str() {
            media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST => ManifestKind::Image,
            media_type::OCI_INDEX | media_type::DOCKER_MANIFEST_LIST => ManifestKind::Index,
            other => {
                return Err(invalid(format!(
                    "unsupported manifest media type {other:?}"
                )))
            }
        };
        if raw.schema_version != Some(2) {
            return Err(invalid("schemaVersion must be 2"));
        }
        let (config, layers, manifests) = match kind {
            ManifestKind::Image => {
                let config = raw
                    .config
                    .ok_or_else(|| invalid("image manifest has no config"))?;
                let layers = raw
                    .layers
                    .ok_or_else(|| invalid("image manifest has no layers array"))?;
                if raw.manifests.is_some() {
                    return Err(invalid("image manifest has a manifests field"));
                }
                (Some(config), layers, Vec::new())
            }
            ManifestKind::Index => {
                let manifests = raw
                    .manifests
                    .ok_or_else(|| invalid("index has no manifests array"))?;
                if raw.config.is_some() || raw.layers.is_some() {
                    return Err(invalid("index has config or layers"));
                }
                (None, Vec::new(), manifests)
            }
        };
        for d in config.iter().chain(&layers).chain(&manifests) {
            if d.media_type.is_empty() {
                return Err(invalid(format!("descriptor {} has no mediaType", d.digest)));
            }
        }
        Ok(Manifest {
            kind,
            media_type,
            config,
            layers,
            manifests,
            subject: raw.subject,
            artifact_type: raw.artifact_type.filter(|s| !s.is_empty()),
            annotations: raw.annotations,
        })
    }

    /// Blobs that must exist in the repository before this manifest is accepted. Foreign and
    /// non-distributable layers live elsewhere by definition and are left out.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Digest> {
        self.config
            .iter()
            .chain(self.layers.iter().filter(|l| {
                l.media_type != media_type::DOCKER_FOREIGN_LAYER
                    && !media_type::OCI_LAYER_NONDISTRIBUTABLE.contains(&l.media_type.as_str())
            }))
            .map(|d| &d.digest)
    }

    /// The artifact type a referrers listing reports: `artifactType`, or for an image manifest
    /// without one, the config's media type.
    pub fn referrer_artifact_type(&self) -> Option<&str> {
        self.artifact_type.as_deref().or(match self.kind {
            ManifestKind::Image => self.config.as_ref().map(|c| c.media_type.as_str()),
            ManifestKind::Index => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":3}}]{extra}}}"#,
            media_type::OCI_MANIFEST
        )
    }

    #[test]
    fn image_manifest() {
        let m = Manifest::parse(Some(media_type::OCI_MANIFEST), image("").as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        let req: Vec<String> = m.required_blobs().map(|d| d.to_string()).collect();
        assert_eq!(req, vec![D1, D2]);
        assert_eq!(
            m.referrer_artifact_type(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(m.subject.is_none());
    }

    #[test]
    fn media_type_from_body_when_header_absent_and_params_ignored() {
        Manifest::parse(None, image("").as_bytes()).unwrap();
        Manifest::parse(
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
            image("").as_bytes(),
        )
        .unwrap();
    }

    #[test]
    fn artifact_with_subject() {
        let extra = format!(
            r#","artifactType":"application/x-sbom","subject":{{"mediaType":"{}","digest":"{D1}","size":9}}"#,
            media_type::OCI_MANIFEST
        );
        let m = Manifest::parse(None, image(&extra).as_bytes()).unwrap();
        assert_eq!(m.referrer_artifact_type(), Some("application/x-sbom"));
        assert_eq!(m.subject.unwrap().digest.to_string(), D1);
    }

    #[test]
    fn index() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{D1}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            media_type::OCI_MANIFEST
        );
        let m = Manifest::parse(Some(media_type::OCI_INDEX), body.as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.manifests.len(), 1);
        assert_eq!(m.required_blobs().count(), 0);
    }

    #[test]
    fn rejections() {
        let cases: Vec<(Option<&str>, String, &str)> = vec![
            (None, "{".into(), "not valid JSON"),
            (None, "[]".into(), "not valid JSON"),
            (Some(media_type::OCI_INDEX), image(""), "does not match"),
            (
                Some("application/json"),
                "{\"schemaVersion\":2}".into(),
                "unsupported",
            ),
            (None, r#"{"schemaVersion":2}"#.into(), "type is unknown"),
            (
                None,
                image("").replace("\"schemaVersion\":2", "\"schemaVersion\":1"),
                "schemaVersion",
            ),
            (None, image("").replace(D2, "sha256:zz"), "invalid digest"),
            (
                None,
                image("").replace("\"size\":3", "\"size\":-3"),
                "not valid JSON",
            ),
            (
                Some(media_type::OCI_MANIFEST),
                r#"{"schemaVersion":2,"layers":[]}"#.into(),
                "no config",
            ),
            (
                Some(media_type::OCI_INDEX),
                r#"{"schemaVersion":2}"#.into(),
                "no manifests",
            ),
            (None, image(r#","schemaVersion":2"#), "duplicate field"),
        ];
        for (ct, body, want) in cases {
            let e = Manifest::parse(ct, body.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{body}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn foreign_layers_not_required() {
        let body = image("").replace(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            media_type::DOCKER_FOREIGN_LAYER,
        );
        let m = Manifest::parse(None, body.as_bytes()).unwrap();
        assert_eq!(m.required_blobs().count(), 1);
    }
}
