//! Pushing a local file while its digest is still being worked out.
//!
//! A push names each blob by digest, so the plain way is two passes: hash the file, ask the
//! registry whether it has that digest, then read the file again to send it. For a large
//! file the first pass is most of the client's time. Here the two run side by side: the
//! upload starts at once while another thread hashes; when the digest is known, the registry
//! is asked, and an upload of a blob it already has is cancelled. What a cancelled upload
//! sent is wasted, but never more than what went out while the file was being hashed, and on
//! a slow link (where it matters) that is little. The session is closed with the digest the
//! hash gave, so the registry still checks every byte. A file whose digest is remembered
//! ([`crate::digest_cache`]) is not hashed at all.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use wharf_oci::{Descriptor, Digest};

use crate::blobs::{FileSource, Progress, SharedProgress, Transfer};
use crate::digest_cache;
use crate::manifests::descriptor;
use crate::retry::Retry;
use crate::{Client, Error, Reference, Result};

impl Client {
    /// Pushes the file at `path` as a blob of `media_type` with `annotations`, unless the
    /// repository has it, and returns its descriptor and what happened to it. Files past the
    /// single-request limit are uploaded while they are hashed (see the module docs).
    pub async fn push_file(
        &self,
        r: &Reference,
        path: &Path,
        media_type: &str,
        annotations: Option<BTreeMap<String, String>>,
        progress: &SharedProgress,
    ) -> Result<(Descriptor, Transfer)> {
        let described = |digest: Digest, size: u64| Descriptor {
            annotations: annotations.clone(),
            ..descriptor(media_type.to_string(), digest, size)
        };
        let source = FileSource(path.to_path_buf());
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| Error::file(path, e))?
            .len();
        // Small files hash in moments and go up in one request: neither the cache nor the
        // early start is worth it for them.
        let small = size <= self.opts.monolithic_limit.min(self.opts.chunk_size);
        let cache = self.opts.digest_cache.as_deref().filter(|_| !small);
        let known = cache.and_then(|dir| digest_cache::lookup(dir, path));
        if small || known.is_some() {
            let (digest, size) = match known {
                Some(k) => k,
                None => digest_cache::hash_and_record(path, None).await?,
            };
            let d = described(digest, size);
            let t = self.push_blob(r, &d, &source, progress).await?;
            return Ok((d, t));
        }

        let identify = async {
            let (digest, hashed) = digest_cache::hash_and_record(path, cache).await?;
            if hashed != size {
                return Err(Error::Invalid(format!(
                    "{}: the file changed while it was being pushed",
                    path.display()
                )));
            }
            let d = described(digest, size);
            let exists = self.blob_exists(r, &d.digest).await?.is_some();
            Ok((d, exists))
        };
        let late = Arc::new(LateProgress::new(progress.clone()));
        let late_shared: SharedProgress = late.clone();
        // Stands in for the descriptor until the digest is known: send_chunks reads its size.
        let provisional = described(Digest::sha256_of(b""), size);
        let mut loc = self.start_upload(r).await?;
        // The race's outcome: the descriptor, and how the upload went (`None`: the registry
        // has the blob, so the upload was stopped or is not needed).
        let settled = {
            let send = self.send_chunks(r, &mut loc, &provisional, &source, &late_shared);
            tokio::pin!(send);
            tokio::pin!(identify);
            tokio::select! {
                known = &mut identify => match known {
                    Ok((d, false)) => {
                        late.know(&d);
                        let sent = send.await;
                        Ok((d, Some(sent)))
                    }
                    // Dropping `send` stops the upload.
                    Ok((d, true)) => Ok((d, None)),
                    Err(e) => Err(e),
                },
                sent = &mut send => (&mut identify)
                    .await
                    .map(|(d, exists)| (d, (!exists).then_some(sent))),
            }
        };
        let (d, sent) = match settled {
            Ok(s) => s,
            Err(e) => {
                self.cancel_upload(r, &loc).await;
                return Err(e);
            }
        };
        let Some(sent) = sent else {
            self.cancel_upload(r, &loc).await;
            progress.finish(&d, Transfer::Exists);
            return Ok((d, Transfer::Exists));
        };
        late.know(&d);
        let outcome = match sent {
            Ok(()) => self.close_upload(r, &loc, &d, None).await,
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            // As any upload does: a new session from the start, if the error is worth it.
            let mut retry = Retry::new(&self.opts);
            let Some(pause) = retry.after_error(&e) else {
                return Err(e);
            };
            tracing::debug!("{}: {e}; starting a new upload in {pause:?}", d.digest);
            progress.rewind(&d, 0);
            tokio::time::sleep(pause).await;
            self.upload_retrying(r, &d, &source, progress, retry)
                .await?;
        }
        progress.finish(&d, Transfer::Uploaded);
        Ok((d, Transfer::Uploaded))
    }
}

/// Progress for an upload whose descriptor is not known yet: bytes sent before are held back
/// and reported, with the start, once it is.
struct LateProgress {
    inner: SharedProgress,
    state: Mutex<Late>,
}

struct Late {
    known: Option<Descriptor>,
    pending: u64,
}

impl LateProgress {
    fn new(inner: SharedProgress) -> LateProgress {
        LateProgress {
            inner,
            state: Mutex::new(Late {
                known: None,
                pending: 0,
            }),
        }
    }

    /// Starts the real progress for `d` with what was sent so far; later calls do nothing.
    fn know(&self, d: &Descriptor) {
        let mut st = self.state.lock().expect("lock");
        if st.known.is_some() {
            return;
        }
        self.inner.start(d);
        if st.pending > 0 {
            self.inner.advance(d, st.pending);
        }
        st.known = Some(d.clone());
    }
}

impl Progress for LateProgress {
    fn advance(&self, _provisional: &Descriptor, n: u64) {
        let mut st = self.state.lock().expect("lock");
        match &st.known {
            Some(d) => self.inner.advance(d, n),
            None => st.pending += n,
        }
    }

    fn rewind(&self, _provisional: &Descriptor, at: u64) {
        let mut st = self.state.lock().expect("lock");
        match &st.known {
            Some(d) => self.inner.rewind(d, at),
            None => st.pending = at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every call, in order.
    #[derive(Default)]
    struct Record(Mutex<Vec<String>>);

    impl Progress for Record {
        fn start(&self, d: &Descriptor) {
            self.0.lock().unwrap().push(format!("start {}", d.size));
        }
        fn advance(&self, d: &Descriptor, n: u64) {
            self.0
                .lock()
                .unwrap()
                .push(format!("advance {} {n}", d.size));
        }
        fn rewind(&self, d: &Descriptor, at: u64) {
            self.0
                .lock()
                .unwrap()
                .push(format!("rewind {} {at}", d.size));
        }
    }

    #[test]
    fn late_progress_holds_back_until_known() {
        let rec = Arc::new(Record::default());
        let late = LateProgress::new(rec.clone());
        let provisional = descriptor("x".into(), Digest::sha256_of(b""), 1);
        let real = descriptor("x".into(), Digest::sha256_of(b"real"), 100);
        late.advance(&provisional, 30);
        late.advance(&provisional, 20);
        late.rewind(&provisional, 10);
        late.advance(&provisional, 5);
        assert!(rec.0.lock().unwrap().is_empty());
        late.know(&real);
        late.know(&real);
        late.advance(&provisional, 7);
        late.rewind(&provisional, 3);
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                "start 100",
                "advance 100 15",
                "advance 100 7",
                "rewind 100 3"
            ]
        );
    }
}
