//! Upload sessions: started, appended to chunk by chunk (one request at a time per session),
//! finished as a blob once the quota allows it, or cancelled with their bytes.

use wharf_oci::Digest;

use super::{Registry, Upload};
use crate::meta::UploadRecord;
use crate::{ByteStream, Result, StoreError};

impl Registry {
    pub async fn upload_start(&self, repo: &str) -> Result<Upload> {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let state = self.blobs.upload_create(&id).await?;
        self.meta.upload_create(repo, &id, &state).await?;
        Ok(Upload { id, size: 0 })
    }

    pub async fn upload_status(&self, repo: &str, id: &str) -> Result<Upload> {
        let rec = self.upload_record(repo, id).await?;
        Ok(Upload {
            id: rec.id,
            size: rec.size,
        })
    }

    async fn upload_record(&self, repo: &str, id: &str) -> Result<UploadRecord> {
        self.meta
            .upload_get(id)
            .await?
            .filter(|r| r.repo == repo)
            .ok_or(StoreError::UploadUnknown)
    }

    /// Appends a chunk. `range` is the request's Content-Range (inclusive), when it had one.
    pub async fn upload_append(
        &self,
        repo: &str,
        id: &str,
        range: Option<(u64, u64)>,
        body: ByteStream,
    ) -> Result<Upload> {
        let _guard = self.upload_locks.lock(id).await;
        let rec = self.append_locked(repo, id, range, body).await?;
        Ok(Upload {
            id: rec.id,
            size: rec.size,
        })
    }

    async fn append_locked(
        &self,
        repo: &str,
        id: &str,
        range: Option<(u64, u64)>,
        body: ByteStream,
    ) -> Result<UploadRecord> {
        let current = self.upload_record(repo, id).await?;
        if let Some((start, end)) = range {
            if start != current.size {
                return Err(StoreError::RangeNotSatisfiable { size: current.size });
            }
            if end < start {
                return Err(StoreError::UploadInvalid(format!(
                    "Content-Range {start}-{end} ends before it starts"
                )));
            }
        }
        let (size, state) = self
            .blobs
            .upload_append(id, current.size, &current.state, body)
            .await?;
        if let Some((start, end)) = range {
            let sent = size - start;
            if sent != end - start + 1 {
                return Err(StoreError::UploadInvalid(format!(
                    "Content-Range {start}-{end} announces {} bytes but the body had {sent}",
                    end - start + 1
                )));
            }
        }
        if !self
            .meta
            .upload_advance(id, current.size, size, &state)
            .await?
        {
            return Err(StoreError::RangeNotSatisfiable { size: current.size });
        }
        Ok(UploadRecord {
            size,
            state,
            ..current
        })
    }

    /// Completes an upload, optionally with a last chunk, as blob `digest`.
    pub async fn upload_finish(
        &self,
        repo: &str,
        id: &str,
        digest: &Digest,
        last_chunk: Option<(Option<(u64, u64)>, ByteStream)>,
    ) -> Result<u64> {
        let _guard = self.upload_locks.lock(id).await;
        let upload = match last_chunk {
            Some((range, body)) => self.append_locked(repo, id, range, body).await?,
            None => self.upload_record(repo, id).await?,
        };
        let _quota = self.quota_lock(repo).await?;
        if let Err(e) = self.quota_commit(repo, Some(digest), upload.size).await {
            // Refused at commit: the session and its bytes go, nothing is left behind.
            self.blobs.upload_abort(id, &upload.state).await?;
            self.meta.upload_complete(id, None).await?;
            return Err(e);
        }
        // The bytes land and are linked as one step for the collector.
        let _gate = self.gc_gate.read().await;
        self.blobs
            .upload_commit(id, upload.size, &upload.state, digest)
            .await?;
        self.meta
            .upload_complete(id, Some((digest, upload.size)))
            .await?;
        Ok(upload.size)
    }

    pub async fn upload_cancel(&self, repo: &str, id: &str) -> Result<()> {
        let _guard = self.upload_locks.lock(id).await;
        let rec = self.upload_record(repo, id).await?;
        // Bytes first: a full disk that refuses the metadata write must still get its space
        // back. A session left without bytes is unknown to the next request that uses it.
        self.blobs.upload_abort(id, &rec.state).await?;
        self.meta.upload_complete(id, None).await.map(drop)
    }
}
