//! Chart archives: packing a chart directory into helm's layout (`NAME/Chart.yaml`, ...) and
//! reading one back, refusing what helm's loader would have to trust: entries outside the
//! chart's directory, links, device files, and archives that expand past a limit.

use std::io::Read;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::meta::ChartMeta;
use super::Constraint;
use crate::artifact::Counted;
use crate::{Error, Result};

/// The most a chart may expand to, in all (helm's own limit).
pub const MAX_EXPANDED: u64 = 100 << 20;
/// The most one file of a chart may expand to (helm's own limit).
pub const MAX_FILE: u64 = 5 << 20;

/// A chart read into memory: its name (the archive's top directory) and its files, by path
/// inside that directory, in archive order.
#[derive(Debug, Clone)]
pub struct ChartArchive {
    pub meta: ChartMeta,
    pub files: Vec<(String, Vec<u8>)>,
}

impl ChartArchive {
    /// Reads a `.tgz` (bytes), checking every entry and the expanded size.
    pub fn read(tgz: &[u8]) -> Result<ChartArchive> {
        Self::read_limited(tgz, MAX_EXPANDED, MAX_FILE)
    }

    pub fn read_limited(tgz: &[u8], max_total: u64, max_file: u64) -> Result<ChartArchive> {
        let bad = |why: String| Error::Invalid(format!("chart archive: {why}"));
        if tgz.len() < 2 || tgz[..2] != [0x1f, 0x8b] {
            return Err(bad("not gzip-compressed (a chart is a .tgz)".into()));
        }
        // The limit counts tar headers too: a bomb of empty entries expands as well.
        let read = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let decoder = Counted {
            inner: flate2::read::GzDecoder::new(tgz).take(max_total + 1),
            read: read.clone(),
        };
        let mut tar = tar::Archive::new(decoder);
        let past_limit = || read.get() > max_total;
        let mut top: Option<String> = None;
        let mut files = Vec::new();
        let too_big = || bad(format!("expands past {} MiB; refusing it", max_total >> 20));
        let entries = tar.entries().map_err(|e| bad(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| match past_limit() {
                true => too_big(),
                false => bad(e.to_string()),
            })?;
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let kind = entry.header().entry_type();
            let rel = entry_path(&path).map_err(bad)?;
            if kind.is_dir() || kind.is_pax_global_extensions() {
                continue;
            }
            if !kind.is_file() {
                let what = match kind {
                    k if k.is_symlink() => "a symlink",
                    k if k.is_hard_link() => "a hard link",
                    k if k.is_character_special() || k.is_block_special() => "a device file",
                    k if k.is_fifo() => "a FIFO",
                    _ => "not a regular file",
                };
                return Err(bad(format!(
                    "entry {path:?} is {what}; charts hold only files"
                )));
            }
            let Some((dir, inner)) = rel.split_once('/') else {
                return Err(bad(format!(
                    "entry {path:?} is not inside the chart's directory"
                )));
            };
            match &top {
                None => top = Some(dir.to_string()),
                Some(t) if t != dir => {
                    return Err(bad(format!(
                        "entries in two top directories ({t}/ and {dir}/); a chart has one"
                    )))
                }
                _ => {}
            }
            if entry.size() > max_file {
                return Err(bad(format!(
                    "{path:?} is {} bytes, past the {} MiB a chart file may have",
                    entry.size(),
                    max_file >> 20
                )));
            }
            let mut data = Vec::with_capacity(entry.size() as usize);
            let n = entry
                .read_to_end(&mut data)
                .map_err(|e| match past_limit() {
                    true => too_big(),
                    false => bad(e.to_string()),
                })?;
            if (n as u64) < entry.size() {
                return Err(if past_limit() {
                    too_big()
                } else {
                    bad(format!("{path:?} is cut short"))
                });
            }
            files.push((inner.to_string(), data));
        }
        if past_limit() {
            return Err(too_big());
        }
        let Some(top) = top else {
            return Err(bad("no files in it".into()));
        };
        let get = |n: &str| {
            files
                .iter()
                .find(|(p, _)| p == n)
                .map(|(_, d)| d.as_slice())
        };
        let chart_yaml = get("Chart.yaml").ok_or_else(|| bad(format!("no {top}/Chart.yaml")))?;
        let meta = ChartMeta::parse(chart_yaml, get("requirements.yaml"))?;
        if meta.name != top {
            // helm accepts it, but every tool names the file and directory by the chart.
            tracing::debug!("chart {} is packed under {top}/", meta.name);
        }
        Ok(ChartArchive { meta, files })
    }

