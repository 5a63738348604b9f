//! Online garbage collection: untagged manifests that nothing keeps, blob links no manifest
//! references, and blob bytes no repository links are deleted once older than a grace
//! period, while the registry serves pushes and pulls.
//!
//! Why it is race-free. Every write that makes content referenced (a blob's bytes and its
//! link, a mount, a manifest and what it names) holds the collection *gate* shared; each
//! collection step holds it exclusively and re-checks, as it deletes, that what it deletes is
//! still unreferenced. So a step never sees a push half-done, and a push never completes on
//! something a step is deleting: a manifest PUT whose blob was collected first fails with
//! `MANIFEST_BLOB_UNKNOWN` and stores nothing. The gate is this process's lock, and with
//! PostgreSQL also an advisory lock every replica takes (see the backend). Collection takes
//! the gate when it is free, or queues for it after a moment, so pushes wait at most for the
//! ones in flight and one short step.
//!
//! What the grace period protects: a blob uploaded (or mounted) less than `grace` ago, and a
//! manifest pushed less than `grace` ago, are kept even when nothing references them yet: a
//! client between uploading its blobs and putting its manifest, or between pushing an
//! index's children and the index, is not cut short. With a zero grace such a push can fail
//! (cleanly, as above); nothing acknowledged is ever lost.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use wharf_oci::Digest;

use crate::retention::{expired_tags, rule_for};
use crate::{Registry, Result};

mod store;
pub use store::{GcLock, GcStore, HeldLink, ManifestCandidate, StoredBlob};

/// What a pass deleted (or, dry, would delete).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub dry_run: bool,
    pub grace_secs: u64,
    /// Tags retention deleted, as `REPO:TAG`.
    pub tags: Vec<String>,
    /// `REPO@DIGEST` of each manifest.
    pub manifests: Vec<String>,
    pub manifest_bytes: u64,
    /// Blob links removed from repositories, as `REPO@DIGEST`.
    pub links: Vec<String>,
    /// Blobs whose bytes left the blob store.
    pub blobs: Vec<String>,
    pub blob_bytes: u64,
    /// Upload sessions expired.
    pub uploads: usize,
    /// Steps skipped because pushes kept the gate busy (they run in the next pass).
    pub skipped_steps: usize,
}

impl GcReport {
    pub fn reclaimed_bytes(&self) -> u64 {
        self.manifest_bytes + self.blob_bytes
    }
}

/// How a pass runs.
#[derive(Debug, Clone)]
pub struct GcOptions {
    pub grace: Duration,
    pub dry_run: bool,
    /// Upload sessions idle this long are expired.
    pub upload_expiry: Duration,
}

/// Items deleted per step, so that the gate is held briefly.
const STEP: usize = 200;
/// How long a step waits for the gate before giving up until the next pass.
const GATE_PATIENCE: Duration = Duration::from_secs(10);
/// How long a step tries for a free gate before it queues for it.
const GATE_QUEUE_AFTER: Duration = Duration::from_millis(20);
/// With metadata in PostgreSQL, bytes younger than this are kept whatever the grace: another
/// replica may be between writing a blob's bytes and linking them, which the gate of this
/// process does not see (its link transaction takes the shared gate only when it starts).
pub const SHARED_BYTES_FLOOR: Duration = Duration::from_secs(60);

impl Registry {
    /// Runs one collection pass. On PostgreSQL only one replica runs a pass at a time;
    /// `Ok(None)` when another one is running.
    pub async fn collect_garbage(&self, opts: &GcOptions) -> Result<Option<GcReport>> {
        let Some(pass) = self.meta.gc_pass_lock().await? else {
            return Ok(None);
        };
        let _local = self.gc_pass.lock().await;
        let result = self.collect(opts).await;
        pass.release().await;
        result.map(Some)
    }

