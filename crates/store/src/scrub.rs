//! Scrub: every blob the metadata names is read back and hashed, and each one whose bytes
//! are gone or no longer hash to its digest is reported. A damaged blob is quarantined
//! (moved aside, no longer served): a HEAD then says the blob is absent, so the next push
//! of the same content uploads it again, which repairs it.
//!
//! Blobs are hashed as they stream in, one at a time, on the caller's task: a pass uses
//! about one core at most, and between chunks the runtime serves requests.

use futures_util::StreamExt;
use wharf_oci::Digest;

use crate::{Registry, Result, StoreError};

/// What a scrub found of one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobCondition {
    /// Its bytes hash to its digest.
    Intact,
    /// Its bytes are there but hash to another digest or have another length; quarantined
    /// when `quarantined`.
    Corrupt { found: String, quarantined: bool },
    /// No object holds it.
    Missing,
}

impl BlobCondition {
    /// The label value the metrics and reports use.
    pub fn as_str(&self) -> &'static str {
        match self {
            BlobCondition::Intact => "ok",
            BlobCondition::Corrupt { .. } => "corrupt",
            BlobCondition::Missing => "missing",
        }
    }
}

/// The totals of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    pub blobs: u64,
    /// Bytes read and hashed.
    pub bytes: u64,
    pub intact: u64,
    pub corrupt: u64,
    pub missing: u64,
}

impl ScrubReport {
    fn add(&mut self, c: &BlobCondition) {
        self.blobs += 1;
        match c {
            BlobCondition::Intact => self.intact += 1,
            BlobCondition::Corrupt { .. } => self.corrupt += 1,
            BlobCondition::Missing => self.missing += 1,
        }
    }
}

/// Digests read from the metadata store per query.
const PAGE: usize = 1000;

impl Registry {
    /// Checks every blob; `each` hears of each one as it is checked (digest, recorded size,
    /// condition). With `quarantine` false, damaged blobs are only reported.
    pub async fn scrub(
        &self,
        quarantine: bool,
        mut each: impl FnMut(&Digest, u64, &BlobCondition),
    ) -> Result<ScrubReport> {
        let mut report = ScrubReport::default();
        let mut after: Option<String> = None;
        loop {
            let page = self.metadata().blob_digests(after.as_deref(), PAGE).await?;
            let Some((last, _)) = page.last() else {
                return Ok(report);
            };
            after = Some(last.to_string());
            for (digest, size) in page {
                let (condition, read) = self.check_blob(&digest, size, quarantine).await?;
                report.bytes += read;
                report.add(&condition);
                each(&digest, size, &condition);
            }
        }
    }

    /// Reads one blob through and hashes it; returns its condition and the bytes read.
    async fn check_blob(
        &self,
        digest: &Digest,
        size: u64,
        quarantine: bool,
    ) -> Result<(BlobCondition, u64)> {
        let mut stream = match self.blobs.read(digest, 0..size, size).await {
            Ok(s) => s,
            Err(StoreError::BlobMissing { found: None, .. }) => {
                return Ok((BlobCondition::Missing, 0))
            }
            Err(StoreError::BlobMissing {
                found: Some(len), ..
            }) => {
                let found = format!("{len} bytes where {size} were recorded");
                return self.damaged(digest, found, quarantine, 0).await;
            }
            Err(e) => return Err(e),
        };
        let mut hasher = digest.algorithm().hasher();
        let mut read = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            read += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let actual = hasher.finish();
        if read == size && &actual == digest {
            return Ok((BlobCondition::Intact, read));
        }
        let found = format!("{read} bytes hashing to {actual}");
        self.damaged(digest, found, quarantine, read).await
    }

    async fn damaged(
        &self,
        digest: &Digest,
        found: String,
        quarantine: bool,
        read: u64,
    ) -> Result<(BlobCondition, u64)> {
        let quarantined = quarantine && self.blobs.quarantine(digest).await?;
        Ok((BlobCondition::Corrupt { found, quarantined }, read))
    }
}
