//! Layouts as tar files: a backup streams its blobs into a tar as it goes (finished under
//! the target's name only when complete), and a restore unpacks one first.

use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use wharf_oci::{Descriptor, Digest};

use super::Index;
use crate::blobs::{SharedProgress, Transfer};
use crate::{Client, Error, Reference, Result};

/// The path of a blob inside a layout.
pub(super) fn blob_entry(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

/// A layout written as a tar while the backup runs, into a temporary file beside the target
/// that takes the target's name once complete (and is removed if the backup fails).
pub(super) struct TarSink {
    builder: tokio_tar::Builder<tokio::io::BufWriter<tokio::fs::File>>,
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
    pub(super) written: std::collections::HashSet<Digest>,
}

impl TarSink {
    pub(super) async fn create(path: &Path) -> Result<TarSink> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::file(dir, e))?;
        let file = tokio::fs::File::from_std(tmp.reopen().map_err(|e| Error::file(path, e))?);
        let mut sink = TarSink {
            builder: tokio_tar::Builder::new(tokio::io::BufWriter::with_capacity(1 << 20, file)),
            tmp,
            path: path.to_path_buf(),
            written: Default::default(),
        };
        sink.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
            .await?;
        Ok(sink)
    }

    fn header(size: u64) -> tokio_tar::Header {
        let mut h = tokio_tar::Header::new_gnu();
        h.set_entry_type(tokio_tar::EntryType::Regular);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h
    }

    pub(super) async fn file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut h = TarSink::header(bytes.len() as u64);
        self.builder
            .append_data(&mut h, name, bytes)
            .await
            .map_err(|e| Error::file(&self.path, e))
    }

    /// Streams one blob from the registry into the tar, verified as it goes.
    pub(super) async fn blob(
        &mut self,
        client: &Client,
        src: &Reference,
        d: &Descriptor,
        progress: &SharedProgress,
    ) -> Result<Transfer> {
        if !self.written.insert(d.digest.clone()) {
            progress.finish(d, Transfer::Exists);
            return Ok(Transfer::Exists);
        }
        progress.start(d);
        let stream = client
            .blob_stream(src, d, progress)
            .map_err(std::io::Error::other);
        let reader = tokio_util::io::StreamReader::new(Box::pin(stream));
        let mut h = TarSink::header(d.size);
        let appended = self
            .builder
            .append_data(&mut h, blob_entry(&d.digest), reader)
            .await;
        if let Err(e) = appended {
            // The stream's own error (a digest mismatch, a dropped registry) when it was one.
            return Err(match e.into_inner().map(|i| i.downcast::<Error>()) {
                Some(Ok(inner)) => *inner,
                Some(Err(other)) => Error::file(&self.path, std::io::Error::other(other)),
                None => Error::Invalid(format!("{}: writing failed", self.path.display())),
            });
        }
        progress.finish(d, Transfer::Downloaded);
        Ok(Transfer::Downloaded)
    }

    pub(super) async fn finish(mut self, index: &Index) -> Result<()> {
        let json = serde_json::to_vec(index).expect("index serialises");
        self.file("index.json", &json).await?;
        let path = self.path.clone();
        let mut w = self
            .builder
            .into_inner()
            .await
            .map_err(|e| Error::file(&path, e))?;
        tokio::io::AsyncWriteExt::flush(&mut w)
            .await
            .map_err(|e| Error::file(&path, e))?;
        w.into_inner()
            .sync_all()
            .await
            .map_err(|e| Error::file(&path, e))?;
        self.tmp
            .persist(&path)
            .map_err(|e| Error::file(&path, e.error))?;
        // The rename is durable only once the directory holding it is.
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::file(dir, e))?;
        Ok(())
    }
}

/// Unpacks a layout tar into `dir`, refusing entries that would land outside it.
pub fn read_tar(tar_path: &Path, dir: &Path) -> Result<()> {
    let f = std::fs::File::open(tar_path).map_err(|e| Error::file(tar_path, e))?;
    let mut a = tar::Archive::new(std::io::BufReader::new(f));
    for entry in a.entries().map_err(|e| Error::file(tar_path, e))? {
        let mut entry = entry.map_err(|e| Error::file(tar_path, e))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue; // a layout holds only files and directories
        }
        if !entry.unpack_in(dir).map_err(|e| Error::file(tar_path, e))? {
            let p = entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(Error::Invalid(format!(
                "{}: entry {p:?} leaves the layout",
                tar_path.display()
            )));
        }
    }
    Ok(())
}
