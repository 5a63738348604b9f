//! Digests of local files, remembered between pushes.
//!
//! Pushing a file needs its digest, and hashing a large file is most of what the client does.
//! A file that has not changed since it was last hashed has the same digest, so each push
//! records it under the file's device and inode, with the size, modification and change
//! times that prove the file unchanged. Any write to the file moves its change time, which no
//! user can set back, so an entry never outlives the content it describes. A file that was
//! changed within a moment of being hashed is not recorded: timestamps are coarse, and a
//! write in the same tick as the read would otherwise go unnoticed (git's "racy" index
//! entries). The registry checks every uploaded byte against the digest in any case.
//!
//! The cache lives in `$WHARF_CACHE_DIR/file-digests` (by default under `$XDG_CACHE_HOME`
//! or `~/.cache`, in `wharf/`); `WHARF_NO_CACHE=1` turns it off. Each entry is one short file
//! (`<device>-<inode>`), written whole by rename; the most recently written 4096 are kept.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wharf_oci::Digest;

use crate::{Error, Result};

/// How long a file must have been left alone before its digest is recorded.
const SETTLED: Duration = Duration::from_secs(2);
const FORMAT: &str = "wharf-file-digest-v1";

/// The directory entries go in, from the environment; `None` when turned off or when there
/// is no home to keep it in.
pub fn default_dir() -> Option<PathBuf> {
    dir_from(|k| std::env::var_os(k))
}

fn dir_from(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |k: &str| var(k).filter(|v| !v.is_empty());
    if var("WHARF_NO_CACHE").is_some_and(|v| v != "0") {
        return None;
    }
    let base = var("WHARF_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("wharf")))
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache/wharf")))?;
    Some(base.join("file-digests"))
}

/// What identifies one version of a file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
    changed_ns: i128,
}

#[cfg(unix)]
fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Ok(Stamp {
        device: m.dev(),
        inode: m.ino(),
        size: m.len(),
        modified_ns: ns(m.mtime(), m.mtime_nsec()),
        changed_ns: ns(m.ctime(), m.ctime_nsec()),
    })
}

#[cfg(not(unix))]
fn stamp(_path: &Path) -> std::io::Result<Stamp> {
    Err(std::io::Error::other("file identity is only read on unix"))
}

impl Stamp {
    fn entry_name(&self) -> String {
        format!("{:x}-{:x}", self.device, self.inode)
    }

    fn line_prefix(&self) -> String {
        format!(
            "{FORMAT} {} {} {} ",
            self.size, self.modified_ns, self.changed_ns
        )
    }

    fn line(&self, digest: &Digest) -> String {
        format!("{}{digest}\n", self.line_prefix())
    }

    /// Whether the file was last touched at least [`SETTLED`] before `t`.
    fn settled_before(&self, t: SystemTime) -> bool {
        let Ok(since_epoch) = t.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let limit = since_epoch.saturating_sub(SETTLED).as_nanos() as i128;
        self.modified_ns < limit && self.changed_ns < limit
    }
}

/// The digest recorded for `path`, if the file is the one it was recorded for.
pub(crate) fn lookup(dir: &Path, path: &Path) -> Option<(Digest, u64)> {
    let s = stamp(path).ok()?;
    let text = std::fs::read_to_string(dir.join(s.entry_name())).ok()?;
    let digest = text
        .strip_prefix(&s.line_prefix())?
        .trim_end()
        .parse()
        .ok()?;
    Some((digest, s.size))
}

/// The sha256 digest and size of the file at `path`: remembered in `cache` when it holds
/// one for this version of the file, else hashed (in a blocking thread) and recorded.
pub async fn digest_file(path: &Path, cache: Option<&Path>) -> Result<(Digest, u64)> {
    if let Some(found) = cache.and_then(|dir| lookup(dir, path)) {
        tracing::debug!("{}: digest from the cache", path.display());
        return Ok(found);
    }
    hash_and_record(path, cache).await
}

/// Hashes the file at `path` (in a blocking thread) and records its digest in `cache` when
/// the file stayed as it was and had settled; for a caller that looked it up already.
pub(crate) async fn hash_and_record(path: &Path, cache: Option<&Path>) -> Result<(Digest, u64)> {
    let (p, dir) = (path.to_path_buf(), cache.map(Path::to_path_buf));
    tokio::task::spawn_blocking(move || {
        let started = SystemTime::now();
        let before = stamp(&p).ok();
        let (digest, size) = hash(&p)?;
        if let (Some(dir), Some(before)) = (dir, before) {
            let unchanged = stamp(&p).ok().as_ref() == Some(&before);
            if unchanged && before.size == size && before.settled_before(started) {
                record(&dir, &before, &digest);
            }
        }
        Ok((digest, size))
    })
    .await
    .map_err(|e| Error::Invalid(format!("hashing: {e}")))?
}

