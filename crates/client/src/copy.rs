//! Copying a manifest and everything it points at between repositories or registries: child
//! manifests of an index, blobs (mounted inside one registry, streamed between two, skipped
//! when present), and optionally the referrers (signatures, SBOMs) hanging off it.

use futures_util::{StreamExt, TryStreamExt};
use wharf_oci::Descriptor;

use crate::blobs::{RegistrySource, SharedProgress, Transfer};
use crate::walk::{walk, RepositoryManifests, Role};
use crate::{Client, Error, Reference, Result};

/// `os/architecture[/variant]`, as `--platform` takes it.
///
/// ```
/// use wharf_client::copy::Platform;
/// let p: Platform = "linux/arm64/v8".parse()?;
/// assert!(p.matches(&serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"})));
/// assert_eq!(p.to_string(), "linux/arm64/v8");
/// assert!("linux".parse::<Platform>().is_err());
/// # Ok::<(), wharf_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl std::str::FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: parts
                    .get(2)
                    .map(|v| v.to_string())
                    .filter(|v| !v.is_empty()),
            }),
            _ => Err(Error::Invalid(format!(
                "platform {s:?} is not os/architecture[/variant], e.g. linux/arm64/v8"
            ))),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

impl Platform {
    pub fn matches(&self, p: &serde_json::Value) -> bool {
        let field = |k| p.get(k).and_then(|v| v.as_str());
        field("os") == Some(&self.os)
            && field("architecture") == Some(&self.architecture)
            && (self.variant.is_none() || field("variant") == self.variant.as_deref())
    }
}

#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Also copy the referrers of what is copied, recursively.
    pub referrers: bool,
    /// From an index, copy only the manifest for this platform.
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyResult {
    pub source: String,
    pub destination: String,
    pub digest: wharf_oci::Digest,
    pub media_type: String,
    /// Every tag written in the destination.
    pub tags: Vec<String>,
    pub manifests: usize,
    #[serde(serialize_with = "crate::blobs::serialize_transfers")]
    pub blobs: Vec<(Descriptor, Transfer)>,
}

impl Client {
    /// Copies `src` to `dst`. A `dst` with neither tag nor digest takes `src`'s tag.
    pub async fn copy(
        &self,
        src: &Reference,
        dst: &Reference,
        opts: &CopyOptions,
        progress: &SharedProgress,
    ) -> Result<CopyResult> {
        // Without a platform an index is copied whole; with one, the child `pull` would pick.
        let (desc, bytes) = match &opts.platform {
            Some(p) => self.manifest_for_platform(src, Some(p)).await?,
            None => self.manifest(src).await?,
        };
        let target = match (&dst.tag, &dst.digest, &src.tag) {
            (None, None, Some(t)) if opts.platform.is_none() || src.digest.is_none() => {
                dst.with_tag(t)?
            }
            (None, None, _) => dst.with_digest(desc.digest.clone()),
            _ => dst.clone(),
        };
        let mut out = CopyResult {
            source: src.to_string(),
            destination: target.to_string(),
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            tags: target.tag.iter().cloned().collect(),
            manifests: 0,
            blobs: Vec::new(),
        };
        let source = RepositoryManifests {
            client: self,
            repository: src,
        };
        let nodes = walk(&source, vec![(desc, bytes)], opts.referrers).await?;
        for node in nodes {
            let node_target = match node.role {
                Role::Root => target.clone(),
                Role::Child | Role::Referrer => dst.with_digest(node.desc.digest.clone()),
                Role::Attachment => dst.with_tag(node.tag.as_deref().unwrap_or_default())?,
            };
            let done: Vec<(Descriptor, Transfer)> = futures_util::stream::iter(node.blobs())
                .map(|d| {
                    let node_target = &node_target;
                    async move {
                        let t = self.copy_blob(src, node_target, &d, progress).await?;
                        Ok::<_, Error>((d, t))
                    }
                })
                .buffer_unordered(self.opts.concurrency.max(1))
                .try_collect()
                .await?;
            out.blobs.extend(done);
            if node.role == Role::Referrer && node.manifest.subject.is_some() {
                self.put_referrer(&node_target, &node.desc.media_type, node.bytes)
                    .await?;
            } else {
                self.put_manifest(&node_target, &node.desc.media_type, node.bytes)
                    .await?;
            }
            out.manifests += 1;
        }
        Ok(out)
    }

    /// One blob from `src` to `dst`: skipped when present, mounted within one registry,
    /// else streamed (a dropped transfer resumes with ranged reads of the source).
    pub async fn copy_blob(
        &self,
        src: &Reference,
        dst: &Reference,
        d: &Descriptor,
        progress: &SharedProgress,
    ) -> Result<Transfer> {
        if self.blob_exists(dst, &d.digest).await?.is_some() {
            progress.finish(d, Transfer::Exists);
            return Ok(Transfer::Exists);
        }
        if src.registry == dst.registry
            && src.repository != dst.repository
            && self.mount_blob(dst, &d.digest, &src.repository).await?
        {
            progress.finish(d, Transfer::Mounted);
            return Ok(Transfer::Mounted);
        }
        let source = RegistrySource {
            client: self,
            from: src.clone(),
            digest: d.digest.clone(),
        };
        self.upload_blob(dst, d, &source, progress).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(p.matches(
            &serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"})
        ));
        assert!(!p.matches(&serde_json::json!({"os": "linux", "architecture": "arm64"})));
        let p: Platform = "linux/amd64".parse().unwrap();
        assert!(p.matches(&serde_json::json!({"os": "linux", "architecture": "amd64"})));
        assert!(!p.matches(&serde_json::json!({"os": "windows", "architecture": "amd64"})));
        assert!("linux".parse::<Platform>().is_err());
        assert!("/amd64".parse::<Platform>().is_err());
    }
}
