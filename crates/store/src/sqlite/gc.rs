//! Garbage collection's queries in SQLite (see `crate::gc`). Each delete re-checks, in its
//! own statement, everything that would keep the row, so a candidate that became referenced
//! since it was listed stays.

use rusqlite::{params, Connection, OptionalExtension};
use wharf_oci::Digest;

use super::SqliteMetadataStore;
use crate::gc::{GcLock, GcStore, HeldLink, ManifestCandidate};
use crate::meta::parse_digest;
use crate::retention::TagRecord;
use crate::Result;

#[async_trait::async_trait]
impl GcStore for SqliteMetadataStore {
    fn is_shared(&self) -> bool {
        // One process owns a SQLite registry: the collector's gate in `Registry` is enough.
        false
    }

    async fn gc_pass_lock(&self) -> Result<Option<GcLock>> {
        Ok(Some(GcLock::local()))
    }

    async fn gc_gate_exclusive(&self) -> Result<Option<GcLock>> {
        Ok(Some(GcLock::local()))
    }

    async fn gc_manifest_candidates(&self, cutoff: i64) -> Result<Vec<ManifestCandidate>> {
        self.read(move |c| manifest_candidates(c, cutoff)).await
    }

    async fn gc_manifest_exists(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.read(move |c| manifest_exists(c, &repo, &digest)).await
    }

    async fn gc_delete_manifests(
        &self,
        victims: &[(String, Digest)],
        cutoff: i64,
    ) -> Result<Vec<(String, Digest, u64)>> {
        let victims: Vec<(String, String)> = victims
            .iter()
            .map(|(r, d)| (r.clone(), d.to_string()))
            .collect();
        parsed(
            self.write(move |tx| delete_manifests(tx, &victims, cutoff))
                .await?,
        )
    }

    async fn gc_link_candidates(
        &self,
        cutoff: i64,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<(String, Digest, u64)>> {
        let after = after.unwrap_or_default();
        parsed(
            self.read(move |c| link_candidates(c, cutoff, &after, limit))
                .await?,
        )
    }

    async fn gc_delete_links(
        &self,
        links: &[(String, Digest)],
        cutoff: i64,
    ) -> Result<Vec<(String, Digest, u64)>> {
        let links: Vec<(String, String)> = links
            .iter()
            .map(|(r, d)| (r.clone(), d.to_string()))
            .collect();
        parsed(
            self.write(move |tx| delete_links(tx, &links, cutoff))
                .await?,
        )
    }

    async fn gc_children_of(
        &self,
        manifests: &[ManifestCandidate],
        cutoff: i64,
    ) -> Result<Vec<HeldLink>> {
        let manifests: Vec<(String, String)> = manifests
            .iter()
            .map(|m| (m.repo.clone(), m.digest.to_string()))
            .collect();
        let rows = self
            .read(move |c| children_of(c, &manifests, cutoff))
            .await?;
        rows.into_iter()
            .map(|(repo, child, size, holders)| {
                Ok(HeldLink {
                    repo,
                    digest: parse_digest(child)?,
                    size,
                    holders: holders
                        .into_iter()
                        .map(parse_digest)
                        .collect::<Result<_>>()?,
                })
            })
            .collect()
    }

    async fn gc_links(&self, digests: Option<&[Digest]>) -> Result<Vec<(String, Digest)>> {
        let digests: Option<Vec<String>> =
            digests.map(|ds| ds.iter().map(|d| d.to_string()).collect());
        let rows = self.read(move |c| links(c, digests.as_deref())).await?;
        rows.into_iter()
            .map(|(r, d)| Ok((r, parse_digest(d)?)))
            .collect()
    }

    async fn gc_tags(&self, repo: &str) -> Result<Vec<TagRecord>> {
        let repo = repo.to_string();
        let rows = self
            .read(move |c| {
                Ok(
                    c.prepare_cached("SELECT tag, digest, updated_at FROM tags WHERE repo = ?1")?
                        .query_map([repo], |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, i64>(2)?,
                            ))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?,
                )
            })
            .await?;
        rows.into_iter()
            .map(|(tag, digest, updated_at)| {
                Ok(TagRecord {
                    tag,
                    digest: parse_digest(digest)?,
                    updated_at,
                })
            })
            .collect()
    }

