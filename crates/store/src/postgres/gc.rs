//! Garbage collection in PostgreSQL (see `crate::gc`): the gate every replica shares, as an
//! advisory lock (transactions that make content referenced hold it shared until they
//! commit; a collection step holds it exclusively on a connection of its own, and runs its
//! deletions there), the pass lock that lets one replica collect at a time, and the
//! queries, each delete re-checking what would keep its row.

use std::sync::Arc;

use deadpool_postgres::{Object, Pool, Transaction};
use wharf_oci::Digest;

use crate::gc::{GcLock, GcStore, HeldLink, ManifestCandidate};
use crate::meta::parse_digest;
use crate::retention::TagRecord;
use crate::{PostgresMetadataStore, Result};

#[async_trait::async_trait]
impl GcStore for PostgresMetadataStore {
    fn is_shared(&self) -> bool {
        true
    }

    async fn gc_pass_lock(&self) -> Result<Option<GcLock>> {
        pass_lock(&self.pool).await
    }

    async fn gc_gate_exclusive(&self) -> Result<Option<GcLock>> {
        gate_exclusive(&self.pool, &self.gate).await
    }

    async fn gc_manifest_candidates(&self, cutoff: i64) -> Result<Vec<ManifestCandidate>> {
        let c = self.pool.get().await?;
        manifest_candidates(&c, cutoff).await
    }

    async fn gc_manifest_exists(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2",
            &[&repo, &digest.to_string()],
        )
        .await?
        .is_some())
    }

    async fn gc_delete_manifests(
        &self,
        victims: &[(String, Digest)],
        cutoff: i64,
    ) -> Result<Vec<(String, Digest, u64)>> {
        delete_manifests(&self.pool, &self.gate, victims, cutoff).await
    }

    async fn gc_link_candidates(
        &self,
        cutoff: i64,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<(String, Digest, u64)>> {
        let c = self.pool.get().await?;
        link_candidates(&c, cutoff, after.unwrap_or_default(), limit).await
    }

    async fn gc_delete_links(
        &self,
        links: &[(String, Digest)],
        cutoff: i64,
    ) -> Result<Vec<(String, Digest, u64)>> {
        delete_links(&self.pool, &self.gate, links, cutoff).await
    }

    async fn gc_children_of(
        &self,
        manifests: &[ManifestCandidate],
        cutoff: i64,
    ) -> Result<Vec<HeldLink>> {
        let c = self.pool.get().await?;
        children_of(&c, manifests, cutoff).await
    }

    async fn gc_links(&self, digests: Option<&[Digest]>) -> Result<Vec<(String, Digest)>> {
        let c = self.pool.get().await?;
        let rows = match digests {
            None => c.query("SELECT repo, digest FROM blobs", &[]).await?,
            Some(ds) => {
                let ds: Vec<String> = ds.iter().map(|d| d.to_string()).collect();
                c.query(
                    "SELECT repo, digest FROM blobs WHERE digest = ANY($1)",
                    &[&ds],
                )
                .await?
            }
        };
        rows.iter()
            .map(|r| Ok((r.get(0), parse_digest(r.get(1))?)))
            .collect()
    }

    async fn gc_tags(&self, repo: &str) -> Result<Vec<TagRecord>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT tag, digest, updated_at FROM tags WHERE repo = $1",
                &[&repo],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TagRecord {
                    tag: r.get(0),
                    digest: parse_digest(r.get(1))?,
                    updated_at: r.get(2),
                })
            })
            .collect()
    }

    async fn gc_delete_tag(&self, repo: &str, tag: &str, digest: &Digest) -> Result<bool> {
        let c = self.pool.get().await?;
        Ok(c.execute(
            "DELETE FROM tags WHERE repo = $1 AND tag = $2 AND digest = $3",
            &[&repo, &tag, &digest.to_string()],
        )
        .await?
            > 0)
    }

    async fn gc_manifest_info(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<ManifestCandidate>> {
        let c = self.pool.get().await?;
        manifest_info(&c, repo, digests).await
    }
}

/// The gate's advisory lock key.
const GATE: i64 = 0x5748_4152_4647; // "WHARFG"
/// The key of the lock held for a whole collection pass.
const PASS: i64 = 0x5748_4152_4650; // "WHARFP"

/// The connection holding the gate exclusively, while a step runs.
pub(crate) type GateSlot = Arc<tokio::sync::Mutex<Option<Object>>>;

/// Holds the gate shared until the transaction ends (waiting while a step runs).
pub(crate) async fn gate_shared(tx: &Transaction<'_>) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&GATE])
        .await?;
    Ok(())
}