fn hash(path: &Path) -> Result<(Digest, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
    let mut h = wharf_oci::Algorithm::Sha256.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::file(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let size = h.len();
    Ok((h.finish(), size))
}

/// Writes an entry whole (temporary file, then rename), then keeps the cache within
/// [`MAX_ENTRIES`]. A cache that cannot be written is not an error: the next push hashes
/// again.
fn record(dir: &Path, s: &Stamp, digest: &Digest) {
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::fs::write(tmp.path(), s.line(digest))?;
        tmp.persist(dir.join(s.entry_name()))
            .map(drop)
            .map_err(|e| e.error)?;
        prune(dir, MAX_ENTRIES)
    });
    if let Err(e) = written {
        tracing::debug!("recording a digest in {}: {e}", dir.display());
    }
}

/// Entries kept at most. Nothing says when a file is gone (an entry is found by the inode
/// of a file that exists), so the least recently written go once there are more.
const MAX_ENTRIES: usize = 4096;

/// Deletes the oldest entries of `dir` beyond `keep`, down to three quarters of it, so that
/// a full cache is pruned once in a while rather than at every push.
fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    let mut entries: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| {
            let e = e.ok()?;
            Some((e.metadata().ok()?.modified().ok()?, e.path()))
        })
        .collect();
    if entries.len() <= keep {
        return Ok(());
    }
    entries.sort();
    let excess = entries.len() - keep * 3 / 4;
    for (_, path) in entries.into_iter().take(excess) {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(60);
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(old).unwrap();
    }

    #[tokio::test]
    async fn remembers_a_settled_file_until_it_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let file = tmp.path().join("f");
        std::fs::write(&file, b"one").unwrap();
        settle(&file);
        // The change time moved just now (set_modified is a change): not recorded yet.
        let first = digest_file(&file, Some(&cache)).await.unwrap();
        assert_eq!(first, (Digest::sha256_of(b"one"), 3));
        assert_eq!(lookup(&cache, &file), None);

        // Once the change is old enough, hashing records it, and the next lookup finds it.
        let s = stamp(&file).unwrap();
        assert!(!s.settled_before(SystemTime::now()));
        assert!(s.settled_before(SystemTime::now() + SETTLED + Duration::from_millis(50)));
        record(&cache, &s, &first.0);
        assert_eq!(lookup(&cache, &file), Some(first.clone()));
        assert_eq!(digest_file(&file, Some(&cache)).await.unwrap(), first);

        // The same size, the modification time put back: the change time still gives it away.
        std::fs::write(&file, b"two").unwrap();
        settle(&file);
        assert_eq!(lookup(&cache, &file), None);
        assert_eq!(
            digest_file(&file, Some(&cache)).await.unwrap(),
            (Digest::sha256_of(b"two"), 3)
        );
    }

    #[test]
    fn a_full_cache_loses_its_oldest_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for i in 0..10u64 {
            let p = tmp.path().join(format!("e{i}"));
            std::fs::write(&p, "x").unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(old + Duration::from_secs(i)).unwrap();
        }
        prune(tmp.path(), 10).unwrap();
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 10);
        prune(tmp.path(), 8).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["e4", "e5", "e6", "e7", "e8", "e9"]);
    }

    #[test]
    fn entries_that_do_not_parse_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let s = stamp(&file).unwrap();
        for junk in [
            "",
            "garbage",
            &s.line_prefix(),
            &format!("{}sha256:zz", s.line_prefix()),
        ] {
            std::fs::write(tmp.path().join(s.entry_name()), junk).unwrap();
            assert_eq!(lookup(tmp.path(), &file), None, "{junk:?}");
        }
        std::fs::write(
            tmp.path().join(s.entry_name()),
            s.line(&Digest::sha256_of(b"x")),
        )
        .unwrap();
        assert_eq!(
            lookup(tmp.path(), &file),
            Some((Digest::sha256_of(b"x"), 1))
        );
    }

    #[test]
    fn the_environment_picks_the_directory() {
        fn env<'a>(pairs: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
            move |k| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| OsString::from(v))
            }
        }
        let home = [("HOME", "/h")];
        assert_eq!(
            dir_from(env(&home)),
            Some("/h/.cache/wharf/file-digests".into())
        );
        let xdg = [("HOME", "/h"), ("XDG_CACHE_HOME", "/x")];
        assert_eq!(dir_from(env(&xdg)), Some("/x/wharf/file-digests".into()));
        let own = [("XDG_CACHE_HOME", "/x"), ("WHARF_CACHE_DIR", "/c")];
        assert_eq!(dir_from(env(&own)), Some("/c/file-digests".into()));
        let off = [("WHARF_CACHE_DIR", "/c"), ("WHARF_NO_CACHE", "1")];
        assert_eq!(dir_from(env(&off)), None);
        let on = [("HOME", "/h"), ("WHARF_NO_CACHE", "0")];
        assert_eq!(
            dir_from(env(&on)),
            Some("/h/.cache/wharf/file-digests".into())
        );
        assert_eq!(dir_from(env(&[("HOME", "")])), None);
    }
}
