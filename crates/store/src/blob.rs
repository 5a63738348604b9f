//! The blob store trait: content-addressed bytes and the uploads that become them.

use std::io;
use std::ops::Range;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use wharf_oci::Digest;

use crate::Result;

/// What a blob store needs to continue an upload, kept by the metadata store beside the
/// upload's acknowledged length and advanced with it atomically. Opaque to everything else:
/// the hash state, and for object storage the multipart upload and its parts.
pub type UploadState = Vec<u8>;

/// A body streamed in or out; never held whole.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Content-addressed storage. Implementations verify digests while the bytes pass through, and
/// make a blob visible under its digest only once it is complete, verified and durable.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// The size of a stored blob, or `None` when absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;

    /// A URL the client may fetch the blob from directly, when the store hands out such URLs
    /// (S3 presigned URLs, when configured). `None`: serve it through [`BlobStore::read`].
    async fn redirect(&self, _digest: &Digest) -> Result<Option<String>> {
        Ok(None)
    }

    /// Streams `range` of a stored blob whose recorded size is `size` (the caller checked the
    /// range against it). A blob that is missing, or whose stored size is not `size`, is
    /// [`StoreError::BlobMissing`](crate::StoreError::BlobMissing), found before any byte is
    /// sent.
    async fn read(&self, digest: &Digest, range: Range<u64>, size: u64) -> Result<ByteStream>;

    /// Stores a whole blob from `body`, refusing it unless it hashes to `digest`. Returns its size.
    async fn put(&self, digest: &Digest, body: ByteStream) -> Result<u64>;

    /// Prepares storage for a new upload session and returns its initial state.
    async fn upload_create(&self, id: &str) -> Result<UploadState>;

    /// Appends `body` to upload `id`, whose acknowledged length is `offset` and state `state`;
    /// anything past `offset` (left by an interrupted append) is discarded first. Returns the
    /// new length and state once the appended bytes are durable. They become the acknowledged
    /// ones only when the caller records them, so any replica can take the next chunk.
    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        state: &[u8],
        body: ByteStream,
    ) -> Result<(u64, UploadState)>;

    /// Verifies that the first `size` bytes of upload `id` hash to `digest` and, if so, makes
    /// them the blob `digest` and cleans up the upload.
    async fn upload_commit(&self, id: &str, size: u64, state: &[u8], digest: &Digest)
        -> Result<()>;

    /// Discards an upload's bytes (`state` may be empty when no session recorded one). Unknown
    /// ids are not an error.
    async fn upload_abort(&self, id: &str, state: &[u8]) -> Result<()>;

    /// Moves a stored blob out of the way: kept for inspection under `quarantine/`, no
    /// longer served, so the next push of the digest stores it anew. Returns false when
    /// the blob was not there.
    async fn quarantine(&self, digest: &Digest) -> Result<bool>;

    /// Every blob stored, with its size and last modification (for garbage collection).
    async fn list_blobs(&self) -> Result<Vec<crate::gc::StoredBlob>>;

    /// When a stored blob was last written (Unix seconds), or `None` when absent.
    async fn stat_modified(&self, digest: &Digest) -> Result<Option<i64>>;

    /// Deletes a blob's bytes; false when they were not there.
    async fn delete_blob(&self, digest: &Digest) -> Result<bool>;

    /// Ids of every upload with bytes in this store, so that ones without a session in the
    /// metadata store (left by a crash between the two) can be discarded.
    async fn upload_ids(&self) -> Result<Vec<String>>;
}