/// A session lock on `key`, taken only if free, on a connection kept until release. The
/// connection is closed rather than pooled if the unlock fails, so no lock outlives it.
async fn session_lock(pool: &Pool, key: i64) -> Result<Option<Object>> {
    let c = pool.get().await?;
    let got: bool = c
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await?
        .get(0);
    Ok(got.then_some(c))
}

async fn unlock(c: Object, key: i64) {
    if c.execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .is_err()
    {
        drop(Object::take(c));
    }
}

pub(crate) async fn pass_lock(pool: &Pool) -> Result<Option<GcLock>> {
    Ok(session_lock(pool, PASS)
        .await?
        .map(|c| GcLock::new(move || Box::pin(unlock(c, PASS)))))
}

/// The lock of a scheduled pass (`scrub`, `gc`) across replicas, when free.
pub(crate) async fn scheduled_pass_lock(pool: &Pool, name: &str) -> Result<Option<GcLock>> {
    let hash = Digest::sha256_of(format!("wharf scheduled pass {name}").as_bytes());
    let key = i64::from_str_radix(&hash.hex()[..15], 16).expect("hex digits");
    Ok(session_lock(pool, key)
        .await?
        .map(|c| GcLock::new(move || Box::pin(unlock(c, key)))))
}

/// How long a quota commit tries for its namespace's lock before giving up.
const NAMESPACE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// The session lock of a namespace under quota: tried, not waited for, so that a replica
/// waiting holds no pooled connection while the holder needs a second one to link.
pub(crate) async fn namespace_lock(pool: &Pool, namespace: &str) -> Result<GcLock> {
    let hash = Digest::sha256_of(format!("wharf quota {namespace}").as_bytes());
    let key = i64::from_str_radix(&hash.hex()[..15], 16).expect("hex digits");
    let deadline = tokio::time::Instant::now() + NAMESPACE_PATIENCE;
    loop {
        if let Some(c) = session_lock(pool, key).await? {
            return Ok(GcLock::new(move || Box::pin(unlock(c, key))));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(crate::StoreError::Busy(format!(
                "pushes to {namespace} kept its quota lock busy; try again"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
}

pub(crate) async fn gate_exclusive(pool: &Pool, slot: &GateSlot) -> Result<Option<GcLock>> {
    let Some(c) = session_lock(pool, GATE).await? else {
        return Ok(None);
    };
    *slot.lock().await = Some(c);
    let slot = slot.clone();
    Ok(Some(GcLock::new(move || {
        Box::pin(async move {
            if let Some(c) = slot.lock().await.take() {
                unlock(c, GATE).await;
            }
        })
    })))
}

/// Runs `work` in a transaction on the connection holding the gate, or on a pooled one when
/// no step holds it (a dry run).
async fn in_step<T>(
    pool: &Pool,
    slot: &GateSlot,
    work: impl for<'t> FnOnce(&'t Transaction<'t>) -> futures_util::future::BoxFuture<'t, Result<T>>,
) -> Result<T> {
    let mut held = slot.lock().await;
    let mut pooled;
    let c: &mut Object = match held.as_mut() {
        Some(c) => c,
        None => {
            pooled = pool.get().await?;
            &mut pooled
        }
    };
    let tx = c.transaction().await?;
    let out = work(&tx).await?;
    tx.commit().await?;
    Ok(out)
}

pub(crate) async fn manifest_candidates(c: &Object, cutoff: i64) -> Result<Vec<ManifestCandidate>> {
    let rows = c
        .query(
            "SELECT m.repo, m.digest, m.size, m.pushed_at, m.subject,
                    ARRAY(SELECT r.manifest FROM manifest_refs r
                           WHERE r.repo = m.repo AND r.child = m.digest)
             FROM manifests m
             WHERE m.pushed_at <= $1
               AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)",
            &[&cutoff],
        )
        .await?;
    rows.iter().map(candidate).collect()
}

async fn manifest_info(
    c: &Object,
    repo: &str,
    digests: &[Digest],
) -> Result<Vec<ManifestCandidate>> {
    let digests: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
    let rows = c
        .query(
            "SELECT m.repo, m.digest, m.size, m.pushed_at, m.subject,
                    ARRAY(SELECT r.manifest FROM manifest_refs r
                           WHERE r.repo = m.repo AND r.child = m.digest)
             FROM manifests m WHERE m.repo = $1 AND m.digest = ANY($2)",
            &[&repo, &digests],
        )
        .await?;
    rows.iter().map(candidate).collect()
}

fn candidate(r: &tokio_postgres::Row) -> Result<ManifestCandidate> {
    Ok(ManifestCandidate {
        repo: r.get(0),
        digest: parse_digest(r.get(1))?,
        size: r.get::<_, i64>(2).max(0) as u64,
        pushed_at: r.get(3),
        subject: r
            .get::<_, Option<String>>(4)
            .map(parse_digest)
            .transpose()?,
        parents: r
            .get::<_, Vec<String>>(5)
            .into_iter()
            .map(parse_digest)
            .collect::<Result<_>>()?,
    })
}

pub(crate) async fn delete_manifests(
    pool: &Pool,
    slot: &GateSlot,
    victims: &[(String, Digest)],
    cutoff: i64,
) -> Result<Vec<(String, Digest, u64)>> {
    let victims = victims.to_vec();
    in_step(pool, slot, move |tx| {
        Box::pin(async move {
            let mut gone = Vec::new();
            for (repo, digest) in victims {
                let d = digest.to_string();
                let row = tx
                    .query_opt(
                        "DELETE FROM manifests m
                         WHERE m.repo = $1 AND m.digest = $2 AND m.pushed_at <= $3
                           AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = $1 AND t.digest = $2)
                           AND NOT EXISTS
                                 (SELECT 1 FROM manifest_refs r WHERE r.repo = $1 AND r.child = $2)
                           AND (m.subject IS NULL OR NOT EXISTS
                                 (SELECT 1 FROM manifests s WHERE s.repo = $1 AND s.digest = m.subject))
                         RETURNING m.size",
                        &[&repo, &d, &cutoff],
                    )
                    .await?;
                if let Some(row) = row {
                    tx.execute(
                        "DELETE FROM manifest_refs WHERE repo = $1 AND manifest = $2",
                        &[&repo, &d],
                    )
                    .await?;
                    gone.push((repo, digest, row.get::<_, i64>(0).max(0) as u64));
                }
            }
            Ok(gone)
        })
    })
    .await
}

pub(crate) async fn link_candidates(
    c: &Object,
    cutoff: i64,
    after: (String, String),
    limit: usize,
) -> Result<Vec<(String, Digest, u64)>> {
    let rows = c
        .query(
            "SELECT b.repo, b.digest, b.size FROM blobs b
             WHERE b.linked_at <= $1 AND (b.repo, b.digest) > ($2, $3)
               AND NOT EXISTS
                     (SELECT 1 FROM manifest_refs r WHERE r.repo = b.repo AND r.child = b.digest)
             ORDER BY b.repo, b.digest LIMIT $4",
            &[&cutoff, &after.0, &after.1, &(limit as i64)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.get(0),
                parse_digest(r.get(1))?,
                r.get::<_, i64>(2).max(0) as u64,
            ))
        })
        .collect()
}

pub(crate) async fn delete_links(
    pool: &Pool,
    slot: &GateSlot,
    links: &[(String, Digest)],
    cutoff: i64,
) -> Result<Vec<(String, Digest, u64)>> {
    let links = links.to_vec();
    in_step(pool, slot, move |tx| {
        Box::pin(async move {
            let mut gone = Vec::new();
            for (repo, digest) in links {
                let row = tx
                    .query_opt(
                        "DELETE FROM blobs
                         WHERE repo = $1 AND digest = $2 AND linked_at <= $3
                           AND NOT EXISTS
                                 (SELECT 1 FROM manifest_refs r WHERE r.repo = $1 AND r.child = $2)
                         RETURNING size",
                        &[&repo, &digest.to_string(), &cutoff],
                    )
                    .await?;
                if let Some(row) = row {
                    gone.push((repo, digest, row.get::<_, i64>(0).max(0) as u64));
                }
            }
            Ok(gone)
        })
    })
    .await
}

pub(crate) async fn children_of(
    c: &Object,
    manifests: &[ManifestCandidate],
    cutoff: i64,
) -> Result<Vec<crate::gc::HeldLink>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in manifests {
        let rows = c
            .query(
                "SELECT r.child, b.size,
                        ARRAY(SELECT h.manifest FROM manifest_refs h
                               WHERE h.repo = r.repo AND h.child = r.child)
                 FROM manifest_refs r
                 JOIN blobs b ON b.repo = r.repo AND b.digest = r.child
                 WHERE r.repo = $1 AND r.manifest = $2 AND b.linked_at <= $3",
                &[&m.repo, &m.digest.to_string(), &cutoff],
            )
            .await?;
        for r in rows {
            let child: String = r.get(0);
            if !seen.insert((m.repo.clone(), child.clone())) {
                continue;
            }
            out.push(crate::gc::HeldLink {
                repo: m.repo.clone(),
                digest: parse_digest(child)?,
                size: r.get::<_, i64>(1).max(0) as u64,
                holders: r
                    .get::<_, Vec<String>>(2)
                    .into_iter()
                    .map(parse_digest)
                    .collect::<Result<_>>()?,
            });
        }
    }
    Ok(out)
}
