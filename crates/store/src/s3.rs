//! [`BlobStore`] on S3-compatible object storage, for replicas that share one bucket.
//!
//! Blobs live at `blobs/<algorithm>/<hex>`. An upload session is one S3 multipart upload at
//! `uploads/<id>`; its state (multipart id, part ETags, bytes in parts, hash state) travels in
//! the session's [`UploadState`], so any replica can take the next chunk. Bytes that do not
//! yet fill a part (S3 wants 5 MiB but for the last) wait in a small tail object named after the
//! state that owns it, so an interrupted append never overwrites the tail a recorded state
//! points to. Nothing is held whole in memory or spooled to disk: at most one part is
//! buffered per upload. The digest is checked from the carried hash state, before the
//! multipart upload completes, so a wrong digest never produces an object.

use std::ops::Range;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use wharf_oci::{Digest, Hasher};

use crate::{BlobStore, ByteStream, Result, StoreError, UploadState};

/// Size of the parts uploads are cut into; S3 requires at least 5 MiB for all but the last.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Where the bucket is. Fields left `None` come from the usual `AWS_*` environment variables.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// When set, blob GETs redirect to presigned URLs valid this long, so bytes flow from the
    /// bucket to the client without passing through the registry.
    pub presigned_redirect: Option<std::time::Duration>,
}

pub struct S3BlobStore {
    s3: AmazonS3,
    presigned_redirect: Option<std::time::Duration>,
}

#[derive(Serialize, Deserialize)]
struct S3UploadState {
    multipart: String,
    /// ETags of the parts uploaded so far, in order.
    parts: Vec<String>,
    /// Bytes in those parts; the rest of the acknowledged length is in the tail object.
    parted: u64,
    /// The hash of every acknowledged byte.
    hasher: Vec<u8>,
}

fn s3_error(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::BlobUnknown,
        other => StoreError::Io(std::io::Error::other(other)),
    }
}

fn check_digest(actual: Digest, expected: &Digest) -> Result<()> {
    if &actual == expected {
        return Ok(());
    }
    Err(StoreError::DigestMismatch {
        expected: expected.clone(),
        actual,
    })
}

fn blob_key(d: &Digest) -> Path {
    Path::from(format!("blobs/{}/{}", d.algorithm().as_str(), d.hex()))
}

fn upload_key(id: &str) -> Result<Path> {
    let uuid = uuid::Uuid::parse_str(id).map_err(|_| StoreError::UploadUnknown)?;
    Ok(Path::from(format!("uploads/{}", uuid.hyphenated())))
}

fn tail_key(id: &Path, parted: u64, len: u64) -> Path {
    Path::from(format!("{id}.tail/{parted}-{len}"))
}

impl S3BlobStore {
    pub fn new(c: &S3Config) -> Result<S3BlobStore> {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&c.bucket);
        if let Some(e) = &c.endpoint {
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(r) = &c.region {
            b = b.with_region(r);
        }
        if let Some(k) = &c.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &c.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        let s3 = b
            .build()
            .map_err(|e| StoreError::Io(std::io::Error::other(format!("S3 configuration: {e}"))))?;
        Ok(S3BlobStore {
            s3,
            presigned_redirect: c.presigned_redirect,
        })
    }

    fn decode(state: &[u8]) -> Result<S3UploadState> {
        serde_json::from_slice(state)
            .map_err(|_| StoreError::UploadInvalid("upload state is not an S3 upload's".into()))
    }

    async fn read_tail(&self, id: &Path, st: &S3UploadState, size: u64) -> Result<BytesMut> {
        let len = size - st.parted;
        if len == 0 {
            return Ok(BytesMut::new());
        }
        let bytes = self
            .s3
            .get(&tail_key(id, st.parted, len))
            .await
            .map_err(s3_error)?
            .bytes()
            .await
            .map_err(s3_error)?;
        Ok(BytesMut::from(&bytes[..]))
    }

    async fn put_part(&self, id: &Path, st: &mut S3UploadState, data: Bytes) -> Result<()> {
        let n = data.len() as u64;
        let part = self
            .s3
            .put_part(id, &st.multipart, st.parts.len(), PutPayload::from(data))
            .await
            .map_err(s3_error)?;
        st.parts.push(part.content_id);
        st.parted += n;
        Ok(())
    }