    async fn collect(&self, opts: &GcOptions) -> Result<GcReport> {
        let now = crate::meta::now();
        let cutoff = now - opts.grace.as_secs() as i64;
        let mut report = GcReport {
            dry_run: opts.dry_run,
            grace_secs: opts.grace.as_secs(),
            ..GcReport::default()
        };
        if !opts.dry_run {
            report.uploads = self.expire_uploads(opts.upload_expiry).await?;
        }
        let untagged_by_retention = self.apply_retention(opts.dry_run, &mut report).await?;
        let doomed = self
            .doomed_manifests(now, cutoff, &untagged_by_retention)
            .await?;
        let mut unlinked: Vec<(String, Digest, u64)> = Vec::new();
        if opts.dry_run {
            for m in &doomed {
                report.manifests.push(format!("{}@{}", m.repo, m.digest));
                report.manifest_bytes += m.size;
            }
            unlinked = self.links_freed_by(&doomed, cutoff).await?;
        } else {
            for batch in doomed.chunks(STEP) {
                let victims: Vec<(String, Digest)> = batch
                    .iter()
                    .map(|m| (m.repo.clone(), m.digest.clone()))
                    .collect();
                match self
                    .exclusively(|| self.meta.gc_delete_manifests(&victims, cutoff))
                    .await?
                {
                    Some(deleted) => {
                        for (repo, digest, size) in deleted {
                            report.manifests.push(format!("{repo}@{digest}"));
                            report.manifest_bytes += size;
                        }
                    }
                    None => report.skipped_steps += 1,
                }
            }
            let mut after = None;
            loop {
                let page = self
                    .meta
                    .gc_link_candidates(cutoff, after.clone(), STEP)
                    .await?;
                let Some((repo, digest, _)) = page.last() else {
                    break;
                };
                after = Some((repo.clone(), digest.to_string()));
                let links: Vec<(String, Digest)> = page
                    .iter()
                    .map(|(r, d, _)| (r.clone(), d.clone()))
                    .collect();
                match self
                    .exclusively(|| self.meta.gc_delete_links(&links, cutoff))
                    .await?
                {
                    Some(deleted) => unlinked.extend(deleted),
                    None => report.skipped_steps += 1,
                }
                if page.len() < STEP {
                    break;
                }
            }
        }
        for (repo, digest, _) in &unlinked {
            report.links.push(format!("{repo}@{digest}"));
        }
        self.collect_bytes(opts, cutoff, now, &unlinked, &mut report)
            .await?;
        Ok(report)
    }

    /// Deletes the tags retention lets go (dry, only lists them) and returns, for a dry run,
    /// the manifests those deletions would leave untagged.
    async fn apply_retention(
        &self,
        dry_run: bool,
        report: &mut GcReport,
    ) -> Result<Vec<(String, Digest)>> {
        let rules = &self.limits().retention;
        let mut untagged = Vec::new();
        if rules.iter().all(|r| r.keep_last.is_none()) {
            return Ok(untagged);
        }
        let mut last: Option<String> = None;
        loop {
            let page = self.meta.repositories(last.as_deref(), 1000).await?;
            for repo in &page {
                let Some(rule) = rule_for(rules, repo) else {
                    continue;
                };
                let tags = self.meta.gc_tags(repo).await?;
                let expired = expired_tags(rule, &self.limits().immutable_tags, repo, &tags);
                if dry_run {
                    let going: HashSet<&str> = expired.iter().map(|t| t.tag.as_str()).collect();
                    let mut left: HashSet<&Digest> = expired.iter().map(|t| &t.digest).collect();
                    for t in tags.iter().filter(|t| !going.contains(t.tag.as_str())) {
                        left.remove(&t.digest);
                    }
                    untagged.extend(left.into_iter().map(|d| (repo.clone(), d.clone())));
                    report
                        .tags
                        .extend(expired.iter().map(|t| format!("{repo}:{}", t.tag)));
                    continue;
                }
                for t in expired {
                    if self.meta.gc_delete_tag(repo, &t.tag, &t.digest).await? {
                        tracing::info!(repository = %repo, tag = %t.tag, "retention deleted tag");
                        report.tags.push(format!("{repo}:{}", t.tag));
                    }
                }
            }
            if page.len() < 1000 {
                break;
            }
            last = page.last().cloned();
        }
        report.tags.sort();
        Ok(untagged)
    }

    /// Untagged manifests old enough (by the grace period, and by their repository's
    /// retention rule), that no surviving index holds and whose subject does not survive, in
    /// an order that deletes holders before what they hold. `also_untagged` are taken as
    /// untagged (a dry run's view of what retention would untag).
    async fn doomed_manifests(
        &self,
        now: i64,
        cutoff: i64,
        also_untagged: &[(String, Digest)],
    ) -> Result<Vec<ManifestCandidate>> {
        let mut candidates = self.meta.gc_manifest_candidates(cutoff).await?;
        let mut by_repo: HashMap<&str, Vec<Digest>> = HashMap::new();
        for (repo, digest) in also_untagged {
            by_repo.entry(repo).or_default().push(digest.clone());
        }
        for (repo, digests) in by_repo {
            let info = self.meta.gc_manifest_info(repo, &digests).await?;
            candidates.extend(info.into_iter().filter(|m| m.pushed_at <= cutoff));
        }
        let rules = &self.limits().retention;
        candidates.retain(
            |m| match rule_for(rules, &m.repo).and_then(|r| r.untagged_after) {
                Some(keep) => m.pushed_at <= now - keep.as_secs() as i64,
                None => true,
            },
        );
        let key = |repo: &str, d: &Digest| (repo.to_string(), d.clone());
        let untagged: HashSet<(String, Digest)> =
            candidates.iter().map(|m| key(&m.repo, &m.digest)).collect();
        // A subject outside the candidates is tagged or young: it survives. A subject that is
        // in no repository at all is gone: its referrers go too.
        let mut subject_exists: HashMap<(String, Digest), bool> = HashMap::new();
        for m in &candidates {
            if let Some(s) = &m.subject {
                let k = key(&m.repo, s);
                if !untagged.contains(&k) && !subject_exists.contains_key(&k) {
                    let exists = self.meta.gc_manifest_exists(&m.repo, s).await?;
                    subject_exists.insert(k, exists);
                }
            }
        }
        Ok(doom(&candidates, &subject_exists))
    }

