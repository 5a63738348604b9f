//! [`BlobStore`] on a local filesystem.
//!
//! Layout under the root: `blobs/<algorithm>/<first two hex>/<hex>` for committed blobs (one
//! copy whatever the number of repositories), `uploads/<uuid>` for upload sessions, `tmp/` for
//! monolithic uploads in flight. A blob reaches `blobs/` by rename only after it was hashed,
//! compared and fsynced, so a crash can leave garbage in `tmp/` or `uploads/` but never a
//! partial blob under a digest. Paths are built only from parsed digests and from upload ids
//! that parse as UUIDs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use wharf_oci::{Algorithm, Digest, Hasher};

use crate::{BlobStore, ByteStream, Result, StoreError, UploadState};

/// Bytes read at a time when serving a blob: large enough for few wake-ups, small enough that
/// fifty concurrent downloads stay within a few tens of MiB resident.
const WINDOW: usize = 256 * 1024;
/// Windows read ahead of the socket, per download.
const WINDOWS_AHEAD: usize = 1;
/// Idle send buffers kept for reuse (4 MiB at 256 KiB each).
const MAX_IDLE_SEND_BUFFERS: usize = 16;
const WRITE_BUFFER: usize = 1024 * 1024;

pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// Opens (creating if needed) a store under `root` and removes leftovers of monolithic
    /// uploads that a crash interrupted.
    pub fn open(root: impl Into<PathBuf>) -> Result<FsBlobStore> {
        let root = root.into();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            for i in 0..=255u8 {
                fs::create_dir_all(
                    root.join("blobs")
                        .join(alg.as_str())
                        .join(format!("{i:02x}")),
                )?;
            }
        }
        fs::create_dir_all(root.join("uploads"))?;
        fs::create_dir_all(root.join("quarantine"))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        sync_dir(&root)?;
        Ok(FsBlobStore { root })
    }

    /// Uses a store that a serving registry has open, cleaning nothing up: what is in
    /// `tmp/` and `uploads/` belongs to requests in flight.
    pub fn attach(root: impl Into<PathBuf>) -> Result<FsBlobStore> {
        let root = root.into();
        if !root.join("blobs").is_dir() {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no blob store in {}", root.display()),
            )));
        }
        fs::create_dir_all(root.join("quarantine"))?;
        Ok(FsBlobStore { root })
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf> {
        let uuid = uuid::Uuid::parse_str(id).map_err(|_| StoreError::UploadUnknown)?;
        Ok(self
            .root
            .join("uploads")
            .join(uuid.hyphenated().to_string()))
    }
}

/// The saved hash state, if it describes exactly the first `at` bytes with `alg`. Anything else
/// (an upload from before states were saved, or a digest of another algorithm at the end) is
/// answered by hashing the file instead.
fn saved_hasher(state: &[u8], at: u64, alg: Algorithm) -> Option<Hasher> {
    Hasher::from_bytes(state).filter(|h| h.len() == at && h.algorithm() == alg)
}

/// What a filesystem that refused a write is out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsState {
    ReadOnly,
    Full,
}

/// Whether the filesystem holding `dir` is mounted read-only or has no free blocks; `None`
/// when it is neither (or cannot be asked).
pub fn filesystem_state(dir: &Path) -> Option<FsState> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes only into the zeroed struct passed to it; `c` is NUL-terminated.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        st
    };
    if st.f_flag & libc::ST_RDONLY != 0 {
        Some(FsState::ReadOnly)
    } else if st.f_bavail == 0 {
        Some(FsState::Full)
    } else {
        None
    }
}

fn sync_dir(p: &Path) -> io::Result<()> {
    File::open(p)?.sync_all()
}

/// Hashes the first `len` bytes of `file`.
fn hash_prefix(file: &mut File, len: u64, alg: Algorithm) -> io::Result<Hasher> {
    let mut h = alg.hasher();
    file.seek(SeekFrom::Start(0))?;
    let mut take = (&mut *file).take(len);
    let mut buf = vec![0u8; WRITE_BUFFER];
    let mut seen = 0;
    loop {
        let n = take.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        seen += n as u64;
    }
    if seen != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "upload file shorter than its recorded length",
        ));
    }
    Ok(h)
}

/// How much to write before asking the kernel to start writing it back. The final fsync then
/// waits only for the tail, so disk writes overlap receiving instead of following it.
const WRITEBACK_STEP: u64 = 4 * 1024 * 1024;