    async fn gc_delete_tag(&self, repo: &str, tag: &str, digest: &Digest) -> Result<bool> {
        let (repo, tag, digest) = (repo.to_string(), tag.to_string(), digest.to_string());
        self.write(move |tx| {
            Ok(tx
                .prepare_cached("DELETE FROM tags WHERE repo = ?1 AND tag = ?2 AND digest = ?3")?
                .execute([repo, tag, digest])?
                > 0)
        })
        .await
    }

    async fn gc_manifest_info(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<ManifestCandidate>> {
        let repo = repo.to_string();
        let digests: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
        self.read(move |c| manifest_info(c, &repo, &digests)).await
    }
}

pub(super) fn manifest_candidates(c: &Connection, cutoff: i64) -> Result<Vec<ManifestCandidate>> {
    let rows = c
        .prepare_cached(
            "SELECT m.repo, m.digest, m.size, m.pushed_at, m.subject,
                    (SELECT group_concat(r.manifest, char(10)) FROM manifest_refs r
                      WHERE r.repo = m.repo AND r.child = m.digest)
             FROM manifests m
             WHERE m.pushed_at <= ?1
               AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)",
        )?
        .query_map([cutoff], candidate_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(candidate).collect()
}

type CandidateRow = (String, String, i64, i64, Option<String>, Option<String>);

fn candidate_row(r: &rusqlite::Row) -> rusqlite::Result<CandidateRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

pub(super) fn manifest_info(
    c: &Connection,
    repo: &str,
    digests: &[String],
) -> Result<Vec<ManifestCandidate>> {
    let mut q = c.prepare_cached(
        "SELECT m.repo, m.digest, m.size, m.pushed_at, m.subject,
                (SELECT group_concat(r.manifest, char(10)) FROM manifest_refs r
                  WHERE r.repo = m.repo AND r.child = m.digest)
         FROM manifests m WHERE m.repo = ?1 AND m.digest = ?2",
    )?;
    let mut out = Vec::new();
    for d in digests {
        if let Some(row) = q.query_row([repo, d], candidate_row).optional()? {
            out.push(candidate(row)?);
        }
    }
    Ok(out)
}

fn candidate(
    (repo, digest, size, pushed_at, subject, parents): CandidateRow,
) -> Result<ManifestCandidate> {
    Ok(ManifestCandidate {
        repo,
        digest: parse_digest(digest)?,
        size: size.max(0) as u64,
        pushed_at,
        subject: subject.map(parse_digest).transpose()?,
        parents: parents
            .unwrap_or_default()
            .split('\n')
            .filter(|p| !p.is_empty())
            .map(|p| parse_digest(p.to_string()))
            .collect::<Result<_>>()?,
    })
}

pub(super) fn manifest_exists(c: &Connection, repo: &str, digest: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM manifests WHERE repo = ?1 AND digest = ?2")?
            .exists([repo, digest])?,
    )
}

pub(super) fn delete_manifests(
    tx: &Connection,
    victims: &[(String, String)],
    cutoff: i64,
) -> Result<Vec<(String, String, u64)>> {
    let mut gone = Vec::new();
    for (repo, digest) in victims {
        let size: Option<i64> = tx
            .prepare_cached(
                "DELETE FROM manifests
                 WHERE repo = ?1 AND digest = ?2 AND pushed_at <= ?3
                   AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = ?1 AND t.digest = ?2)
                   AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = ?1 AND r.child = ?2)
                   AND (subject IS NULL OR NOT EXISTS
                         (SELECT 1 FROM manifests s WHERE s.repo = ?1 AND s.digest = manifests.subject))
                 RETURNING size",
            )?
            .query_row(params![repo, digest, cutoff], |r| r.get(0))
            .optional()?;
        if let Some(size) = size {
            tx.prepare_cached("DELETE FROM manifest_refs WHERE repo = ?1 AND manifest = ?2")?
                .execute([repo, digest])?;
            gone.push((repo.clone(), digest.clone(), size.max(0) as u64));
        }
    }
    Ok(gone)
}

