//! Manifests, tags and the catalog.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, LINK};
use reqwest::Method;
use wharf_oci::media_type::{self, essence};
use wharf_oci::{Descriptor, Digest};

use crate::auth::repository_scope;
use crate::client::{check, Body};
use crate::{Client, Error, Reference, Result};

/// Every manifest type the client understands, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifests larger than this are refused when read, as registries refuse them when written.
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

fn accept() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
    h
}

/// The media type of manifest bytes: the `mediaType` field, else guessed from the shape.
pub fn detect_media_type(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if let Some(m) = v.get("mediaType").and_then(|m| m.as_str()) {
        return Some(m.to_string());
    }
    if v.get("manifests").is_some() {
        Some(media_type::OCI_INDEX.to_string())
    } else if v.get("config").is_some() {
        Some(media_type::OCI_MANIFEST.to_string())
    } else {
        None
    }
}

impl Client {
    fn manifest_url(&self, r: &Reference, reference: &str) -> String {
        format!(
            "{}/v2/{}/manifests/{reference}",
            self.base_url(r),
            r.repository
        )
    }

    /// The descriptor of the manifest `r` names (HEAD; a GET when the registry does not
    /// say the digest).
    pub async fn resolve(&self, r: &Reference) -> Result<Descriptor> {
        let url = self.manifest_url(r, &r.manifest_reference());
        let scope = [repository_scope(&r.repository, false)];
        let resp = self
            .send(r, Method::HEAD, &url, &scope, accept(), Body::Empty)
            .await?;
        if resp.status() == 404 {
            return Err(Error::NotFound(r.to_string()));
        }
        let resp = check(resp, "HEAD", &url).await?;
        let h = resp.headers();
        let digest = h
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let size = h
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let mt = h
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| essence(v).to_string());
        match (digest, size, mt) {
            (Some(digest), Some(size), Some(media_type))
                if r.digest.is_none() || r.digest.as_ref() == Some(&digest) =>
            {
                Ok(descriptor(media_type, digest, size))
            }
            _ => Ok(self.manifest(r).await?.0),
        }
    }

    /// The manifest `r` names: its descriptor and exact bytes, verified against the digest
    /// when `r` has one.
    pub async fn manifest(&self, r: &Reference) -> Result<(Descriptor, Bytes)> {
        let url = self.manifest_url(r, &r.manifest_reference());
        let scope = [repository_scope(&r.repository, false)];
        let resp = self
            .send(r, Method::GET, &url, &scope, accept(), Body::Empty)
            .await?;
        if resp.status() == 404 {
            return Err(Error::NotFound(r.to_string()));
        }
        let resp = check(resp, "GET", &url).await?;
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| essence(v).to_string());
        if resp.content_length().unwrap_or(0) > MAX_MANIFEST_SIZE as u64 {
            return Err(Error::Protocol(format!("{r}: manifest larger than 4 MiB")));
        }
        let bytes = read_limited(resp, MAX_MANIFEST_SIZE, &url).await?;
        let algorithm = r
            .digest
            .as_ref()
            .map_or(wharf_oci::Algorithm::Sha256, Digest::algorithm);
        let digest = Digest::of(algorithm, &bytes);
        if let Some(want) = &r.digest {
            if want != &digest {
                return Err(Error::DigestMismatch {
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        let media_type = header_type
            .filter(|t| !t.is_empty() && t != "application/json" && t != "text/plain")
            .or_else(|| detect_media_type(&bytes))
            .ok_or_else(|| Error::Protocol(format!("{r}: the manifest's media type is unknown")))?;
        Ok((descriptor(media_type, digest, bytes.len() as u64), bytes))
    }

    /// Puts manifest bytes under `r`'s tag (or digest); returns the registry's digest.
    pub async fn put_manifest(
        &self,
        r: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest> {
        Ok(self.put_manifest_answer(r, media_type, bytes).await?.0)
    }

    /// Puts a manifest; returns its digest and whether the registry processed its subject
    /// (it answers with `OCI-Subject`).
    pub(crate) async fn put_manifest_answer(
        &self,
        r: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(Digest, bool)> {
        let url = self.manifest_url(r, &r.manifest_reference());
        let scope = [repository_scope(&r.repository, true)];
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type)
                .map_err(|_| Error::Invalid(format!("bad media type {media_type:?}")))?,
        );
        let local = Digest::sha256_of(&bytes);
        let resp = self
            .send(r, Method::PUT, &url, &scope, h, Body::Bytes(bytes))
            .await?;
        let resp = check(resp, "PUT", &url).await?;
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(local);
        Ok((digest, resp.headers().contains_key("oci-subject")))
    }

    /// DELETE on a manifest or blob URL; a 404 is [`Error::NotFound`] naming `what`.
    pub(crate) async fn delete_url(&self, r: &Reference, url: &str, what: String) -> Result<()> {
        let scope = [format!("repository:{}:delete", r.repository)];
        let resp = self
            .send(
                r,
                Method::DELETE,
                url,
                &scope,
                HeaderMap::new(),
                Body::Empty,
            )
            .await?;
        if resp.status() == 404 {
            return Err(Error::NotFound(what));
        }
        check(resp, "DELETE", url).await.map(drop)
    }

    /// Deletes the manifest `r` names; a tag is resolved to its digest first, as registries
    /// delete manifests by digest.
    pub async fn delete_manifest(&self, r: &Reference) -> Result<Digest> {
        let digest = match &r.digest {
            Some(d) => d.clone(),
            None => self.resolve(r).await?.digest,
        };
        let url = self.manifest_url(r, &digest.to_string());
        self.delete_url(r, &url, r.with_digest(digest.clone()).to_string())
            .await?;
        Ok(digest)
    }

    /// Removes the tag `r` names, and nothing else: the manifest stays, under its digest and
    /// any other tags. Uses the registry's tag DELETE (distribution-spec); a registry without
    /// one is an error that says so, with nothing changed.
    pub async fn untag(&self, r: &Reference) -> Result<()> {
        let tag = match (&r.tag, &r.digest) {
            (Some(t), None) => t,
            _ => {
                return Err(Error::Invalid(format!(
                    "{r}: untag takes REPOSITORY:TAG (to delete a manifest by digest: wharf manifest delete)"
                )))
            }
        };
        let url = self.manifest_url(r, tag);
        let scope = [format!("repository:{}:delete", r.repository)];
        let resp = self
            .send(
                r,
                Method::DELETE,
                &url,
                &scope,
                HeaderMap::new(),
                Body::Empty,
            )
            .await?;
        match resp.status().as_u16() {
            404 => Err(Error::NotFound(r.to_string())),
            400 | 405 => {
                let status = resp.status().as_u16();
                let code = check(resp, "DELETE", &url)
                    .await
                    .err()
                    .and_then(|e| match e {
                        Error::Registry { code: Some(c), .. } => Some(format!(" {c}")),
                        _ => None,
                    })
                    .unwrap_or_default();
                Err(Error::Unsupported(format!(
                    "{} cannot delete a tag alone (DELETE by tag answered {status}{code}); {r} still points to its manifest",
                    r.registry
                )))
            }
            _ => check(resp, "DELETE", &url).await.map(drop),
        }
    }

    /// The tags of `r`'s repository that point to `digest` (each tag resolved, a few at a
    /// time), so a caller can say what deleting the manifest would take with it.
    pub async fn tags_of(&self, r: &Reference, digest: &Digest) -> Result<Vec<String>> {
        use futures_util::{StreamExt, TryStreamExt};
        let tags = match self.tags(r).await {
            Ok(t) => t,
            Err(Error::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let hits: Vec<Option<String>> = futures_util::stream::iter(tags)
            .map(|t| async move {
                let tagged = r.with_tag(&t)?;
                match self.resolve(&tagged).await {
                    Ok(d) if &d.digest == digest => Ok(Some(t)),
                    Ok(_) | Err(Error::NotFound(_)) => Ok(None),
                    Err(e) if e.status() == Some(404) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(self.opts.concurrency.max(1) * 2)
            .try_collect()
            .await?;
        Ok(hits.into_iter().flatten().collect())
    }

    /// Every tag of `r`'s repository, following `Link` pages.
    pub async fn tags(&self, r: &Reference) -> Result<Vec<String>> {
        let first = format!("{}/v2/{}/tags/list", self.base_url(r), r.repository);
        let scope = [repository_scope(&r.repository, false)];
        self.paginate(r, first, &scope, "tags").await
    }

    /// Every repository of `r`'s registry (the `_catalog` endpoint).
    pub async fn catalog(&self, r: &Reference) -> Result<Vec<String>> {
        let first = format!("{}/v2/_catalog", self.base_url(r));
        let scope = ["registry:catalog:*".to_string()];
        self.paginate(r, first, &scope, "repositories").await
    }

    async fn paginate(
        &self,
        r: &Reference,
        first: String,
        scope: &[String],
        field: &str,
    ) -> Result<Vec<String>> {
        let not_found = || Error::NotFound(r.name());
        let items = self
            .paginate_values(r, first, scope, field, usize::MAX, &not_found)
            .await?;
        Ok(items
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect())
    }

    /// The items of the array `field` over every page from `first` (following `Link`), up
    /// to `limit`; a 404 is `on_404()`.
    pub(crate) async fn paginate_values(
        &self,
        r: &Reference,
        first: String,
        scope: &[String],
        field: &str,
        limit: usize,
        on_404: &dyn Fn() -> Error,
    ) -> Result<Vec<serde_json::Value>> {
        let base = self.base_url(r);
        let mut next = Some(first);
        let mut out = Vec::new();
        while let Some(url) = next.take() {
            let resp = self
                .send(r, Method::GET, &url, scope, HeaderMap::new(), Body::Empty)
                .await?;
            if resp.status() == 404 {
                return Err(on_404());
            }
            let resp = check(resp, "GET", &url).await?;
            next = next_page(&resp, &base);
            let v: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| Error::Protocol(format!("{url}: {e}")))?;
            if let Some(items) = v.get(field).and_then(|t| t.as_array()) {
                out.extend(items.iter().cloned());
            }
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }
}

/// A descriptor with only the three required fields.
pub fn descriptor(media_type: String, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type,
        digest,
        size,
        urls: None,
        annotations: None,
        artifact_type: None,
        data: None,
        platform: None,
    }
}

/// The absolute URL of the next page, from the answer's `Link` header.
pub(crate) fn next_page(resp: &reqwest::Response, base: &str) -> Option<String> {
    let l = next_link(resp.headers().get(LINK)?.to_str().ok()?)?;
    Some(if l.starts_with('/') {
        format!("{base}{l}")
    } else {
        l
    })
}

/// The target of a `Link: <url>; rel="next"` header.
pub(crate) fn next_link(v: &str) -> Option<String> {
    v.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// Reads a small response body, refusing one past `limit` bytes.
pub(crate) async fn read_limited(
    resp: reqwest::Response,
    limit: usize,
    url: &str,
) -> Result<Bytes> {
    use futures_util::StreamExt;
    let mut out = bytes::BytesMut::new();
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|source| Error::Transport {
            url: url.to_string(),
            source,
        })?;
        if out.len() + chunk.len() > limit {
            return Err(Error::Protocol(format!(
                "{url}: answer larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(next_link(r#"<http://x/y>; rel="prev""#), None);
    }

    #[test]
    fn media_type_detection() {
        assert_eq!(
            detect_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(),
            Some(media_type::OCI_INDEX)
        );
        assert_eq!(
            detect_media_type(br#"{"mediaType":"x/y"}"#).as_deref(),
            Some("x/y")
        );
        assert_eq!(detect_media_type(b"[]"), None);
    }
}
