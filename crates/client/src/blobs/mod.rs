//! Blob transfer: existence checks, streamed downloads verified while written, uploads in one
//! request or in chunks that resume from the server's `Range` after a dropped connection, and
//! cross-repository mounts.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, RANGE};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use wharf_oci::{Descriptor, Digest};

use crate::auth::repository_scope;
use crate::client::{check, Body};
use crate::retry::Retry;
use crate::{Client, Error, Reference, Result};

mod upload;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Where an upload's bytes come from. It must be able to start again at any offset, which is
/// what lets an interrupted upload resume instead of starting over.
#[async_trait]
pub trait BlobSource: Send + Sync {
    /// Exactly `len` bytes starting at `offset`.
    async fn open(&self, offset: u64, len: u64) -> Result<ByteStream>;
}

/// A blob in a local file.
pub struct FileSource(pub PathBuf);

#[async_trait]
impl BlobSource for FileSource {
    async fn open(&self, offset: u64, len: u64) -> Result<ByteStream> {
        let mut f = tokio::fs::File::open(&self.0)
            .await
            .map_err(|e| Error::file(&self.0, e))?;
        f.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| Error::file(&self.0, e))?;
        let path = self.0.clone();
        let s = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 << 10)
            .map_err(move |e| Error::file(&path, e));
        Ok(Box::pin(s))
    }
}

/// A blob already in memory (configs, manifests' small companions).
pub struct BytesSource(pub Bytes);

#[async_trait]
impl BlobSource for BytesSource {
    async fn open(&self, offset: u64, len: u64) -> Result<ByteStream> {
        let b = self.0.slice(offset as usize..(offset + len) as usize);
        Ok(Box::pin(futures_util::stream::once(async move { Ok(b) })))
    }
}

/// A blob on another registry (or repository), read with ranged GETs.
pub struct RegistrySource<'a> {
    pub client: &'a Client,
    pub from: Reference,
    pub digest: Digest,
}

#[async_trait]
impl BlobSource for RegistrySource<'_> {
    async fn open(&self, offset: u64, len: u64) -> Result<ByteStream> {
        self.client
            .blob_range(&self.from, &self.digest, offset, len)
            .await
    }
}