    /// Reads the `.tgz` at `path`, refusing a file larger than a chart may expand to
    /// before reading it into memory.
    pub fn read_path(path: &Path) -> Result<(ChartArchive, bytes::Bytes)> {
        let size = std::fs::metadata(path)
            .map_err(|e| Error::file(path, e))?
            .len();
        if size > MAX_EXPANDED {
            return Err(Error::Invalid(format!(
                "{}: {size} bytes; a chart archive is at most {} MiB",
                path.display(),
                MAX_EXPANDED >> 20
            )));
        }
        let bytes = bytes::Bytes::from(std::fs::read(path).map_err(|e| Error::file(path, e))?);
        let archive = ChartArchive::read(&bytes)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        Ok((archive, bytes))
    }

    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(p, _)| p == name)
            .map(|(_, d)| d.as_slice())
    }

    /// Writes the chart's files under `dir/NAME/`, as `helm pull --untar` does. Refuses to
    /// write over an existing directory, so a stale file never mixes in.
    pub fn extract(&self, dir: &Path) -> Result<PathBuf> {
        let root = dir.join(&self.meta.name);
        if root.exists() {
            return Err(Error::Invalid(format!(
                "{} exists; remove it or choose another --destination",
                root.display()
            )));
        }
        let staging = tempfile::Builder::new()
            .prefix(".wharf-chart-")
            .tempdir_in(dir)
            .map_err(|e| Error::file(dir, e))?;
        for (path, data) in &self.files {
            let to = staging.path().join(path);
            if let Some(p) = to.parent() {
                std::fs::create_dir_all(p).map_err(|e| Error::file(p, e))?;
            }
            std::fs::write(&to, data).map_err(|e| Error::file(&to, e))?;
        }
        let staged = staging.keep();
        std::fs::rename(&staged, &root).map_err(|e| Error::file(&root, e))?;
        Ok(root)
    }
}

/// The path of an archive entry, refusing absolute paths and `..`.
fn entry_path(path: &str) -> std::result::Result<String, String> {
    let p = path.trim_start_matches("./");
    if p.starts_with('/') || p.contains('\\') {
        return Err(format!("entry {path:?} has an absolute path"));
    }
    if p.split('/').any(|c| c == "..") {
        return Err(format!("entry {path:?} leaves the chart's directory (..)"));
    }
    Ok(p.trim_end_matches('/').to_string())
}

/// Packs the chart in `dir` into `NAME-VERSION.tgz` in `out_dir`, in helm's layout:
/// `Chart.yaml`, `Chart.lock`, `values.yaml`, `values.schema.json`, then every other file
/// in path order, under `NAME/`. The same input gives the same bytes: entries are sorted,
/// owners and times fixed (to `SOURCE_DATE_EPOCH` when set, else 0) and the gzip header
/// carries no time. `.helmignore` is honoured, and dependencies must be in `charts/`.
pub fn package(dir: &Path, out_dir: &Path) -> Result<(ChartMeta, PathBuf)> {
    let meta = ChartMeta::load_dir(dir)?;
    check_dependencies(dir, &meta)?;
    let files = collect(dir)?;
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    std::fs::create_dir_all(out_dir).map_err(|e| Error::file(out_dir, e))?;
    let out = out_dir.join(meta.archive_name());
    let tmp = tempfile::NamedTempFile::new_in(out_dir).map_err(|e| Error::file(out_dir, e))?;
    let gz = flate2::GzBuilder::new().mtime(0).write(
        std::io::BufWriter::new(tmp.reopen().map_err(|e| Error::file(&out, e))?),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    let mut total = 0u64;
    for (rel, src) in &files {
        // Sized before reading, so an oversized file is refused without loading it.
        let len = std::fs::metadata(src)
            .map_err(|e| Error::file(src, e))?
            .len();
        total += len;
        if len > MAX_FILE || total > MAX_EXPANDED {
            return Err(Error::Invalid(format!(
                "{}: the chart would be past helm's limits ({} MiB a file, {} MiB in all)",
                src.display(),
                MAX_FILE >> 20,
                MAX_EXPANDED >> 20
            )));
        }
        let data = std::fs::read(src).map_err(|e| Error::file(src, e))?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(epoch);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("{}/{rel}", meta.name), data.as_slice())
            .map_err(|e| Error::file(&out, e))?;
    }
    let gz = tar.into_inner().map_err(|e| Error::file(&out, e))?;
    let mut w = gz.finish().map_err(|e| Error::file(&out, e))?;
    std::io::Write::flush(&mut w).map_err(|e| Error::file(&out, e))?;
    drop(w);
    tmp.as_file().sync_all().map_err(|e| Error::file(&out, e))?;
    tmp.persist(&out).map_err(|e| Error::file(&out, e.error))?;
    Ok((meta, out))
}

