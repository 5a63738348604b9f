//! `dependency update` and `dependency build`: resolving a chart's `oci://` (and `file://`)
//! dependencies into `charts/` and writing the lock file helm writes and checks
//! (`Chart.lock`, or `requirements.lock` for apiVersion v1), digest included.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::meta::{go_json, ChartMeta, Dependency};
use super::{archive, parse_oci, version_to_tag, ChartArchive, Constraint};
use crate::{Client, Error, Result};

/// A lock file, keys in the order helm's YAML writer sorts them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lock {
    pub dependencies: Vec<Locked>,
    pub digest: String,
    pub generated: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Locked {
    pub name: String,
    pub repository: String,
    pub version: String,
}

/// What `dependency update|build` did with one dependency.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    pub name: String,
    pub version: String,
    pub repository: String,
    pub path: String,
}

/// The charts vendored in `dir/charts`: archives and directories, with their versions.
pub fn vendored(dir: &Path) -> Result<Vec<(String, semver::Version)>> {
    let charts = dir.join("charts");
    let Ok(rd) = std::fs::read_dir(&charts) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in rd {
        let p = e.map_err(|e| Error::file(&charts, e))?.path();
        let meta = if p.extension().is_some_and(|x| x == "tgz") {
            ChartArchive::read_path(&p)?.0.meta
        } else if p.join("Chart.yaml").is_file() {
            let y = std::fs::read(p.join("Chart.yaml")).map_err(|e| Error::file(&p, e))?;
            ChartMeta::parse(&y, None)
                .map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))?
        } else {
            continue;
        };
        if let Ok(v) = semver::Version::parse(&meta.version) {
            out.push((meta.name, v));
        }
    }
    Ok(out)
}

/// helm's lock digest: SHA-256 of the JSON of `[declared, locked]`.
pub fn lock_digest(declared: &[Dependency], locked: &[Locked]) -> String {
    let locked: Vec<Dependency> = locked
        .iter()
        .map(|l| Dependency {
            name: l.name.clone(),
            version: l.version.clone(),
            repository: l.repository.clone(),
            ..Dependency::default()
        })
        .collect();
    let json = go_json(&(declared, locked));
    format!("sha256:{}", wharf_oci::Digest::sha256_of(&json).hex())
}

/// The registries a chart's `oci://` dependencies live on (to give credentials to).
pub fn dependency_registries(dir: &Path) -> Result<Vec<crate::Reference>> {
    let (meta, _) = load(dir)?;
    meta.dependencies
        .iter()
        .filter(|d| d.repository.starts_with("oci://"))
        .map(|d| {
            parse_oci(&format!(
                "{}/{}",
                d.repository.trim_end_matches('/'),
                d.name
            ))
        })
        .collect()
}

fn load(dir: &Path) -> Result<(ChartMeta, PathBuf)> {
    let meta = ChartMeta::load_dir(dir)?;
    let lock = match meta.api_version.as_str() {
        "v1" => dir.join("requirements.lock"),
        _ => dir.join("Chart.lock"),
    };
    Ok((meta, lock))
}

impl Client {
    /// Resolves every dependency to the newest version its constraint allows, downloads them
    /// into `charts/` and writes the lock file.
    pub async fn dependency_update(&self, dir: &Path) -> Result<Vec<Resolved>> {
        let (meta, lock_path) = load(dir)?;
        let mut locked = Vec::new();
        for d in &meta.dependencies {
            locked.push(self.resolve_dependency(dir, d).await?);
        }
        let out = self.vendor(dir, &meta, &locked).await?;
        if !meta.dependencies.is_empty() {
            let lock = Lock {
                digest: lock_digest(&meta.dependencies, &locked),
                dependencies: locked,
                generated: humantime::format_rfc3339_nanos(std::time::SystemTime::now())
                    .to_string(),
            };
            let yaml = serde_yaml_ng::to_string(&lock)
                .map_err(|e| Error::Invalid(format!("writing the lock file: {e}")))?;
            super::write_atomic(&lock_path, yaml.as_bytes())?;
        }
        Ok(out)
    }

