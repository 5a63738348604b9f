//! What the registry holds, as operators watch it: bytes stored, bytes per repository and
//! artifact kind, open upload sessions and dangling manifests. Each backend answers with one
//! read; [`Usage::fold_repositories`] folds the per-repository rows under a cap, so that a registry
//! with a million repositories still reports a bounded number of series.

use std::collections::HashMap;

/// The repository name under which repositories past the cap are summed.
pub const OTHER_REPOSITORIES: &str = "_other";

/// A snapshot of what the registry holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of the blobs linked into any repository, each digest counted once.
    pub blob_bytes: u64,
    /// Bytes of the stored manifests, each digest counted once.
    pub manifest_bytes: u64,
    /// Upload sessions not yet completed or cancelled.
    pub uploads: u64,
    /// Manifests that no tag names, that are not children of an index in their repository,
    /// and whose subject (if they have one) is gone: what garbage collection would reclaim.
    pub dangling_manifests: u64,
    /// Bytes the manifests of each repository reference (manifest, config and layers; a blob
    /// shared by two manifests counts for both), by artifact kind.
    pub by_artifact: Vec<ArtifactBytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactBytes {
    pub repository: String,
    pub kind: String,
    pub bytes: u64,
}

impl Usage {
    /// Bytes stored in all: blobs and manifests.
    pub fn used_bytes(&self) -> u64 {
        self.blob_bytes + self.manifest_bytes
    }

    /// Keeps the `max_repositories` largest repositories by name and sums the rest, kind by
    /// kind, under [`OTHER_REPOSITORIES`]. Rows come as (repository, kind, bytes).
    pub fn fold_repositories(
        rows: Vec<(String, String, u64)>,
        max_repositories: usize,
    ) -> Vec<ArtifactBytes> {
        let mut totals: HashMap<&str, u64> = HashMap::new();
        for (repo, _, bytes) in &rows {
            *totals.entry(repo.as_str()).or_default() += bytes;
        }
        let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
        // Largest first; equal sizes by name, so the cut is the same on every replica.
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let kept: std::collections::HashSet<String> = ranked
            .iter()
            .take(max_repositories)
            .map(|(r, _)| r.to_string())
            .collect();
        let mut out: Vec<ArtifactBytes> = Vec::new();
        let mut other: HashMap<String, u64> = HashMap::new();
        for (repository, kind, bytes) in rows {
            if kept.contains(&repository) {
                out.push(ArtifactBytes {
                    repository,
                    kind,
                    bytes,
                });
            } else {
                *other.entry(kind).or_default() += bytes;
            }
        }
        out.extend(other.into_iter().map(|(kind, bytes)| ArtifactBytes {
            repository: OTHER_REPOSITORIES.into(),
            kind,
            bytes,
        }));
        out.sort_by(|a, b| (&a.repository, &a.kind).cmp(&(&b.repository, &b.kind)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(r: &str, k: &str, b: u64) -> (String, String, u64) {
        (r.into(), k.into(), b)
    }

    #[test]
    fn repositories_past_the_cap_are_summed_by_kind() {
        let rows = vec![
            row("big", "image", 100),
            row("big", "helm-chart", 5),
            row("mid", "image", 50),
            row("small", "image", 3),
            row("tiny", "helm-chart", 1),
        ];
        let folded = Usage::fold_repositories(rows, 2);
        let got: Vec<(&str, &str, u64)> = folded
            .iter()
            .map(|a| (a.repository.as_str(), a.kind.as_str(), a.bytes))
            .collect();
        assert_eq!(
            got,
            vec![
                ("_other", "helm-chart", 1),
                ("_other", "image", 3),
                ("big", "helm-chart", 5),
                ("big", "image", 100),
                ("mid", "image", 50),
            ]
        );
    }

    #[test]
    fn a_cap_of_zero_sums_everything() {
        let folded = Usage::fold_repositories(vec![row("a", "image", 1), row("b", "image", 2)], 0);
        assert_eq!(
            folded,
            vec![ArtifactBytes {
                repository: "_other".into(),
                kind: "image".into(),
                bytes: 3
            }]
        );
    }
}