/// The files of a chart directory, by relative path, in helm's order.
fn collect(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let root = dir.canonicalize().map_err(|e| Error::file(dir, e))?;
    let ignore = helmignore(&root)?;
    let mut out = Vec::new();
    walk(&root, &root, &ignore, &mut out)?;
    let rank = |p: &str| match p {
        "Chart.yaml" => 0,
        "Chart.lock" => 1,
        "values.yaml" => 2,
        "values.schema.json" => 3,
        _ => 4,
    };
    out.sort_by(|a, b| (rank(&a.0), &a.0).cmp(&(rank(&b.0), &b.0)));
    Ok(out)
}

fn helmignore(root: &Path) -> Result<Gitignore> {
    let mut b = GitignoreBuilder::new(root);
    let file = root.join(".helmignore");
    if file.exists() {
        if let Some(e) = b.add(&file) {
            return Err(Error::Invalid(format!("{}: {e}", file.display())));
        }
    }
    // helm's own default: dotfiles in templates/ are never templates.
    b.add_line(None, "templates/.?*")
        .map_err(|e| Error::Invalid(e.to_string()))?;
    b.build()
        .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))
}

fn walk(
    root: &Path,
    dir: &Path,
    ignore: &Gitignore,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<()> {
    let entries = crate::artifact::sorted_entries(dir)?;
    for e in entries {
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .expect("walked from root")
            .to_string_lossy()
            .replace('\\', "/");
        let ft = e.file_type().map_err(|err| Error::file(&path, err))?;
        let (is_dir, source) = if ft.is_symlink() {
            // Followed, as helm follows them, but only inside the chart.
            let target = path.canonicalize().map_err(|err| Error::file(&path, err))?;
            if !target.starts_with(root) {
                return Err(Error::Invalid(format!(
                    "refusing {}: a symlink leading outside the chart ({})",
                    path.display(),
                    target.display()
                )));
            }
            (target.is_dir(), target)
        } else {
            (ft.is_dir(), path.clone())
        };
        if ignore.matched_path_or_any_parents(&rel, is_dir).is_ignore() {
            continue;
        }
        if is_dir {
            if ft.is_symlink() {
                return Err(Error::Invalid(format!(
                    "refusing {}: a symlinked directory; copy it into the chart",
                    path.display()
                )));
            }
            walk(root, &path, ignore, out)?;
        } else if source.is_file() {
            out.push((rel, source));
        } else {
            return Err(Error::Invalid(format!(
                "refusing {}: not a regular file (a device, FIFO or socket)",
                path.display()
            )));
        }
    }
    Ok(())
}

/// `helm package`'s check: every declared dependency is in `charts/`, as an archive or a
/// directory whose version satisfies the constraint.
fn check_dependencies(dir: &Path, meta: &ChartMeta) -> Result<()> {
    let have = super::deps::vendored(dir)?;
    for d in &meta.dependencies {
        let c = match d.version.is_empty() {
            true => None,
            false => Some(Constraint::parse(&d.version).map_err(Error::Invalid)?),
        };
        let found = have
            .iter()
            .any(|(name, v)| name == &d.name && c.as_ref().is_none_or(|c| c.matches(v)));
        if !found {
            return Err(Error::Invalid(format!(
                "dependency {} {} (from {}) is not in {}/charts: run `wharf chart dependency update {}`",
                d.name,
                if d.version.is_empty() { "*" } else { &d.version },
                if d.repository.is_empty() { "no repository" } else { &d.repository },
                dir.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(
            p.join("Chart.yaml"),
            "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
        )
        .unwrap();
        std::fs::write(p.join("values.yaml"), "replicas: 1\n").unwrap();
        std::fs::create_dir_all(p.join("templates")).unwrap();
        std::fs::write(p.join("templates/cm.yaml"), "kind: ConfigMap\n").unwrap();
        std::fs::write(p.join("templates/.swp"), "x").unwrap();
        std::fs::write(p.join("notes.bak"), "x").unwrap();
        std::fs::write(p.join(".helmignore"), "*.bak\n").unwrap();
        d
    }

    #[test]
    fn packages_are_deterministic_and_read_back() {
        let src = chart_dir();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_, pa) = package(src.path(), a.path()).unwrap();
        let (_, pb) = package(src.path(), b.path()).unwrap();
        assert_eq!(pa.file_name().unwrap(), "demo-0.1.0.tgz");
        let bytes = std::fs::read(&pa).unwrap();
        assert_eq!(bytes, std::fs::read(pb).unwrap());
        let c = ChartArchive::read(&bytes).unwrap();
        let names: Vec<&str> = c.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "Chart.yaml",
                "values.yaml",
                ".helmignore",
                "templates/cm.yaml"
            ]
        );
        assert_eq!(c.meta.name, "demo");
    }

    #[test]
    fn package_refuses_bad_charts() {
        let e = package(Path::new("/nonexistent-dir"), Path::new("/tmp")).unwrap_err();
        assert!(e.to_string().contains("no Chart.yaml"), "{e}");
        let src = chart_dir();
        std::fs::write(
            src.path().join("Chart.yaml"),
            "apiVersion: v2\nname: demo\nversion: 0.1.0\ndependencies:\n- name: sub\n  version: ^1.0.0\n  repository: oci://localhost:1/x\n",
        )
        .unwrap();
        let out = tempfile::tempdir().unwrap();
        let e = package(src.path(), out.path()).unwrap_err().to_string();
        assert!(
            e.contains("dependency sub ^1.0.0") && e.contains("dependency update"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_dir(out.path()).unwrap().count(),
            0,
            "nothing written"
        );

        let src = chart_dir();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("templates/leak.yaml")).unwrap();
        let e = package(src.path(), out.path()).unwrap_err().to_string();
        assert!(e.contains("outside the chart"), "{e}");
    }

    fn tgz(build: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        build(&mut b);
        b.into_inner().unwrap().finish().unwrap()
    }

    fn file(b: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the name raw to build the hostile archive.
        let name = h.as_old_mut().name.as_mut();
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    const CHART_YAML: &[u8] = b"apiVersion: v2\nname: c\nversion: 1.0.0\n";

    #[test]
    fn hostile_archives_are_refused() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (tgz(|b| file(b, "/c/Chart.yaml", CHART_YAML)), "absolute"),
            (tgz(|b| file(b, "c/../../x", b"x")), ".."),
            (
                tgz(|b| {
                    file(b, "c/Chart.yaml", CHART_YAML);
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, "c/x", "/etc/passwd").unwrap();
                }),
                "symlink",
            ),
            (
                tgz(|b| {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Char);
                    h.set_size(0);
                    b.append_data(&mut h, "c/null", std::io::empty()).unwrap();
                }),
                "device",
            ),
            (
                tgz(|b| file(b, "c/values.yaml", b"a: 1")),
                "no c/Chart.yaml",
            ),
            (b"PK\x03\x04".to_vec(), "not gzip"),
        ];
        for (bytes, why) in cases {
            let e = ChartArchive::read(&bytes).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn bombs_are_refused() {
        // 3 MiB of zeros compresses to a few KiB; with a 1 MiB limit it is a bomb.
        let zeros = vec![0u8; 3 << 20];
        let bomb = tgz(|b| {
            file(b, "c/Chart.yaml", CHART_YAML);
            file(b, "c/big", &zeros);
        });
        assert!(bomb.len() < 64 << 10);
        let e = ChartArchive::read_limited(&bomb, 1 << 20, 8 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expands past 1 MiB"), "{e}");
        let e = ChartArchive::read_limited(&bomb, 8 << 20, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("past the 1 MiB"), "{e}");
        assert!(ChartArchive::read_limited(&bomb, 8 << 20, 8 << 20).is_ok());
    }
}
