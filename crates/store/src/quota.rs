//! Quotas: a namespace (a repository name and everything under it: `team-a` is `team-a`,
//! `team-a/app`, `team-a/x/y`) may hold at most so many bytes. Usage counts each distinct
//! blob and manifest in the namespace once, so content already in the namespace costs
//! nothing more to push again, to another repository of it or under another tag.
//!
//! Pushes are refused before their bytes are accepted when the size is known (the server
//! asks [`Registry::quota_admit`] with the request's `Content-Length`), and at commit
//! otherwise, leaving nothing behind. Commits to one namespace check and link one at a time
//! (a lock in the process, and with PostgreSQL an advisory lock every replica takes), so two
//! pushes cannot together pass a limit each fits under. A push reads a running tally, not
//! the whole namespace (see `Registry::quota_check`).

use wharf_oci::Digest;

use crate::{MetadataStore, Registry, Result, StoreError};

/// `[[quotas]]`: `namespace` may hold at most `limit_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub namespace: String,
    pub limit_bytes: u64,
}

/// A quota's standing, as `wharf admin usage` and the metrics report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaUsage {
    pub namespace: String,
    pub used_bytes: u64,
    pub limit_bytes: u64,
}

/// Whether `repo` is in `namespace`.
pub fn in_namespace(namespace: &str, repo: &str) -> bool {
    repo.strip_prefix(namespace)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The quotas governing `repo`: every one whose namespace contains it (a team's quota, and
/// a project's inside it), outermost first.
pub fn quotas_for<'q>(quotas: &'q [Quota], repo: &str) -> Vec<&'q Quota> {
    let mut found: Vec<&Quota> = quotas
        .iter()
        .filter(|q| in_namespace(&q.namespace, repo))
        .collect();
    found.sort_by_key(|q| q.namespace.len());
    found
}

fn clamp(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// Bytes in whole units, for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Held while a commit checks its quota and links. Dropped, it gives back the replicas'
/// lock (in the background) and then this process's: fields drop in order.
pub(crate) struct QuotaLock {
    _shared: crate::gc::GcLock,
    _local: crate::keyed_lock::KeyGuard,
}

impl Registry {
    /// Refuses, before any byte is read, a push of `incoming` more bytes into `repo` that
    /// would pass its quota. `upload` is the session the bytes extend (its bytes so far
    /// count too); `digest` is the blob's when known (a blob already in the namespace adds
    /// nothing).
    pub async fn quota_admit(
        &self,
        repo: &str,
        upload: Option<&str>,
        digest: Option<&Digest>,
        incoming: u64,
    ) -> Result<()> {
        let quotas = quotas_for(&self.limits().quotas, repo);
        if quotas.is_empty() {
            return Ok(());
        }
        let so_far = match upload {
            Some(id) => self.upload_status(repo, id).await?.size,
            None => 0,
        };
        for quota in quotas {
            self.quota_check(quota, repo, digest, so_far + incoming, false)
                .await?;
        }
        Ok(())
    }

    /// The lock commits hold while they check and link, when `repo` has a quota: its
    /// outermost namespace's (so commits under nested quotas take one), in this process and
    /// then across replicas.
    pub(crate) async fn quota_lock(&self, repo: &str) -> Result<Option<QuotaLock>> {
        let Some(outermost) = quotas_for(&self.limits().quotas, repo).first().copied() else {
            return Ok(None);
        };
        let local = self.quota_locks.lock(&outermost.namespace).await;
        let shared = self.meta.namespace_lock(&outermost.namespace).await?;
        Ok(Some(QuotaLock {
            _shared: shared,
            _local: local,
        }))
    }

    /// Refuses adding content `digest` (a blob or a manifest) of `size` bytes to `repo`
    /// when that passes one of its quotas.
    pub(crate) async fn quota_commit(
        &self,
        repo: &str,
        digest: Option<&Digest>,
        size: u64,
    ) -> Result<()> {
        for quota in quotas_for(&self.limits().quotas, repo) {
            self.quota_check(quota, repo, digest, size, true).await?;
        }
        Ok(())
    }

    /// Refuses adding `adding` bytes of content `digest` to `repo` in the namespace of
    /// `quota` when that passes it. The check reads the namespace's tally, which commits keep
    /// (`commit`: this caller holds the namespace's lock and is about to link, so it adds its
    /// bytes). Deletions do not lower the tally, so it never reads low; when it says the push
    /// does not fit, the namespace is summed again, and the tally corrected, before refusing.
    /// (A manifest already in another repository of the namespace is counted again by the
    /// tally: a few kilobytes high, never low.)
    async fn quota_check(
        &self,
        quota: &Quota,
        repo: &str,
        digest: Option<&Digest>,
        adding: u64,
        commit: bool,
    ) -> Result<()> {
        let ns = quota.namespace.as_str();
        if let Some(d) = digest {
            if self.meta.namespace_contains(ns, repo, d).await? {
                return Ok(());
            }
        }
        let fits = |used: u64| used.saturating_add(adding) <= quota.limit_bytes;
        let key = format!("quota-tally/{ns}");
        let tally = self.meta.state_get(&key).await?.map(|n| n.max(0) as u64);
        let used = match tally {
            Some(t) if fits(t) => t,
            _ => {
                let exact = self.meta.namespace_usage(ns).await?;
                // Only a commit, holding the lock, may write the tally: a correction
                // written beside a commit could drop the commit's bytes from it.
                if commit && tally != Some(exact) {
                    self.meta.state_set(&key, clamp(exact)).await?;
                }
                exact
            }
        };
        if !fits(used) {
            return Err(StoreError::QuotaExceeded(format!(
                "quota exceeded: {ns} holds {} of its {} quota and this push adds {}",
                human_bytes(used),
                human_bytes(quota.limit_bytes),
                human_bytes(adding)
            )));
        }
        if commit {
            self.meta.state_set(&key, clamp(used + adding)).await?;
        }
        Ok(())
    }

    /// Every quota's standing.
    pub async fn quota_usage(&self) -> Result<Vec<QuotaUsage>> {
        usage_of(self.meta.as_ref(), &self.limits().quotas).await
    }
}

/// Each of `quotas`' standing in `meta`.
pub async fn usage_of(meta: &dyn MetadataStore, quotas: &[Quota]) -> Result<Vec<QuotaUsage>> {
    let mut out = Vec::new();
    for q in quotas {
        out.push(QuotaUsage {
            namespace: q.namespace.clone(),
            used_bytes: meta.namespace_usage(&q.namespace).await?,
            limit_bytes: q.limit_bytes,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_contain_whole_path_components() {
        assert!(in_namespace("team-a", "team-a"));
        assert!(in_namespace("team-a", "team-a/app"));
        assert!(in_namespace("team-a", "team-a/x/y"));
        assert!(!in_namespace("team-a", "team-ab"));
        assert!(!in_namespace("team-a", "team"));
        let q = |ns: &str, limit| Quota {
            namespace: ns.into(),
            limit_bytes: limit,
        };
        let quotas = [q("team-a/big", 100), q("team-a", 10)];
        let limits = |repo| {
            quotas_for(&quotas, repo)
                .iter()
                .map(|q| q.limit_bytes)
                .collect::<Vec<_>>()
        };
        assert_eq!(limits("team-a/big/app"), [10, 100]);
        assert_eq!(limits("team-a/app"), [10]);
        assert!(limits("team-b/app").is_empty());
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024 * 1024), "10.0 GiB");
    }
}