/// What happened to a blob on its way up.
/// Serialises `(descriptor, transfer)` pairs as the descriptor's fields plus `transfer`, one
/// JSON object per blob: the shape `--format json` documents (docs/cli-json.md).
pub(crate) fn serialize_transfers<S: serde::Serializer>(
    v: &[(Descriptor, Transfer)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    #[derive(serde::Serialize)]
    struct Item<'a> {
        #[serde(flatten)]
        descriptor: &'a Descriptor,
        transfer: Transfer,
    }
    s.collect_seq(v.iter().map(|(d, t)| Item {
        descriptor: d,
        transfer: *t,
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transfer {
    /// The registry had it already.
    Exists,
    /// Mounted from another repository of the same registry: no bytes moved.
    Mounted,
    Uploaded,
    Downloaded,
}

/// Progress callbacks; the CLI draws bars from them. All default to doing nothing.
pub trait Progress: Send + Sync {
    fn start(&self, _d: &Descriptor) {}
    /// `n` more bytes of `d` moved.
    fn advance(&self, _d: &Descriptor, _n: u64) {}
    /// The transfer of `d` restarted at `at` (a resumed upload or download).
    fn rewind(&self, _d: &Descriptor, _at: u64) {}
    fn finish(&self, _d: &Descriptor, _t: Transfer) {}
}

/// Progress that is not shown.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Progress shared between a transfer and the streams it creates.
pub type SharedProgress = Arc<dyn Progress>;

fn counted(s: ByteStream, d: Descriptor, p: &SharedProgress) -> ByteStream {
    let p = p.clone();
    Box::pin(s.inspect_ok(move |b| p.advance(&d, b.len() as u64)))
}

impl Client {
    fn blob_url(&self, r: &Reference, d: &Digest) -> String {
        format!("{}/v2/{}/blobs/{d}", self.base_url(r), r.repository)
    }

    /// The size of the blob if the repository has it.
    pub async fn blob_exists(&self, r: &Reference, d: &Digest) -> Result<Option<u64>> {
        let url = self.blob_url(r, d);
        let scope = [repository_scope(&r.repository, false)];
        let resp = self
            .send(r, Method::HEAD, &url, &scope, HeaderMap::new(), Body::Empty)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = check(resp, "HEAD", &url).await?;
        Ok(resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()))
    }

    /// A small blob (a config), read into memory and checked against its descriptor; one
    /// past 4 MiB is refused rather than buffered.
    pub async fn fetch_blob_bytes(&self, r: &Reference, d: &Descriptor) -> Result<Bytes> {
        const LIMIT: u64 = 4 << 20;
        if d.size > LIMIT {
            return Err(Error::Invalid(format!(
                "{}@{}: {} bytes is too large to read into memory",
                r.name(),
                d.digest,
                d.size
            )));
        }
        let mut s = self.blob_range(r, &d.digest, 0, u64::MAX).await?;
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = s.next().await {
            let chunk = chunk?;
            if out.len() as u64 + chunk.len() as u64 > d.size {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        let out = out.freeze();
        let actual = Digest::of(d.digest.algorithm(), &out);
        if out.len() as u64 != d.size {
            return Err(Error::SizeMismatch {
                digest: d.digest.clone(),
                expected: d.size,
                actual: out.len() as u64,
            });
        }
        if actual != d.digest {
            return Err(Error::DigestMismatch {
                expected: d.digest.clone(),
                actual,
            });
        }
        Ok(out)
    }

    /// `len` bytes of a blob from `offset` (the whole blob when `offset` is 0 and `len` is
    /// its size), streamed.
    pub async fn blob_range(
        &self,
        r: &Reference,
        d: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<ByteStream> {
        let url = self.blob_url(r, d);
        let scope = [repository_scope(&r.repository, false)];
        let mut h = HeaderMap::new();
        if offset > 0 || len != u64::MAX {
            let end = offset.saturating_add(len).saturating_sub(1);
            h.insert(
                RANGE,
                HeaderValue::from_str(&format!("bytes={offset}-{end}")).expect("ascii"),
            );
        }
        let resp = self
            .send(r, Method::GET, &url, &scope, h, Body::Empty)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::NotFound(format!("{}@{d}", r.name())));
        }
        let resp = check(resp, "GET", &url).await?;
        let ranged = resp.status() == StatusCode::PARTIAL_CONTENT;
        let url2 = url.clone();
        let mut s: ByteStream =
            Box::pin(resp.bytes_stream().map_err(move |source| Error::Transport {
                url: url2.clone(),
                source,
            }));
        if !ranged && offset > 0 {
            // The server ignored Range: skip to the offset ourselves.
            s = Box::pin(skip_bytes(s, offset));
        }
        if len != u64::MAX {
            s = Box::pin(take_bytes(s, len));
        }
        Ok(s)
    }

    /// A blob as a stream of verified bytes: hashed as it arrives, resumed with a ranged GET
    /// after a dropped connection, and ended with an error instead of its last chunk when
    /// the size or digest does not match. Callers must not keep the bytes of a stream that
    /// ended in an error.
    pub fn blob_stream<'a>(
        &'a self,
        r: &'a Reference,
        d: &'a Descriptor,
        progress: &'a SharedProgress,
    ) -> impl Stream<Item = Result<Bytes>> + Send + 'a {
        struct State {
            at: u64,
            hasher: Option<wharf_oci::Hasher>,
            body: Option<ByteStream>,
            retry: Retry,
        }
        let state = State {
            at: 0,
            hasher: Some(d.digest.algorithm().hasher()),
            body: None,
            retry: Retry::new(&self.opts),
        };
        futures_util::stream::unfold(state, move |mut st| async move {
            let hasher = st.hasher.as_mut()?;
            let failed = 'read: {
                let body = match st.body.as_mut() {
                    Some(b) => b,
                    None => match self.blob_range(r, &d.digest, st.at, u64::MAX).await {
                        Ok(b) => st.body.insert(b),
                        Err(e) => break 'read e,
                    },
                };
                match body.next().await {
                    Some(Ok(chunk)) => {
                        let at = st.at + chunk.len() as u64;
                        if at > d.size {
                            break 'read Error::SizeMismatch {
                                digest: d.digest.clone(),
                                expected: d.size,
                                actual: at,
                            };
                        }
                        hasher.update(&chunk);
                        st.at = at;
                        progress.advance(d, chunk.len() as u64);
                        return Some((Ok(chunk), st));
                    }
                    Some(Err(e)) => break 'read e,
                    None => {
                        let actual = st.hasher.take()?.finish();
                        if st.at != d.size {
                            let e = Error::SizeMismatch {
                                digest: d.digest.clone(),
                                expected: d.size,
                                actual: st.at,
                            };
                            return Some((Err(e), st));
                        }
                        if actual != d.digest {
                            let e = Error::DigestMismatch {
                                expected: d.digest.clone(),
                                actual,
                            };
                            return Some((Err(e), st));
                        }
                        return None;
                    }
                }
            };
            st.body = None;
            match st.retry.after_error(&failed) {
                Some(pause) => {
                    tracing::debug!("{}: {failed}; resuming at {} in {pause:?}", d.digest, st.at);
                    tokio::time::sleep(pause).await;
                    // The next poll reopens at `st.at`.
                    Some((Ok(Bytes::new()), st))
                }
                None => {
                    st.hasher = None;
                    Some((Err(failed), st))
                }
            }
        })
    }

    /// Downloads a blob into `dest` through [`Client::blob_stream`]. `dest` appears only
    /// once its digest and size are verified.
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        d: &Descriptor,
        dest: &Path,
        progress: &SharedProgress,
    ) -> Result<()> {
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::file(dir, e))?;
        let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(|e| Error::file(dir, e))?);
        progress.start(d);
        let mut stream = std::pin::pin!(self.blob_stream(r, d, progress));
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk?)
                .await
                .map_err(|e| Error::file(dest, e))?;
        }
        file.flush().await.map_err(|e| Error::file(dest, e))?;
        // Temporary files are private; the result gets the usual permissions of a new file.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = tmp
                .as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644));
        }
        tmp.persist(dest).map_err(|e| Error::file(dest, e.error))?;
        progress.finish(d, Transfer::Downloaded);
        Ok(())
    }

    pub async fn delete_blob(&self, r: &Reference, d: &Digest) -> Result<()> {
        let url = self.blob_url(r, d);
        self.delete_url(r, &url, format!("{}@{d}", r.name())).await
    }
}