/// Starts (without waiting for) writeback of a file range. Only a hint: durability still comes
/// from the fsync at the end.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a valid, open descriptor; no memory is passed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Writes `body` to the end of `file` while hashing it, on a blocking thread so that receiving
/// the next chunk overlaps hashing and writing this one. Returns the file, the hasher and the
/// number of bytes written; the data is fsynced.
async fn write_stream(
    mut file: File,
    hasher: Hasher,
    mut body: ByteStream,
) -> Result<(File, Hasher, u64)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let writer = tokio::task::spawn_blocking(move || -> io::Result<(File, Hasher, u64)> {
        let mut hasher = hasher;
        let start = file.stream_position()?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut n = 0u64;
        let mut flushed = 0u64;
        while let Some(chunk) = rx.blocking_recv() {
            hasher.update(&chunk);
            out.write_all(&chunk)?;
            n += chunk.len() as u64;
            if n - flushed >= WRITEBACK_STEP {
                out.flush()?;
                start_writeback(out.get_ref(), start + flushed, n - flushed);
                flushed = n;
            }
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_data()?;
        Ok((file, hasher, n))
    });
    let mut body_error = None;
    while let Some(item) = body.next().await {
        match item {
            Ok(chunk) => {
                if tx.send(chunk).await.is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
            Err(e) => {
                body_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await??;
    match body_error {
        Some(e) => Err(StoreError::BodyIncomplete(e)),
        None => Ok(written),
    }
}

/// Buffers for serving blobs, reused so that a download allocates, zeroes and faults in no
/// memory once warm. A buffer comes back when the response has sent (dropped) its bytes.
static SEND_BUFFERS: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

/// A pooled buffer holding `len` bytes of a blob; the owner of a `Bytes` handed to hyper.
struct SendBuffer {
    buf: Option<Box<[u8]>>,
    len: usize,
}

impl SendBuffer {
    fn take() -> SendBuffer {
        let pooled = SEND_BUFFERS.lock().unwrap_or_else(|p| p.into_inner()).pop();
        SendBuffer {
            buf: Some(pooled.unwrap_or_else(|| vec![0u8; WINDOW].into_boxed_slice())),
            len: 0,
        }
    }
}

impl AsRef<[u8]> for SendBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buf.as_ref().expect("present until dropped")[..self.len]
    }
}

impl Drop for SendBuffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            let mut idle = SEND_BUFFERS.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE_SEND_BUFFERS {
                idle.push(buf);
            }
        }
    }
}