    async fn create(&self, id: &str, alg: wharf_oci::Algorithm) -> Result<UploadState> {
        let key = upload_key(id)?;
        let multipart = self.s3.create_multipart(&key).await.map_err(s3_error)?;
        let st = S3UploadState {
            multipart,
            parts: Vec::new(),
            parted: 0,
            hasher: alg.hasher().to_bytes(),
        };
        Ok(serde_json::to_vec(&st).expect("state serialises"))
    }

    /// Streams an object through a hasher of the digest's algorithm.
    async fn verify_object(&self, key: &Path, digest: &Digest) -> Result<()> {
        let mut hasher = digest.algorithm().hasher();
        let mut body = self.s3.get(key).await.map_err(s3_error)?.into_stream();
        while let Some(chunk) = body.next().await {
            hasher.update(&chunk.map_err(s3_error)?);
        }
        check_digest(hasher.finish(), digest)
    }

    /// Deletes every object under the upload's name (its tails).
    async fn delete_tails(&self, id: &Path) -> Result<()> {
        let prefix = Path::from(format!("{id}.tail"));
        let keys: Vec<_> = self
            .s3
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(s3_error)?;
        for k in keys {
            let _ = self.s3.delete(&k).await;
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.s3.head(&blob_key(digest)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn redirect(&self, digest: &Digest) -> Result<Option<String>> {
        use object_store::signer::{Method, Signer};
        let Some(valid) = self.presigned_redirect else {
            return Ok(None);
        };
        let url = self
            .s3
            .signed_url(Method::GET, &blob_key(digest), valid)
            .await
            .map_err(s3_error)?;
        Ok(Some(url.to_string()))
    }

    async fn read(&self, digest: &Digest, range: Range<u64>, size: u64) -> Result<ByteStream> {
        let missing = |found| StoreError::BlobMissing {
            digest: digest.clone(),
            recorded: size,
            found,
        };
        if range.is_empty() {
            return match self.stat(digest).await? {
                Some(n) if n == size => Ok(Box::pin(futures_util::stream::empty())),
                found => Err(missing(found)),
            };
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..Default::default()
        };
        let r = match self.s3.get_opts(&blob_key(digest), opts).await {
            Ok(r) if r.meta.size == size => r,
            Ok(r) => return Err(missing(Some(r.meta.size))),
            Err(object_store::Error::NotFound { .. }) => return Err(missing(None)),
            Err(e) => return Err(s3_error(e)),
        };
        Ok(Box::pin(r.into_stream().map_err(std::io::Error::other)))
    }

    async fn put(&self, digest: &Digest, body: ByteStream) -> Result<u64> {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let state = self.create(&id, digest.algorithm()).await?;
        let res = async {
            let (size, state) = self.upload_append(&id, 0, &state, body).await?;
            self.upload_commit(&id, size, &state, digest).await?;
            Ok(size)
        }
        .await;
        if res.is_err() {
            let _ = self.upload_abort(&id, &state).await;
        }
        res
    }

    async fn upload_create(&self, id: &str) -> Result<UploadState> {
        // Clients name the digest only when closing; sha256 is what they use.
        self.create(id, wharf_oci::Algorithm::Sha256).await
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        state: &[u8],
        mut body: ByteStream,
    ) -> Result<(u64, UploadState)> {
        let key = upload_key(id)?;
        let mut st = Self::decode(state)?;
        let mut hasher = Hasher::from_bytes(&st.hasher)
            .filter(|h| h.len() == offset)
            .ok_or_else(|| {
                StoreError::UploadInvalid("upload state does not match its length".into())
            })?;
        let mut buf = self.read_tail(&key, &st, offset).await?;
        let mut size = offset;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StoreError::BodyIncomplete)?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            buf.extend_from_slice(&chunk);
            while buf.len() >= PART_SIZE {
                let part = buf.split_to(PART_SIZE).freeze();
                self.put_part(&key, &mut st, part).await?;
            }
        }
        if !buf.is_empty() {
            let tail = tail_key(&key, st.parted, buf.len() as u64);
            self.s3
                .put(&tail, PutPayload::from(buf.freeze()))
                .await
                .map_err(s3_error)?;
        }
        st.hasher = hasher.to_bytes();
        Ok((size, serde_json::to_vec(&st).expect("state serialises")))
    }

    async fn upload_commit(
        &self,
        id: &str,
        size: u64,
        state: &[u8],
        digest: &Digest,
    ) -> Result<()> {
        let key = upload_key(id)?;
        let mut st = Self::decode(state)?;
        let hasher = Hasher::from_bytes(&st.hasher)
            .filter(|h| h.len() == size)
            .ok_or_else(|| {
                StoreError::UploadInvalid("upload state does not match its length".into())
            })?;
        // The session hashes as sha256, which is what clients close with. Another algorithm is
        // checked by reading the assembled object back before it is copied into place.
        let carried = hasher.algorithm() == digest.algorithm();
        if carried {
            check_digest(hasher.finish(), digest)?;
        }
        if size == 0 {
            // S3 refuses a multipart upload whose only part is empty; the empty blob is an
            // ordinary put of nothing.
            if !carried {
                check_digest(Digest::of(digest.algorithm(), b""), digest)?;
            }
            self.s3
                .put(&blob_key(digest), PutPayload::default())
                .await
                .map_err(s3_error)?;
            return self.upload_abort(id, state).await;
        }
        let assembled = async {
            let tail = self.read_tail(&key, &st, size).await?;
            if !tail.is_empty() {
                self.put_part(&key, &mut st, tail.freeze()).await?;
            }
            let parts = st
                .parts
                .iter()
                .map(|p| PartId {
                    content_id: p.clone(),
                })
                .collect();
            self.s3
                .complete_multipart(&key, &st.multipart, parts)
                .await
                .map_err(s3_error)
        }
        .await;
        if let Err(e) = assembled {
            // An earlier close that failed its read-back verification has assembled the
            // object already; the session lived on so that the client could close it again.
            if !matches!(self.s3.head(&key).await, Ok(m) if m.size == size) {
                return Err(e);
            }
        }
        if !carried {
            self.verify_object(&key, digest).await?;
        }
        self.s3
            .copy(&key, &blob_key(digest))
            .await
            .map_err(s3_error)?;
        let _ = self.s3.delete(&key).await;
        self.delete_tails(&key).await
    }

    async fn upload_abort(&self, id: &str, state: &[u8]) -> Result<()> {
        let Ok(key) = upload_key(id) else {
            return Ok(());
        };
        if let Ok(st) = Self::decode(state) {
            let _ = self.s3.abort_multipart(&key, &st.multipart).await;
        }
        // Present only when a close assembled it and then failed verification.
        let _ = self.s3.delete(&key).await;
        self.delete_tails(&key).await
    }

    async fn list_blobs(&self) -> Result<Vec<crate::gc::StoredBlob>> {
        let prefix = Path::from("blobs");
        let mut listing = self.s3.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(s3_error)?;
            // blobs/<algorithm>/<hex>; anything else is not a blob.
            let mut parts = meta.location.parts();
            let (Some(_), Some(alg), Some(hex), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(digest) = format!("{}:{}", alg.as_ref(), hex.as_ref()).parse::<Digest>() else {
                continue;
            };
            out.push(crate::gc::StoredBlob {
                digest,
                size: meta.size,
                modified: meta.last_modified.timestamp(),
            });
        }
        Ok(out)
    }

    async fn stat_modified(&self, digest: &Digest) -> Result<Option<i64>> {
        match self.s3.head(&blob_key(digest)).await {
            Ok(m) => Ok(Some(m.last_modified.timestamp())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<bool> {
        // S3 deletes a missing key without complaint: the caller listed it a moment ago.
        self.s3.delete(&blob_key(digest)).await.map_err(s3_error)?;
        Ok(true)
    }

    async fn quarantine(&self, digest: &Digest) -> Result<bool> {
        let from = blob_key(digest);
        let to = Path::from(format!(
            "quarantine/{}-{}-{}",
            digest.algorithm().as_str(),
            digest.hex(),
            crate::meta::now()
        ));
        match self.s3.copy(&from, &to).await {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(s3_error(e)),
        }
        self.s3.delete(&from).await.map_err(s3_error)?;
        Ok(true)
    }

    async fn upload_ids(&self) -> Result<Vec<String>> {
        // Multipart uploads without a session (a crash between creating the two) are left to
        // the bucket's AbortIncompleteMultipartUpload lifecycle rule; see docs/deploy.md.
        Ok(Vec::new())
    }
}