fn skip_bytes(s: ByteStream, mut skip: u64) -> impl Stream<Item = Result<Bytes>> + Send {
    s.try_filter_map(move |mut b| {
        let n = skip.min(b.len() as u64) as usize;
        skip -= n as u64;
        let rest = b.split_off(n);
        async move { Ok((!rest.is_empty()).then_some(rest)) }
    })
}

fn take_bytes(s: ByteStream, len: u64) -> impl Stream<Item = Result<Bytes>> + Send {
    s.scan(len, |left, item| {
        let out = match item {
            Err(e) => Some(Err(e)),
            Ok(_) if *left == 0 => None,
            Ok(mut b) => {
                let n = (*left).min(b.len() as u64);
                *left -= n;
                b.truncate(n as usize);
                Some(Ok(b))
            }
        };
        futures_util::future::ready(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        let v: Vec<Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(v))
    }

    async fn collect(s: impl Stream<Item = Result<Bytes>>) -> Vec<u8> {
        s.try_fold(Vec::new(), |mut v, b| async move {
            v.extend_from_slice(&b);
            Ok(v)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn skip_and_take_across_chunks() {
        assert_eq!(
            collect(skip_bytes(chunks(&[b"abc", b"defg", b"h"]), 5)).await,
            b"fgh"
        );
        assert_eq!(
            collect(take_bytes(chunks(&[b"abc", b"defg", b"h"]), 5)).await,
            b"abcde"
        );
        assert_eq!(collect(take_bytes(chunks(&[b"abc"]), 0)).await, b"");
        let both = take_bytes(
            Box::pin(skip_bytes(chunks(&[b"0123", b"4567", b"89"]), 3)),
            4,
        );
        assert_eq!(collect(both).await, b"3456");
    }

    #[tokio::test]
    async fn file_source_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        let src = FileSource(p);
        assert_eq!(collect(src.open(2, 5).await.unwrap()).await, b"23456");
        assert_eq!(collect(src.open(0, 10).await.unwrap()).await, b"0123456789");
    }
}