    /// Downloads the versions the lock file names (refusing a lock that no longer matches
    /// Chart.yaml, as helm does); without a lock file, the same as `dependency_update`.
    pub async fn dependency_build(&self, dir: &Path) -> Result<Vec<Resolved>> {
        let (meta, lock_path) = load(dir)?;
        let text = match std::fs::read(&lock_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.dependency_update(dir).await
            }
            Err(e) => return Err(Error::file(&lock_path, e)),
        };
        let lock: Lock = serde_yaml_ng::from_slice(&text)
            .map_err(|e| Error::Invalid(format!("{}: {e}", lock_path.display())))?;
        if lock_digest(&meta.dependencies, &lock.dependencies) != lock.digest {
            return Err(Error::Invalid(format!(
                "{} is out of sync with the dependencies in Chart.yaml: run `wharf chart dependency update {}`",
                lock_path.display(),
                dir.display()
            )));
        }
        self.vendor(dir, &meta, &lock.dependencies).await
    }

    async fn resolve_dependency(&self, dir: &Path, d: &Dependency) -> Result<Locked> {
        let constraint = Constraint::parse(if d.version.is_empty() {
            "*"
        } else {
            &d.version
        })
        .map_err(Error::Invalid)?;
        let version = if let Some(path) = d.repository.strip_prefix("file://") {
            let yaml = dir.join(path).join("Chart.yaml");
            let b = std::fs::read(&yaml).map_err(|e| Error::file(&yaml, e))?;
            let v = ChartMeta::parse(&b, None)?.version;
            let parsed = semver::Version::parse(&v).map_err(|e| Error::Invalid(e.to_string()))?;
            if !constraint.matches(&parsed) {
                return Err(Error::Invalid(format!(
                    "dependency {}: {} is version {v}, outside {constraint}",
                    d.name,
                    yaml.display()
                )));
            }
            v
        } else if d.repository.starts_with("oci://") {
            let repo = parse_oci(&format!(
                "{}/{}",
                d.repository.trim_end_matches('/'),
                d.name
            ))?;
            let versions = self.chart_versions(&repo).await.map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!(
                    "dependency {} at {} (no such repository)",
                    d.name, d.repository
                )),
                e => e,
            })?;
            constraint
                .best(&versions)
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "dependency {} matching {constraint} at {} (versions there: {})",
                        d.name,
                        d.repository,
                        if versions.is_empty() {
                            "none".to_string()
                        } else {
                            versions
                                .iter()
                                .map(|v| v.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ))
                })?
                .to_string()
        } else {
            return Err(Error::Invalid(format!(
                "dependency {}: repository {:?} is not oci:// or file://; wharf resolves charts in OCI registries (for a classic chart repository use `helm dependency update`)",
                d.name, d.repository
            )));
        };
        Ok(Locked {
            name: d.name.clone(),
            repository: d.repository.clone(),
            version,
        })
    }

    /// Puts exactly the locked versions into `charts/`: all are fetched (and checked) into a
    /// staging directory first, so a failure leaves `charts/` as it was.
    async fn vendor(
        &self,
        dir: &Path,
        meta: &ChartMeta,
        locked: &[Locked],
    ) -> Result<Vec<Resolved>> {
        let charts = dir.join("charts");
        std::fs::create_dir_all(&charts).map_err(|e| Error::file(&charts, e))?;
        let staging = tempfile::Builder::new()
            .prefix(".wharf-deps-")
            .tempdir_in(&charts)
            .map_err(|e| Error::file(&charts, e))?;
        let mut out = Vec::new();
        for l in locked {
            let name = format!("{}-{}.tgz", l.name, l.version);
            if let Some(path) = l.repository.strip_prefix("file://") {
                let (m, _) = archive::package(&dir.join(path), staging.path())?;
                if m.version != l.version {
                    return Err(Error::Invalid(format!(
                        "dependency {}: {path} is now version {}, the lock says {}; run `wharf chart dependency update`",
                        l.name, m.version, l.version
                    )));
                }
            } else {
                let repo = parse_oci(&format!(
                    "{}/{}",
                    l.repository.trim_end_matches('/'),
                    l.name
                ))?
                .with_tag(&version_to_tag(&l.version))?;
                let chart = self.fetch_chart(&repo, None).await?;
                if chart.archive.meta.name != l.name {
                    return Err(Error::Invalid(format!(
                        "{repo} holds chart {}, not {}",
                        chart.archive.meta.name, l.name
                    )));
                }
                super::write_atomic(&staging.path().join(&name), &chart.tgz)?;
            }
            out.push(Resolved {
                name: l.name.clone(),
                version: l.version.clone(),
                repository: l.repository.clone(),
                path: charts.join(&name).display().to_string(),
            });
        }
        // Only now replace: older archives of these charts go, the new ones move in.
        let names: Vec<&str> = meta.dependencies.iter().map(|d| d.name.as_str()).collect();
        for e in std::fs::read_dir(&charts).map_err(|e| Error::file(&charts, e))? {
            let p = e.map_err(|e| Error::file(&charts, e))?.path();
            let file = p.file_name().and_then(|f| f.to_str()).unwrap_or_default();
            let stale = file.strip_suffix(".tgz").is_some_and(|stem| {
                names.iter().any(|n| {
                    stem.strip_prefix(n)
                        .and_then(|r| r.strip_prefix('-'))
                        .is_some_and(|v| semver::Version::parse(v).is_ok())
                })
            });
            if stale {
                std::fs::remove_file(&p).map_err(|e| Error::file(&p, e))?;
            }
        }
        for e in std::fs::read_dir(staging.path()).map_err(|e| Error::file(&charts, e))? {
            let p = e.map_err(|e| Error::file(&charts, e))?.path();
            let to = charts.join(p.file_name().expect("a file"));
            std::fs::rename(&p, &to).map_err(|e| Error::file(&to, e))?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_digest_is_helms() {
        // The JSON helm hashes (`json.Marshal([2][]*chart.Dependency{req, lock})`); that real
        // `helm dependency build` accepts the digest is tests/test_charts.py's job.
        let meta = ChartMeta::parse(
            b"apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: sub\n  version: ^1.0.0\n  repository: oci://127.0.0.1:5000/charts\n",
            None,
        )
        .unwrap();
        let locked = [Locked {
            name: "sub".into(),
            repository: "oci://127.0.0.1:5000/charts".into(),
            version: "1.2.0".into(),
        }];
        let json = go_json(&(
            &meta.dependencies,
            locked
                .iter()
                .map(|l| Dependency {
                    name: l.name.clone(),
                    version: l.version.clone(),
                    repository: l.repository.clone(),
                    ..Default::default()
                })
                .collect::<Vec<_>>(),
        ));
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"[[{"name":"sub","version":"^1.0.0","repository":"oci://127.0.0.1:5000/charts"}],[{"name":"sub","version":"1.2.0","repository":"oci://127.0.0.1:5000/charts"}]]"#
        );
        assert!(lock_digest(&meta.dependencies, &locked).starts_with("sha256:"));
    }
}
