//! What a manifest holds, in the words users search by: an image, an image index, a Helm
//! chart, a Flux bundle, a signature, an attestation, an SBOM, or something else. Decided
//! from media types and `artifactType` alone, so the registry can tell at push time.

use std::fmt;
use std::str::FromStr;

use crate::media_type::{
    COSIGN_SIMPLE_SIGNING, CYCLONEDX_JSON, DOCKER_IMAGE_CONFIG, DSSE_ENVELOPE, FLUX_CONFIG,
    FLUX_CONTENT, HELM_CONFIG, IN_TOTO, OCI_IMAGE_CONFIG, SIGSTORE_BUNDLE, SPDX_JSON,
};
use crate::{Manifest, ManifestKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArtifactKind {
    Image,
    ImageIndex,
    HelmChart,
    FluxBundle,
    Signature,
    Attestation,
    Sbom,
    Other,
}

impl ArtifactKind {
    pub const ALL: [ArtifactKind; 8] = [
        ArtifactKind::Image,
        ArtifactKind::ImageIndex,
        ArtifactKind::HelmChart,
        ArtifactKind::FluxBundle,
        ArtifactKind::Signature,
        ArtifactKind::Attestation,
        ArtifactKind::Sbom,
        ArtifactKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Image => "image",
            ArtifactKind::ImageIndex => "image-index",
            ArtifactKind::HelmChart => "helm-chart",
            ArtifactKind::FluxBundle => "flux-bundle",
            ArtifactKind::Signature => "signature",
            ArtifactKind::Attestation => "attestation",
            ArtifactKind::Sbom => "sbom",
            ArtifactKind::Other => "other",
        }
    }

    /// What `m` holds (see the module doc). The most specific reading wins: a cosign
    /// signature is an image manifest too, but it is reported as a signature.
    pub fn of(m: &Manifest) -> ArtifactKind {
        let config = m.config.as_ref().map(|c| c.media_type.as_str());
        let artifact_type = m.artifact_type.as_deref();
        let types: Vec<&str> = artifact_type
            .into_iter()
            .chain(config)
            .chain(m.layers.iter().map(|l| l.media_type.as_str()))
            .collect();
        let any = |ts: &[&str]| types.iter().any(|t| ts.contains(t));
        let declared = |ts: &[&str]| {
            artifact_type.is_some_and(|a| ts.contains(&a))
                || config.is_some_and(|c| ts.contains(&c))
        };
        if m.kind == ManifestKind::Index {
            return match artifact_type {
                Some(SIGSTORE_BUNDLE) => ArtifactKind::Signature,
                _ => ArtifactKind::ImageIndex,
            };
        }
        if config == Some(HELM_CONFIG) {
            ArtifactKind::HelmChart
        } else if config == Some(FLUX_CONFIG) || any(&[FLUX_CONTENT]) {
            ArtifactKind::FluxBundle
        } else if any(&[SIGSTORE_BUNDLE]) && bundles_an_attestation(m) {
            ArtifactKind::Attestation
        } else if any(&[COSIGN_SIMPLE_SIGNING, SIGSTORE_BUNDLE]) {
            ArtifactKind::Signature
        } else if any(&[DSSE_ENVELOPE, IN_TOTO]) {
            ArtifactKind::Attestation
        } else if any(&[SPDX_JSON, CYCLONEDX_JSON]) || declared(&["text/spdx"]) {
            ArtifactKind::Sbom
        } else if artifact_type.is_none()
            && matches!(config, Some(OCI_IMAGE_CONFIG | DOCKER_IMAGE_CONFIG))
        {
            ArtifactKind::Image
        } else {
            ArtifactKind::Other
        }
    }
}

/// Whether a Sigstore bundle manifest says (by cosign's `dev.sigstore.bundle.predicateType`
/// annotation) that it holds an attestation rather than a signature.
fn bundles_an_attestation(m: &Manifest) -> bool {
    m.annotations
        .as_ref()
        .and_then(|a| a.get("dev.sigstore.bundle.predicateType"))
        .is_some_and(|p| p != "https://sigstore.dev/cosign/sign/v1")
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ArtifactKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ArtifactKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = ArtifactKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown kind {s:?}; one of {}", all.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn kind(config: &str, layers: &[&str], artifact_type: Option<&str>) -> ArtifactKind {
        let layers: Vec<String> = layers
            .iter()
            .map(|l| format!(r#"{{"mediaType":"{l}","digest":"{D}","size":1}}"#))
            .collect();
        let at = artifact_type
            .map(|a| format!(r#","artifactType":"{a}""#))
            .unwrap_or_default();
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"{at},"config":{{"mediaType":"{config}","digest":"{D}","size":2}},"layers":[{}]}}"#,
            layers.join(",")
        );
        ArtifactKind::of(&Manifest::parse(None, json.as_bytes()).unwrap())
    }

    #[test]
    fn kinds_from_media_types() {
        let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
        let empty = "application/vnd.oci.empty.v1+json";
        assert_eq!(kind(OCI_IMAGE_CONFIG, &[gz], None), ArtifactKind::Image);
        assert_eq!(kind(DOCKER_IMAGE_CONFIG, &[gz], None), ArtifactKind::Image);
        assert_eq!(
            kind(
                HELM_CONFIG,
                &["application/vnd.cncf.helm.chart.content.v1.tar+gzip"],
                None
            ),
            ArtifactKind::HelmChart
        );
        assert_eq!(
            kind(FLUX_CONFIG, &[FLUX_CONTENT], None),
            ArtifactKind::FluxBundle
        );
        // cosign's .sig manifests carry an image config; the layers say what they are
        assert_eq!(
            kind(OCI_IMAGE_CONFIG, &[COSIGN_SIMPLE_SIGNING], None),
            ArtifactKind::Signature
        );
        assert_eq!(
            kind(empty, &[DSSE_ENVELOPE], None),
            ArtifactKind::Attestation
        );
        assert_eq!(
            kind(empty, &[SPDX_JSON], Some(SPDX_JSON)),
            ArtifactKind::Sbom
        );
        assert_eq!(
            kind(empty, &["text/plain"], Some("application/vnd.acme")),
            ArtifactKind::Other
        );
        assert_eq!(
            kind(OCI_IMAGE_CONFIG, &[gz], Some("application/vnd.acme")),
            ArtifactKind::Other
        );
        let bundle = |predicate: &str| {
            let json = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"{SIGSTORE_BUNDLE}","config":{{"mediaType":"{empty}","digest":"{D}","size":2}},"layers":[{{"mediaType":"{SIGSTORE_BUNDLE}","digest":"{D}","size":1}}],"annotations":{{"dev.sigstore.bundle.predicateType":"{predicate}"}}}}"#
            );
            ArtifactKind::of(&Manifest::parse(None, json.as_bytes()).unwrap())
        };
        assert_eq!(
            bundle("https://sigstore.dev/cosign/sign/v1"),
            ArtifactKind::Signature
        );
        assert_eq!(
            bundle("https://cyclonedx.org/bom"),
            ArtifactKind::Attestation
        );
        let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let m = Manifest::parse(None, index.as_bytes()).unwrap();
        assert_eq!(ArtifactKind::of(&m), ArtifactKind::ImageIndex);
    }

    #[test]
    fn names_round_trip() {
        for k in ArtifactKind::ALL {
            assert_eq!(k.as_str().parse::<ArtifactKind>().unwrap(), k);
        }
        assert!("chart"
            .parse::<ArtifactKind>()
            .unwrap_err()
            .contains("helm-chart"));
    }
}