/// Streams `range` of `file` from a blocking thread, so disk reads never stall an async worker.
/// At most WINDOWS_AHEAD buffers wait for the socket per download, so memory per download stays
/// at a few windows however large the blob.
fn read_stream(file: File, range: Range<u64>) -> ByteStream {
    use std::os::unix::fs::FileExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(WINDOWS_AHEAD);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut pos = range.start;
        while pos < range.end {
            // Wait for room before reading, so no filled buffer sits waiting for the channel.
            let Ok(permit) = runtime.block_on(tx.reserve()) else {
                return; // the response was dropped: client gone
            };
            let len = (range.end - pos).min(WINDOW as u64) as usize;
            let mut window = SendBuffer::take();
            let buf = window.buf.as_mut().expect("fresh buffer");
            match file.read_exact_at(&mut buf[..len], pos) {
                Ok(()) => {
                    window.len = len;
                    permit.send(Ok(Bytes::from_owner(window)));
                    pos += len as u64;
                }
                Err(e) => {
                    permit.send(Err(e));
                    return;
                }
            }
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Seconds since the epoch of a file time (times before it count as 0).
fn unix_seconds(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Moves a verified, synced file into place under its digest and syncs the directory, so the
/// blob is visible only once whole and stays visible after a crash.
fn install(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(to.parent().expect("blob path has a parent"))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        // A stat of a cached directory entry takes about a microsecond; handing it to a
        // blocking thread costs ten times that, on every blob HEAD.
        match std::fs::metadata(self.blob_path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, digest: &Digest, range: Range<u64>, size: u64) -> Result<ByteStream> {
        let path = self.blob_path(digest);
        let opened = tokio::task::spawn_blocking(move || {
            let f = File::open(path)?;
            let len = f.metadata()?.len();
            Ok::<_, io::Error>((f, len))
        })
        .await?;
        let missing = |found| StoreError::BlobMissing {
            digest: digest.clone(),
            recorded: size,
            found,
        };
        let file = match opened {
            Ok((f, len)) if len == size => f,
            Ok((_, len)) => return Err(missing(Some(len))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing(None)),
            Err(e) => return Err(e.into()),
        };
        if range.is_empty() {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        Ok(read_stream(file, range))
    }

    async fn put(&self, digest: &Digest, body: ByteStream) -> Result<u64> {
        let tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
        let file = tmp.as_file().try_clone()?;
        let (_file, hasher, size) = write_stream(file, digest.algorithm().hasher(), body).await?;
        let actual = hasher.finish();
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let path = tmp.into_temp_path();
        let to = self.blob_path(digest);
        tokio::task::spawn_blocking(move || {
            install(&path, &to)?;
            // The rename consumed the temporary file; keep its guard from deleting the blob.
            path.keep().map_err(|e| e.error)?;
            Ok::<_, io::Error>(())
        })
        .await??;
        Ok(size)
    }

    async fn upload_create(&self, id: &str) -> Result<UploadState> {
        let path = self.upload_path(id)?;
        tokio::task::spawn_blocking(move || {
            File::create(&path)?;
            sync_dir(path.parent().expect("upload path has a parent"))
        })
        .await??;
        Ok(Algorithm::Sha256.hasher().to_bytes())
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        state: &[u8],
        body: ByteStream,
    ) -> Result<(u64, UploadState)> {
        let path = self.upload_path(id)?;
        let cached = saved_hasher(state, offset, Algorithm::Sha256);
        let (file, hasher) = tokio::task::spawn_blocking(move || -> io::Result<(File, Hasher)> {
            let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
            let hasher = match cached {
                Some(h) => h,
                None => hash_prefix(&mut file, offset, Algorithm::Sha256)?,
            };
            file.set_len(offset)?;
            file.seek(SeekFrom::Start(offset))?;
            Ok((file, hasher))
        })
        .await?
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::UploadUnknown,
            _ => StoreError::from_io(e),
        })?;
        match write_stream(file, hasher, body).await {
            Ok((_file, hasher, n)) => Ok((offset + n, hasher.to_bytes())),
            Err(e) => {
                // Give back the space a cut chunk took (ENOSPC, a client gone): the session
                // stays at its last acknowledged length and resumes from there.
                let path = self.upload_path(id)?;
                let _ = tokio::task::spawn_blocking(move || {
                    OpenOptions::new().write(true).open(path)?.set_len(offset)
                })
                .await;
                Err(e)
            }
        }
    }

    async fn upload_commit(
        &self,
        id: &str,
        size: u64,
        state: &[u8],
        digest: &Digest,
    ) -> Result<()> {
        let path = self.upload_path(id)?;
        let cached = saved_hasher(state, size, digest.algorithm());
        let alg = digest.algorithm();
        let (path, actual) =
            tokio::task::spawn_blocking(move || -> io::Result<(PathBuf, Digest)> {
                let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
                let hasher = match cached {
                    Some(h) => h,
                    None => hash_prefix(&mut file, size, alg)?,
                };
                file.set_len(size)?;
                file.sync_all()?;
                Ok((path, hasher.finish()))
            })
            .await?
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::UploadUnknown,
                _ => StoreError::from_io(e),
            })?;
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let to = self.blob_path(digest);
        tokio::task::spawn_blocking(move || {
            install(&path, &to)?;
            sync_dir(path.parent().expect("upload path has a parent"))
        })
        .await??;
        Ok(())
    }

    async fn list_blobs(&self) -> Result<Vec<crate::gc::StoredBlob>> {
        let root = self.root.join("blobs");
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for alg in [Algorithm::Sha256, Algorithm::Sha512] {
                for i in 0..=255u8 {
                    let dir = root.join(alg.as_str()).join(format!("{i:02x}"));
                    let entries = match fs::read_dir(&dir) {
                        Ok(e) => e,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    };
                    for entry in entries {
                        let entry = entry?;
                        let name = entry.file_name();
                        // Anything not named by a digest is not a blob (and not ours to delete).
                        let Ok(digest) = format!("{}:{}", alg.as_str(), name.to_string_lossy())
                            .parse::<Digest>()
                        else {
                            continue;
                        };
                        let meta = match entry.metadata() {
                            Ok(m) => m,
                            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                            Err(e) => return Err(e),
                        };
                        out.push(crate::gc::StoredBlob {
                            digest,
                            size: meta.len(),
                            modified: unix_seconds(meta.modified()?),
                        });
                    }
                }
            }
            Ok(out)
        })
        .await?
        .map_err(Into::into)
    }

    async fn stat_modified(&self, digest: &Digest) -> Result<Option<i64>> {
        match std::fs::metadata(self.blob_path(digest)) {
            Ok(m) => Ok(Some(unix_seconds(m.modified()?))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<bool> {
        // No directory sync: a deletion a crash undoes leaves garbage the next pass removes,
        // and a sync per blob would make a pass over many blobs crawl.
        match std::fs::remove_file(self.blob_path(digest)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn quarantine(&self, digest: &Digest) -> Result<bool> {
        let from = self.blob_path(digest);
        // The time in the name keeps each damaged copy, should the same digest rot twice.
        let to = self.root.join("quarantine").join(format!(
            "{}-{}-{}",
            digest.algorithm().as_str(),
            digest.hex(),
            crate::meta::now()
        ));
        tokio::task::spawn_blocking(move || match fs::rename(&from, &to) {
            Ok(()) => {
                sync_dir(from.parent().expect("blob path has a parent"))?;
                sync_dir(to.parent().expect("quarantine path has a parent"))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
        .await?
        .map_err(Into::into)
    }

    async fn upload_ids(&self) -> Result<Vec<String>> {
        let dir = self.root.join("uploads");
        tokio::task::spawn_blocking(move || {
            let mut ids = Vec::new();
            for e in fs::read_dir(dir)? {
                if let Some(name) = e?.file_name().to_str() {
                    ids.push(name.to_string());
                }
            }
            Ok(ids)
        })
        .await?
    }

    async fn upload_abort(&self, id: &str, _state: &[u8]) -> Result<()> {
        let path = match self.upload_path(id) {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