pub(super) fn link_candidates(
    c: &Connection,
    cutoff: i64,
    after: &(String, String),
    limit: usize,
) -> Result<Vec<(String, String, u64)>> {
    Ok(c.prepare_cached(
        "SELECT b.repo, b.digest, b.size FROM blobs b
         WHERE b.linked_at <= ?1 AND (b.repo, b.digest) > (?2, ?3)
           AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = b.repo AND r.child = b.digest)
         ORDER BY b.repo, b.digest LIMIT ?4",
    )?
    .query_map(params![cutoff, after.0, after.1, limit as i64], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
    })?
    .collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn delete_links(
    tx: &Connection,
    links: &[(String, String)],
    cutoff: i64,
) -> Result<Vec<(String, String, u64)>> {
    let mut gone = Vec::new();
    for (repo, digest) in links {
        let size: Option<i64> = tx
            .prepare_cached(
                "DELETE FROM blobs
                 WHERE repo = ?1 AND digest = ?2 AND linked_at <= ?3
                   AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = ?1 AND r.child = ?2)
                 RETURNING size",
            )?
            .query_row(params![repo, digest, cutoff], |r| r.get(0))
            .optional()?;
        if let Some(size) = size {
            gone.push((repo.clone(), digest.clone(), size.max(0) as u64));
        }
    }
    Ok(gone)
}

/// A link (repository, digest, size) and the manifests that reference it, as stored.
pub(super) type HeldRow = (String, String, u64, Vec<String>);

pub(super) fn children_of(
    c: &Connection,
    manifests: &[(String, String)],
    cutoff: i64,
) -> Result<Vec<HeldRow>> {
    let mut out: Vec<HeldRow> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (repo, manifest) in manifests {
        let children = c
            .prepare_cached(
                "SELECT r.child, b.size FROM manifest_refs r
                 JOIN blobs b ON b.repo = r.repo AND b.digest = r.child
                 WHERE r.repo = ?1 AND r.manifest = ?2 AND b.linked_at <= ?3",
            )?
            .query_map(params![repo, manifest, cutoff], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (child, size) in children {
            if !seen.insert((repo.clone(), child.clone())) {
                continue;
            }
            let holders = c
                .prepare_cached(
                    "SELECT manifest FROM manifest_refs WHERE repo = ?1 AND child = ?2",
                )?
                .query_map([repo, &child], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            out.push((repo.clone(), child, size.max(0) as u64, holders));
        }
    }
    Ok(out)
}

/// Links (repository, digest) of `digests`, or every link.
pub(super) fn links(c: &Connection, digests: Option<&[String]>) -> Result<Vec<(String, String)>> {
    let map = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
    Ok(match digests {
        None => c
            .prepare_cached("SELECT repo, digest FROM blobs")?
            .query_map([], map)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        Some(ds) => {
            let list = serde_json::to_string(ds).expect("strings serialise");
            c.prepare_cached(
                "SELECT repo, digest FROM blobs WHERE digest IN (SELECT value FROM json_each(?1))",
            )?
            .query_map([list], map)?
            .collect::<rusqlite::Result<Vec<_>>>()?
        }
    })
}

/// Parses the digests of rows the database wrote.
pub(super) fn parsed(rows: Vec<(String, String, u64)>) -> Result<Vec<(String, Digest, u64)>> {
    rows.into_iter()
        .map(|(r, d, n)| Ok((r, parse_digest(d)?, n)))
        .collect()
}
