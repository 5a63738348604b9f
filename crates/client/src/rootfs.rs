//! A container image's layers applied in order into a directory, as the image-spec's
//! "applying changesets" describes: each layer's entries added or replaced, whiteouts
//! (`.wh.NAME`) removing what an earlier layer wrote, opaque whiteouts (`.wh..wh..opq`)
//! emptying a directory. Nothing is written outside the directory: entries with `..`, hard
//! links leaving it and writes through symlinks are refused; device files and FIFOs are
//! skipped (an unprivileged copy of a root filesystem cannot hold them anyway).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use wharf_oci::media_type::IMAGE_LAYERS_TAR_GZIP;
use wharf_oci::Descriptor;

use crate::{Error, Result};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// What applying the layers did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub entries: u64,
    pub removed: u64,
    pub skipped_devices: u64,
}

/// Applies `layers` (descriptor and the verified blob file), first to last, into `dir`.
pub fn apply_layers(layers: &[(Descriptor, PathBuf)], dir: &Path) -> Result<Applied> {
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    let mut applied = Applied::default();
    for (d, blob) in layers {
        let f = std::fs::File::open(blob).map_err(|e| Error::file(blob, e))?;
        let reader: Box<dyn Read> = if IMAGE_LAYERS_TAR_GZIP.contains(&d.media_type.as_str()) {
            Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))
        } else {
            Box::new(std::io::BufReader::new(f))
        };
        apply_layer(reader, dir, &mut applied)
            .map_err(|e| Error::Invalid(format!("layer {}: {e}", d.digest)))?;
    }
    Ok(applied)
}

/// The entry's path relative to the root, `./` and a leading `/` dropped; `None` for the
/// root itself; an error for `..`.
fn relative(p: &Path) -> std::result::Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("entry {} leaves the root filesystem", p.display()))
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Whether some directory between `dir` and `rel`'s parent is a symlink: removing or
/// writing below it could touch what lies outside `dir`.
fn through_symlink(dir: &Path, rel: &Path) -> bool {
    let mut cur = dir.to_path_buf();
    let parent = rel.parent().unwrap_or(Path::new(""));
    for c in parent.components() {
        cur.push(c);
        if std::fs::symlink_metadata(&cur).is_ok_and(|m| m.file_type().is_symlink()) {
            return true;
        }
    }
    false
}

fn remove_any(p: &Path) -> std::io::Result<bool> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).map(|_| true),
        Ok(_) => std::fs::remove_file(p).map(|_| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn apply_layer(
    reader: impl Read,
    dir: &Path,
    applied: &mut Applied,
) -> std::result::Result<(), String> {
    let mut a = tar::Archive::new(reader);
    a.set_preserve_permissions(true);
    a.set_unpack_xattrs(false);
    a.set_overwrite(true);
    for entry in a.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let raw = entry.path().map_err(|e| e.to_string())?.into_owned();
        let Some(rel) = relative(&raw)? else {
            continue;
        };
        if through_symlink(dir, &rel) {
            return Err(format!(
                "entry {} lies below a symbolic link; refusing to follow it",
                rel.display()
            ));
        }
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let parent = dir.join(rel.parent().unwrap_or(Path::new("")));
        if name == OPAQUE {
            if let Ok(children) = std::fs::read_dir(&parent) {
                for c in children.flatten() {
                    remove_any(&c.path()).map_err(|e| e.to_string())?;
                    applied.removed += 1;
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if remove_any(&parent.join(hidden)).map_err(|e| e.to_string())? {
                applied.removed += 1;
            }
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            applied.skipped_devices += 1;
            continue;
        }
        if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| e.to_string())?
                .ok_or("a hard link without a target")?;
            let Some(t) = relative(&target)? else {
                return Err(format!("hard link {} to the root", rel.display()));
            };
            if through_symlink(dir, &t) || !dir.join(&t).exists() {
                return Err(format!(
                    "hard link {} -> {} does not point to a file of this filesystem",
                    rel.display(),
                    t.display()
                ));
            }
            let dest = dir.join(&rel);
            remove_any(&dest).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(&parent).map_err(|e| e.to_string())?;
            std::fs::hard_link(dir.join(&t), &dest).map_err(|e| e.to_string())?;
            applied.entries += 1;
            continue;
        }
        // A later layer replaces what is there, except that directories merge.
        let dest = dir.join(&rel);
        if let Ok(m) = std::fs::symlink_metadata(&dest) {
            if !(m.is_dir() && kind.is_dir()) {
                remove_any(&dest).map_err(|e| e.to_string())?;
            }
        }
        std::fs::create_dir_all(&parent).map_err(|e| e.to_string())?;
        // Written by its cleaned path: the archive's own (`./`, `/`) is not trusted.
        entry
            .unpack(&dest)
            .map_err(|e| format!("{}: {e}", rel.display()))?;
        applied.entries += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut a = Applied::default();
        let l1 = layer(&[
            ("./etc/", None),
            ("./etc/keep", Some(b"1")),
            ("./etc/gone", Some(b"2")),
            ("./var/cache/", None),
            ("./var/cache/a", Some(b"3")),
        ]);
        apply_layer(&l1[..], root, &mut a).unwrap();
        let l2 = layer(&[
            ("etc/.wh.gone", Some(b"")),
            ("var/cache/.wh..wh..opq", Some(b"")),
            ("var/cache/b", Some(b"4")),
            ("etc/keep", Some(b"new")),
        ]);
        apply_layer(&l2[..], root, &mut a).unwrap();
        assert_eq!(std::fs::read(root.join("etc/keep")).unwrap(), b"new");
        assert!(!root.join("etc/gone").exists());
        assert!(!root.join("var/cache/a").exists());
        assert_eq!(std::fs::read(root.join("var/cache/b")).unwrap(), b"4");
    }

    #[test]
    fn escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Applied::default();
        // The tar crate refuses to write `..` through set_path; write the name field itself.
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..4].copy_from_slice(b"../x");
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(4);
        h.set_mode(0o644);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"evil"[..]).unwrap();
        let raw = b.into_inner().unwrap();
        let e = apply_layer(&raw[..], dir.path(), &mut a).unwrap_err();
        assert!(e.contains("leaves the root filesystem"), "{e}");
        // a symlink out, then a file below it
        std::os::unix::fs::symlink("/tmp", dir.path().join("out")).unwrap();
        let l = layer(&[("out/planted", Some(b"x"))]);
        let e = apply_layer(&l[..], dir.path(), &mut a).unwrap_err();
        assert!(e.contains("below a symbolic link"), "{e}");
        assert!(!Path::new("/tmp/planted").exists());
        // a hard link to a file outside the root filesystem
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        b.append_link(&mut h, "passwd", "/etc/passwd").unwrap();
        let raw = b.into_inner().unwrap();
        let e = apply_layer(&raw[..], dir.path(), &mut a).unwrap_err();
        assert!(
            e.contains("does not point to a file of this filesystem"),
            "{e}"
        );
        assert!(!dir.path().join("passwd").exists());
        // device files are skipped, not made
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_size(0);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        b.append_data(&mut h, "null", &[][..]).unwrap();
        let raw = b.into_inner().unwrap();
        let mut a = Applied::default();
        apply_layer(&raw[..], dir.path(), &mut a).unwrap();
        assert_eq!(a.skipped_devices, 1);
        assert!(!dir.path().join("null").exists());
    }
}
