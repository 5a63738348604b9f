//! Uploads: one request for a small blob, `chunk_size` PATCHes for a large one that resume
//! from the server's `Range` after a dropped connection, new sessions on errors worth
//! retrying, and cross-repository mounts.

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode};
use wharf_oci::{Descriptor, Digest};

use super::{counted, BlobSource, ByteStream, SharedProgress, Transfer};
use crate::auth::repository_scope;
use crate::client::{check, Body};
use crate::retry::Retry;
use crate::{Client, Error, Reference, Result};

impl Client {
    /// Mounts `d` from repository `from` of the same registry. Returns whether the registry
    /// mounted it; when it did not, nothing was created.
    pub async fn mount_blob(&self, r: &Reference, d: &Digest, from: &str) -> Result<bool> {
        let url = format!(
            "{}/v2/{}/blobs/uploads/?mount={d}&from={from}",
            self.base_url(r),
            r.repository
        );
        let scope = [
            repository_scope(&r.repository, true),
            repository_scope(from, false),
        ];
        let resp = self
            .send(r, Method::POST, &url, &scope, HeaderMap::new(), Body::Empty)
            .await?;
        let resp = check(resp, "POST", &url).await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(true);
        }
        // The registry opened an ordinary session instead; close it so nothing lingers.
        if let Some(loc) = location(self, r, &resp) {
            self.cancel_upload(r, &loc).await;
        }
        Ok(false)
    }

    /// Ends the upload session at `loc`. Best effort: a session left open expires.
    pub(crate) async fn cancel_upload(&self, r: &Reference, loc: &str) {
        let scope = [repository_scope(&r.repository, true)];
        let sent = self
            .send(
                r,
                Method::DELETE,
                loc,
                &scope,
                HeaderMap::new(),
                Body::Empty,
            )
            .await;
        if let Err(e) = sent {
            tracing::debug!("cancelling the upload at {loc}: {e}");
        }
    }

    /// Uploads a blob unless the repository has it. Small blobs go in one request; large
    /// ones in `chunk_size` PATCHes, and a chunk cut short resumes from the server's `Range`.
    pub async fn push_blob(
        &self,
        r: &Reference,
        d: &Descriptor,
        source: &dyn BlobSource,
        progress: &SharedProgress,
    ) -> Result<Transfer> {
        if self.blob_exists(r, &d.digest).await?.is_some() {
            progress.finish(d, Transfer::Exists);
            return Ok(Transfer::Exists);
        }
        self.upload_blob(r, d, source, progress).await
    }

    /// Uploads a blob without first asking whether the repository has it.
    pub(crate) async fn upload_blob(
        &self,
        r: &Reference,
        d: &Descriptor,
        source: &dyn BlobSource,
        progress: &SharedProgress,
    ) -> Result<Transfer> {
        progress.start(d);
        self.upload_retrying(r, d, source, progress, Retry::new(&self.opts))
            .await?;
        progress.finish(d, Transfer::Uploaded);
        Ok(Transfer::Uploaded)
    }

    /// Uploads `d` in new sessions until one succeeds or `retry` gives up.
    pub(crate) async fn upload_retrying(
        &self,
        r: &Reference,
        d: &Descriptor,
        source: &dyn BlobSource,
        progress: &SharedProgress,
        mut retry: Retry,
    ) -> Result<()> {
        loop {
            match self.upload(r, d, source, progress).await {
                Ok(()) => return Ok(()),
                Err(e) => match retry.after_error(&e) {
                    Some(pause) => {
                        tracing::debug!("{}: {e}; starting a new upload in {pause:?}", d.digest);
                        progress.rewind(d, 0);
                        tokio::time::sleep(pause).await;
                    }
                    None => return Err(e),
                },
            }
        }
    }

    pub(crate) async fn start_upload(&self, r: &Reference) -> Result<String> {
        let url = format!("{}/v2/{}/blobs/uploads/", self.base_url(r), r.repository);
        let scope = [repository_scope(&r.repository, true)];
        let resp = self
            .send(r, Method::POST, &url, &scope, HeaderMap::new(), Body::Empty)
            .await?;
        let resp = check(resp, "POST", &url).await?;
        location(self, r, &resp).ok_or_else(|| Error::Protocol(format!("POST {url}: no Location")))
    }

    async fn upload(
        &self,
        r: &Reference,
        d: &Descriptor,
        source: &dyn BlobSource,
        progress: &SharedProgress,
    ) -> Result<()> {
        let mut loc = self.start_upload(r).await?;
        if d.size <= self.opts.monolithic_limit.min(self.opts.chunk_size) {
            let body = counted(source.open(0, d.size).await?, d.clone(), progress);
            return self.close_upload(r, &loc, d, Some((body, d.size))).await;
        }
        self.send_chunks(r, &mut loc, d, source, progress).await?;
        self.close_upload(r, &loc, d, None).await
    }

    /// Sends `d.size` bytes of `source` to the session at `loc` in `chunk_size` PATCHes,
    /// keeping `loc` at the session's latest `Location`. Only `d.size` is read from `d`, and
    /// `d` is what `progress` hears about.
    pub(crate) async fn send_chunks(
        &self,
        r: &Reference,
        loc: &mut String,
        d: &Descriptor,
        source: &dyn BlobSource,
        progress: &SharedProgress,
    ) -> Result<()> {
        let scope = [repository_scope(&r.repository, true)];
        let mut at = 0u64;
        // A chunk cut short resumes from the session's Range; two more tries than a request
        // gets, since a resume re-sends only what was lost.
        let mut resumes = Retry::with_attempts(&self.opts, self.opts.retries + 2);
        while at < d.size {
            let len = self.opts.chunk_size.min(d.size - at);
            let body = counted(source.open(at, len).await?, d.clone(), progress);
            let mut h = HeaderMap::new();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(CONTENT_LENGTH, HeaderValue::from(len));
            h.insert(
                "content-range",
                HeaderValue::from_str(&format!("{at}-{}", at + len - 1)).expect("ascii"),
            );
            let sent = self
                .send(
                    r,
                    Method::PATCH,
                    loc,
                    &scope,
                    h,
                    Body::Stream(reqwest::Body::wrap_stream(body)),
                )
                .await;
            let outcome = match sent {
                Ok(resp) => check(resp, "PATCH", loc).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(resp) => {
                    if let Some(l) = location(self, r, &resp) {
                        *loc = l;
                    }
                    at = range_end(&resp).map_or(at + len, |e| e + 1);
                }
                Err(e) if e.is_transient() || e.status() == Some(416) => {
                    // Ask the session how far it got and go on from there.
                    let Some(pause) = resumes.next(e.retry_after()) else {
                        return Err(e);
                    };
                    tokio::time::sleep(pause).await;
                    let status = match self
                        .send(r, Method::GET, loc, &scope, HeaderMap::new(), Body::Empty)
                        .await
                    {
                        Ok(resp) => check(resp, "GET", loc).await,
                        Err(e) => Err(e),
                    };
                    match status {
                        Ok(resp) => {
                            at = range_end(&resp).map_or(0, |e| e + 1);
                            if let Some(l) = location(self, r, &resp) {
                                *loc = l;
                            }
                        }
                        Err(status_err) => {
                            // Some registries (Distribution 2.8) invalidate a session whose
                            // chunk was cut short: start a new one.
                            tracing::debug!("{}: {status_err}; starting a new session", d.digest);
                            *loc = self.start_upload(r).await?;
                            at = 0;
                        }
                    }
                    tracing::debug!("{}: {e}; resuming at {at}", d.digest);
                    progress.rewind(d, at);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub(crate) async fn close_upload(
        &self,
        r: &Reference,
        loc: &str,
        d: &Descriptor,
        body: Option<(ByteStream, u64)>,
    ) -> Result<()> {
        let scope = [repository_scope(&r.repository, true)];
        let sep = if loc.contains('?') { '&' } else { '?' };
        let url = format!("{loc}{sep}digest={}", d.digest);
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let body = match body {
            Some((s, len)) => {
                h.insert(CONTENT_LENGTH, HeaderValue::from(len));
                Body::Stream(reqwest::Body::wrap_stream(s))
            }
            None => {
                h.insert(CONTENT_LENGTH, HeaderValue::from(0));
                Body::Empty
            }
        };
        let resp = self.send(r, Method::PUT, &url, &scope, h, body).await?;
        check(resp, "PUT", &url).await.map(drop)
    }
}

/// The upload's `Location`, absolute.
fn location(c: &Client, r: &Reference, resp: &reqwest::Response) -> Option<String> {
    let l = resp.headers().get(LOCATION)?.to_str().ok()?;
    Some(if l.starts_with("http://") || l.starts_with("https://") {
        l.to_string()
    } else {
        format!("{}{l}", c.base_url(r))
    })
}

/// The last byte an upload session holds, from its `Range: 0-<end>` header.
fn range_end(resp: &reqwest::Response) -> Option<u64> {
    let v = resp.headers().get(RANGE)?.to_str().ok()?;
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    v.split_once('-')?.1.parse().ok()
}
