//! Referrers: the distribution-spec v1.1 API, and the referrers tag schema (an index tagged
//! `<alg>-<hex>` listing the referrers) for registries without it, such as Distribution 2.8.
//! Writing a manifest with a `subject` to such a registry keeps that index up to date.

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::json;
use wharf_oci::media_type::OCI_INDEX;
use wharf_oci::{Descriptor, Digest, Manifest};

use crate::auth::repository_scope;
use crate::client::{check, Body};
use crate::manifests::{next_page, read_limited, MAX_MANIFEST_SIZE};
use crate::{Client, Error, Reference, Result};

/// The tag the referrers tag schema keeps `subject`'s referrers under.
pub fn referrers_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm().as_str(), subject.hex())
}

/// Whether a tag is one the referrers tag schema uses (`sha256-<64 hex>`, `sha512-<128 hex>`).
pub fn is_referrers_tag(tag: &str) -> bool {
    let hex_len = |h: &str, n| {
        h.len() == n
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match tag.split_once('-') {
        Some(("sha256", h)) => hex_len(h, 64),
        Some(("sha512", h)) => hex_len(h, 128),
        _ => false,
    }
}

impl Client {
    /// The referrers of the manifest `subject` (which must carry a digest), optionally only
    /// those of one artifact type. Uses the referrers API, or the tag schema when the
    /// registry has no such API.
    pub async fn referrers(
        &self,
        subject: &Reference,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let digest = subject
            .digest
            .clone()
            .ok_or_else(|| Error::Invalid(format!("{subject}: referrers need a digest")))?;
        let base = self.base_url(subject);
        let mut url = format!("{base}/v2/{}/referrers/{digest}", subject.repository);
        if let Some(t) = artifact_type {
            url.push_str(&format!(
                "?artifactType={}",
                url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
            ));
        }
        let scope = [repository_scope(&subject.repository, false)];
        let mut out = Vec::new();
        let mut next = Some(url);
        let mut filtered = artifact_type.is_none();
        while let Some(url) = next.take() {
            let resp = self
                .send(
                    subject,
                    Method::GET,
                    &url,
                    &scope,
                    HeaderMap::new(),
                    Body::Empty,
                )
                .await?;
            let is_index = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(OCI_INDEX));
            if resp.status() == 404 && !is_index && out.is_empty() {
                return self
                    .referrers_from_tag(subject, &digest, artifact_type)
                    .await;
            }
            let resp = check(resp, "GET", &url).await?;
            filtered |= resp.headers().contains_key("oci-filters-applied");
            next = next_page(&resp, &base);
            let body = read_limited(resp, MAX_MANIFEST_SIZE, &url).await?;
            out.extend(index_entries(&body)?);
        }
        if !filtered {
            out.retain(|d| d.artifact_type.as_deref() == artifact_type);
        }
        Ok(out)
    }

    async fn referrers_from_tag(
        &self,
        subject: &Reference,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let tagged = subject.with_tag(&referrers_tag(digest))?;
        let body = match self.manifest(&tagged).await {
            Ok((_, b)) => b,
            Err(Error::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = index_entries(&body)?;
        if let Some(t) = artifact_type {
            out.retain(|d| d.artifact_type.as_deref() == Some(t));
        }
        Ok(out)
    }

    /// Puts a manifest that has a `subject`; when the registry does not process subjects
    /// itself (no `OCI-Subject` in its answer), adds the manifest to the subject's
    /// referrers tag index, as the spec asks of clients.
    pub async fn put_referrer(
        &self,
        r: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest> {
        let m = Manifest::parse(Some(media_type), &bytes)?;
        let subject = m
            .subject
            .clone()
            .ok_or_else(|| Error::Invalid("the manifest has no subject".into()))?;
        let (digest, handled) = self
            .put_manifest_answer(r, media_type, bytes.clone())
            .await?;
        if !handled {
            let d = Descriptor {
                media_type: media_type.to_string(),
                digest: digest.clone(),
                size: bytes.len() as u64,
                urls: None,
                annotations: m.annotations.clone(),
                artifact_type: m
                    .artifact_type
                    .clone()
                    .or_else(|| m.config.as_ref().map(|c| c.media_type.clone())),
                data: None,
                platform: None,
            };
            self.add_to_referrers_tag(r, &subject.digest, d).await?;
        }
        Ok(digest)
    }

    /// Adds `d` to the index tagged `<alg>-<hex>` for `subject` (creating it if needed).
    pub async fn add_to_referrers_tag(
        &self,
        r: &Reference,
        subject: &Digest,
        d: Descriptor,
    ) -> Result<()> {
        let tagged = r.with_tag(&referrers_tag(subject))?;
        let mut entries = match self.manifest(&tagged).await {
            Ok((_, b)) => index_entries(&b)?,
            Err(Error::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        if entries.iter().any(|e| e.digest == d.digest) {
            return Ok(());
        }
        entries.push(d);
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        let bytes = Bytes::from(serde_json::to_vec(&index).expect("JSON serialises"));
        self.put_manifest(&tagged, OCI_INDEX, bytes).await.map(drop)
    }
}

fn index_entries(body: &[u8]) -> Result<Vec<Descriptor>> {
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Descriptor>,
    }
    let i: Index = serde_json::from_slice(body)
        .map_err(|e| Error::Protocol(format!("referrers answer is not an image index: {e}")))?;
    Ok(i.manifests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_schema_name() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(referrers_tag(&d), format!("sha256-{}", d.hex()));
        assert!(is_referrers_tag(&referrers_tag(&d)));
        assert!(!is_referrers_tag("sha256-abc"));
        assert!(!is_referrers_tag("v1"));
        assert!(!is_referrers_tag(&format!("sha256-{}", "A".repeat(64))));
    }
}
