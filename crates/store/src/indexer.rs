//! Deciding, at push time, what a manifest is and what listings and search should know of
//! it; refusing configs that are not what their media type says (a chart's config that is
//! not Chart.yaml as JSON) and kinds a repository does not accept.

use futures_util::TryStreamExt;
use wharf_oci::media_type::{FLUX_CONFIG, HELM_CHART_CONTENT, HELM_CONFIG};
use wharf_oci::{ArtifactKind, Manifest, ManifestKind, Pattern, SpecError};

use crate::index::ArtifactInfo;
use crate::{BlobStore, Result, StoreError};

/// The most of a config blob the registry reads to index it.
const MAX_INDEXED_CONFIG: u64 = 1 << 20;

/// Which kinds the repositories matching a pattern accept.
#[derive(Debug, Clone)]
pub struct KindRule {
    pub repositories: Vec<Pattern>,
    pub accept: Vec<ArtifactKind>,
}

/// The kinds `repo` accepts, by the first rule matching it; `None` when no rule does.
pub fn accepted_kinds<'a>(rules: &'a [KindRule], repo: &str) -> Option<&'a KindRule> {
    rules
        .iter()
        .find(|r| r.repositories.iter().any(|p| p.matches(repo)))
}

fn invalid(msg: String) -> StoreError {
    StoreError::Spec(SpecError::Manifest(msg))
}

async fn read_config(blobs: &dyn BlobStore, d: &wharf_oci::Descriptor) -> Result<Vec<u8>> {
    if d.size > MAX_INDEXED_CONFIG {
        return Err(invalid(format!(
            "the {} config is {} bytes; more than the {} a config of this type may have",
            d.media_type, d.size, MAX_INDEXED_CONFIG
        )));
    }
    let stream = blobs.read(&d.digest, 0..d.size, d.size).await?;
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
    Ok(chunks.concat())
}

/// What `m` is and what to index of it. Reads the config blob of charts and Flux bundles
/// (which must be present: callers check the manifest's blobs first).
pub async fn describe(
    blobs: &dyn BlobStore,
    repo: &str,
    m: &Manifest,
    manifest_size: usize,
) -> Result<ArtifactInfo> {
    let kind = ArtifactKind::of(m);
    let size = manifest_size as u64
        + m.config.iter().map(|c| c.size).sum::<u64>()
        + m.layers.iter().map(|l| l.size).sum::<u64>()
        + match m.kind {
            ManifestKind::Index => m.manifests.iter().map(|c| c.size).sum::<u64>(),
            ManifestKind::Image => 0,
        };
    let title = m
        .annotations
        .as_ref()
        .and_then(|a| a.get("org.opencontainers.image.title"))
        .cloned();
    let description = m
        .annotations
        .as_ref()
        .and_then(|a| a.get("org.opencontainers.image.description"))
        .cloned();
    let mut info = ArtifactInfo {
        kind: kind.as_str().into(),
        name: title,
        description,
        size,
        ..ArtifactInfo::default()
    };
    let config = m.config.as_ref();
    match config.map(|c| c.media_type.as_str()) {
        Some(HELM_CONFIG) => {
            let c = config.expect("matched");
            let bytes = read_config(blobs, c).await?;
            chart_info(&mut info, &bytes, m).map_err(|why| {
                invalid(format!("{repo}: the Helm chart config {}: {why}", c.digest))
            })?;
        }
        Some(FLUX_CONFIG) => {
            let c = config.expect("matched");
            let bytes = read_config(blobs, c).await?;
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| {
                invalid(format!(
                    "{repo}: the Flux config {} is not JSON: {e}",
                    c.digest
                ))
            })?;
        }
        _ => {}
    }
    Ok(info)
}

/// A chart's config is its Chart.yaml as JSON: name and version are required.
fn chart_info(
    info: &mut ArtifactInfo,
    bytes: &[u8],
    m: &Manifest,
) -> std::result::Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("is not a JSON object")?;
    let text = |k: &str| {
        obj.get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    let name = text("name").ok_or("has no name")?;
    let version = text("version").ok_or("has no version")?;
    info.name = Some(name.to_string());
    info.version = Some(version.to_string());
    info.app_version = text("appVersion").map(str::to_string);
    info.description = text("description").map(str::to_string);
    info.keywords = obj
        .get("keywords")
        .and_then(|k| k.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let archive = m
        .layers
        .iter()
        .find(|l| l.media_type == HELM_CHART_CONTENT || l.media_type == "application/tar+gzip");
    let details = serde_json::json!({
        "chart": v,
        "archive": archive.map(|a| serde_json::json!({"digest": a.digest, "size": a.size})),
    });
    info.details = Some(details.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart_manifest() -> Manifest {
        let d = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let json = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{HELM_CONFIG}","digest":"{d}","size":2}},"layers":[{{"mediaType":"{HELM_CHART_CONTENT}","digest":"{d}","size":9}}]}}"#
        );
        Manifest::parse(
            Some("application/vnd.oci.image.manifest.v1+json"),
            json.as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn chart_configs_are_read_and_checked() {
        let m = chart_manifest();
        let mut info = ArtifactInfo::default();
        chart_info(
            &mut info,
            br#"{"name":"demo","version":"1.2.3","appVersion":"2","description":"A Demo","keywords":["web"]}"#,
            &m,
        )
        .unwrap();
        assert_eq!(info.name.as_deref(), Some("demo"));
        assert_eq!(info.keywords, ["web"]);
        assert!(info.search_text("charts/demo").contains("a demo"));
        assert!(info.details.unwrap().contains(r#""size":9"#));
        for (bad, why) in [
            (&b"not json"[..], "is not JSON"),
            (b"[1]", "not a JSON object"),
            (br#"{"version":"1.0.0"}"#, "has no name"),
            (br#"{"name":"x"}"#, "has no version"),
        ] {
            let e = chart_info(&mut ArtifactInfo::default(), bad, &m).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = vec![
            KindRule {
                repositories: vec![Pattern::new("charts/**").unwrap()],
                accept: vec![ArtifactKind::HelmChart],
            },
            KindRule {
                repositories: vec![Pattern::new("**").unwrap()],
                accept: vec![ArtifactKind::Image],
            },
        ];
        assert_eq!(
            accepted_kinds(&rules, "charts/x").unwrap().accept,
            [ArtifactKind::HelmChart]
        );
        assert_eq!(
            accepted_kinds(&rules, "apps/x").unwrap().accept,
            [ArtifactKind::Image]
        );
        assert!(accepted_kinds(&rules[..1], "apps/x").is_none());
    }
}
