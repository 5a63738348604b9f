//! Copying a manifest and everything it points at between repositories or registries: child
//! manifests of an index, blobs (mounted inside one registry, streamed between two, skipped
//! when present), and optionally the referrers (signatures, SBOMs) hanging off it.

use std::future::Future;
use std::pin::Pin;

use futures_util::{StreamExt, TryStreamExt};
use wharf_oci::{Descriptor, Manifest, ManifestKind};

use crate::blobs::{RegistrySource, SharedProgress, Transfer};
use crate::{Client, Error, Reference, Result};

/// `os/architecture[/variant]`, as `--platform` takes it.
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
pub struct CopyResult {
    pub source: String,
    pub destination: String,
    pub digest: wharf_oci::Digest,
    pub media_type: String,
    pub manifests: usize,
    pub blobs: Vec<(Descriptor, Transfer)>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Client {
    /// Copies `src` to `dst`. A `dst` with neither tag nor digest takes `src`'s tag.
    pub async fn copy(
        &self,
        src: &Reference,
        dst: &Reference,
        opts: &CopyOptions,
        progress: &SharedProgress,
    ) -> Result<CopyResult> {
        let (mut desc, mut bytes) = self.manifest(src).await?;
        if let Some(p) = &opts.platform {
            let m = Manifest::parse(Some(&desc.media_type), &bytes)?;
            if m.kind == ManifestKind::Index {
                let child = m
                    .manifests
                    .iter()
                    .find(|c| c.platform.as_ref().is_some_and(|v| p.matches(v)))
                    .ok_or_else(|| {
                        Error::NotFound(format!("{src} for platform {}/{}", p.os, p.architecture))
                    })?;
                (desc, bytes) = self
                    .manifest(&src.with_digest(child.digest.clone()))
                    .await?;
            }
        }
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
            manifests: 0,
            blobs: Vec::new(),
        };
        let job = CopyJob {
            client: self,
            src,
            progress,
        };
        job.tree(&target, &desc, bytes, false, &mut out).await?;
        if opts.referrers {
            job.referrers(dst, &desc, &mut out).await?;
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

/// One copy from a source repository: the recursion over manifests and referrers.
struct CopyJob<'a> {
    client: &'a Client,
    src: &'a Reference,
    progress: &'a SharedProgress,
}

impl<'a> CopyJob<'a> {
    /// Copies one manifest's children and blobs, then the manifest itself under `target`.
    fn tree(
        &'a self,
        target: &'a Reference,
        desc: &'a Descriptor,
        bytes: bytes::Bytes,
        as_referrer: bool,
        out: &'a mut CopyResult,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let c = self.client;
            let m = Manifest::parse(Some(&desc.media_type), &bytes)?;
            for child in &m.manifests {
                let (cd, cb) = c
                    .manifest(&self.src.with_digest(child.digest.clone()))
                    .await?;
                let child_dst = target.with_digest(child.digest.clone());
                self.tree(&child_dst, &cd, cb, false, out).await?;
            }
            let blobs: Vec<Descriptor> = m.config.iter().chain(&m.layers).cloned().collect();
            let done: Vec<(Descriptor, Transfer)> = futures_util::stream::iter(blobs)
                .map(|d| async move {
                    let t = c.copy_blob(self.src, target, &d, self.progress).await?;
                    Ok::<_, Error>((d, t))
                })
                .buffer_unordered(c.opts.concurrency.max(1))
                .try_collect()
                .await?;
            out.blobs.extend(done);
            if as_referrer && m.subject.is_some() {
                c.put_referrer(target, &desc.media_type, bytes).await?;
            } else {
                c.put_manifest(target, &desc.media_type, bytes).await?;
            }
            out.manifests += 1;
            Ok(())
        })
    }

    /// Copies the referrers of `subject`, and theirs, into `dst`'s repository.
    fn referrers(
        &'a self,
        dst: &'a Reference,
        subject: &'a Descriptor,
        out: &'a mut CopyResult,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let c = self.client;
            let refs = c
                .referrers(&self.src.with_digest(subject.digest.clone()), None)
                .await?;
            for r in refs {
                let (rd, rb) = c.manifest(&self.src.with_digest(r.digest.clone())).await?;
                let target = dst.with_digest(rd.digest.clone());
                self.tree(&target, &rd, rb, true, out).await?;
                self.referrers(dst, &rd, out).await?;
            }
            Ok(())
        })
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