    /// For a dry run: the links unreferenced now, and those that only doomed manifests
    /// reference.
    async fn links_freed_by(
        &self,
        doomed: &[ManifestCandidate],
        cutoff: i64,
    ) -> Result<Vec<(String, Digest, u64)>> {
        let gone: HashSet<(String, Digest)> = doomed
            .iter()
            .map(|m| (m.repo.clone(), m.digest.clone()))
            .collect();
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .meta
                .gc_link_candidates(cutoff, after.clone(), 1000)
                .await?;
            let Some((repo, digest, _)) = page.last() else {
                break;
            };
            after = Some((repo.clone(), digest.to_string()));
            let full = page.len() == 1000;
            out.extend(page);
            if !full {
                break;
            }
        }
        let mut seen: HashSet<(String, Digest)> =
            out.iter().map(|(r, d, _)| (r.clone(), d.clone())).collect();
        for held in self.meta.gc_children_of(doomed, cutoff).await? {
            let k = (held.repo.clone(), held.digest.clone());
            let only_doomed = held
                .holders
                .iter()
                .all(|h| gone.contains(&(held.repo.clone(), h.clone())));
            if only_doomed && seen.insert(k) {
                out.push((held.repo, held.digest, held.size));
            }
        }
        Ok(out)
    }

    /// Deletes the bytes of blobs no repository links: those unlinked now and any others
    /// the blob store holds (unlinked earlier through the API, or left by a crash), once
    /// older than the grace period.
    async fn collect_bytes(
        &self,
        opts: &GcOptions,
        cutoff: i64,
        now: i64,
        unlinked: &[(String, Digest, u64)],
        report: &mut GcReport,
    ) -> Result<()> {
        let mut floor = cutoff;
        if self.meta.is_shared() {
            floor = floor.min(now - SHARED_BYTES_FLOOR.as_secs() as i64);
        }
        let leaving: HashSet<(String, Digest)> = unlinked
            .iter()
            .map(|(r, d, _)| (r.clone(), d.clone()))
            .collect();
        let stored = self.blobs.list_blobs().await?;
        // Every link at once: one read, not one per stored blob.
        let mut linked: HashMap<Digest, Vec<String>> = HashMap::new();
        for (repo, digest) in self.meta.gc_links(None).await? {
            linked.entry(digest).or_default().push(repo);
        }
        let mut candidates = Vec::new();
        for b in stored {
            if b.modified > floor {
                continue;
            }
            // Dry, links that would go count as gone.
            let kept = linked.get(&b.digest).is_some_and(|repos| {
                repos
                    .iter()
                    .any(|r| !leaving.contains(&(r.clone(), b.digest.clone())))
            });
            if !kept {
                candidates.push(b);
            }
        }
        if opts.dry_run {
            for b in candidates {
                report.blobs.push(b.digest.to_string());
                report.blob_bytes += b.size;
            }
            return Ok(());
        }
        for batch in candidates.chunks(STEP) {
            let step = self
                .exclusively(|| async {
                    // Re-checked under the gate: still unlinked. In this process a push
                    // links what it writes under the gate, so that is enough; another
                    // replica may have written the digest again without linking it yet, so
                    // with replicas the bytes must also still be old.
                    let digests: Vec<Digest> = batch.iter().map(|b| b.digest.clone()).collect();
                    let relinked: HashSet<Digest> = self
                        .meta
                        .gc_links(Some(&digests))
                        .await?
                        .into_iter()
                        .map(|(_, d)| d)
                        .collect();
                    let mut gone = Vec::new();
                    for b in batch.iter().filter(|b| !relinked.contains(&b.digest)) {
                        if self.meta.is_shared() {
                            match self.blobs.stat_modified(&b.digest).await? {
                                Some(m) if m <= floor => {}
                                _ => continue,
                            }
                        }
                        if self.blobs.delete_blob(&b.digest).await? {
                            gone.push(b.clone());
                        }
                    }
                    Ok(gone)
                })
                .await?;
            match step {
                Some(gone) => {
                    for b in gone {
                        report.blobs.push(b.digest.to_string());
                        report.blob_bytes += b.size;
                    }
                }
                None => report.skipped_steps += 1,
            }
        }
        Ok(())
    }

    /// Runs `step` holding the gate exclusively (this process's, and the backend's), or
    /// returns `None` when pushes kept it busy for longer than the patience allows.
    async fn exclusively<T, F, Fut>(&self, step: F) -> Result<Option<T>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let started = tokio::time::Instant::now();
        let deadline = started + GATE_PATIENCE;
        loop {
            // Taken when free; under a steady stream of pushes it is rarely free, so after a
            // moment the collector queues for it: pushes arriving then wait for the ones in
            // flight (milliseconds) and for the step, not for the whole patience.
            let local = match self.gc_gate.try_write() {
                Ok(g) => Some(g),
                Err(_) if started.elapsed() >= GATE_QUEUE_AFTER => {
                    tokio::time::timeout_at(deadline, self.gc_gate.write())
                        .await
                        .ok()
                }
                Err(_) => None,
            };
            if let Some(local) = local {
                if let Some(shared) = self.meta.gc_gate_exclusive().await? {
                    let out = step().await;
                    shared.release().await;
                    drop(local);
                    return out.map(Some);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::info!("garbage collection step skipped: pushes kept the gate busy");
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Of `candidates` (untagged and old enough), those that go: held by no surviving manifest,
/// and with no surviving subject (`subject_exists` answers for subjects that are not
/// candidates), in an order that deletes holders before what they hold.
fn doom(
    candidates: &[ManifestCandidate],
    subject_exists: &HashMap<(String, Digest), bool>,
) -> Vec<ManifestCandidate> {
    let key = |repo: &str, d: &Digest| (repo.to_string(), d.clone());
    let untagged: HashSet<(String, Digest)> =
        candidates.iter().map(|m| key(&m.repo, &m.digest)).collect();
    let mut doomed: HashSet<(String, Digest)> = HashSet::new();
    let mut order = Vec::new();
    loop {
        let before = doomed.len();
        for m in candidates {
            let k = key(&m.repo, &m.digest);
            if doomed.contains(&k) {
                continue;
            }
            let held = m.parents.iter().any(|p| !doomed.contains(&key(&m.repo, p)));
            let kept_by_subject = m.subject.as_ref().is_some_and(|s| {
                let sk = key(&m.repo, s);
                if untagged.contains(&sk) {
                    !doomed.contains(&sk)
                } else {
                    subject_exists.get(&sk).copied().unwrap_or(true)
                }
            });
            if !held && !kept_by_subject {
                doomed.insert(k);
                order.push(m.clone());
            }
        }
        if doomed.len() == before {
            return order;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    fn m(name: &str, subject: Option<&str>, parents: &[&str]) -> ManifestCandidate {
        ManifestCandidate {
            repo: "r".into(),
            digest: d(name),
            size: 1,
            pushed_at: 0,
            subject: subject.map(d),
            parents: parents.iter().map(|p| d(p)).collect(),
        }
    }

    fn names(order: &[ManifestCandidate], all: &[&str]) -> Vec<String> {
        order
            .iter()
            .map(|c| {
                all.iter()
                    .find(|n| d(n) == c.digest)
                    .expect("known")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn holders_go_before_what_they_hold() {
        // index -> child -> (nothing); a referrer of the child; a child held by a tagged
        // index (not a candidate); a referrer of a tagged image; a referrer of a gone one.
        let all = [
            "index",
            "child",
            "ref-of-child",
            "kept-child",
            "ref-of-tagged",
            "ref-of-gone",
        ];
        let candidates = vec![
            m("ref-of-child", Some("child"), &[]),
            m("child", None, &["index"]),
            m("index", None, &[]),
            m("kept-child", None, &["tagged-index"]),
            m("ref-of-tagged", Some("tagged"), &[]),
            m("ref-of-gone", Some("gone"), &[]),
        ];
        let exists: HashMap<(String, Digest), bool> = [
            (("r".to_string(), d("tagged")), true),
            (("r".to_string(), d("gone")), false),
        ]
        .into();
        let order = names(&doom(&candidates, &exists), &all);
        assert_eq!(order, ["index", "ref-of-gone", "child", "ref-of-child"]);
    }

    #[test]
    fn an_index_held_by_a_surviving_index_stays_with_its_children() {
        let candidates = vec![m("inner", None, &["outer"]), m("leaf", None, &["inner"])];
        // "outer" is not a candidate: tagged or young.
        assert!(doom(&candidates, &HashMap::new()).is_empty());
    }
}
