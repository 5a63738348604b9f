//! The artifact index in SQLite: the columns `manifest_put` fills and the one query that
//! lists and searches them.

use rusqlite::{params, Connection};

use crate::index::{
    bounds, keywords_from, keywords_to, split_tags, ArtifactInfo, ArtifactQuery, ArtifactRecord,
};
use crate::meta::{parse_digest, StoredManifest};
use crate::usage::Usage;
use crate::Result;

pub(super) fn set_info(
    tx: &Connection,
    repo: &str,
    digest: &str,
    info: &ArtifactInfo,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE manifests SET kind = ?3, title = ?4, version = ?5, app_version = ?6,
           description = ?7, keywords = ?8, details = ?9, total_size = ?10, search_text = ?11,
           version_key = ?12
         WHERE repo = ?1 AND digest = ?2",
    )?
    .execute(params![
        repo,
        digest,
        info.kind,
        info.name,
        info.version,
        info.app_version,
        info.description,
        keywords_to(&info.keywords),
        info.details,
        info.size as i64,
        info.search_text(repo),
        info.version_key(),
    ])?;
    Ok(())
}

pub(super) fn artifacts(c: &Connection, q: &ArtifactQuery) -> Result<Vec<ArtifactRecord>> {
    let (after_repo, after_digest) = q.after.clone().unwrap_or_default();
    let (low, high) = bounds(q);
    let mut st = c.prepare_cached(
        "SELECT m.repo, m.digest, m.media_type, m.artifact_type, m.kind, m.title, m.version,
                m.app_version, m.description, m.keywords, m.details, m.total_size, m.created_at,
                (SELECT group_concat(t.tag, char(10)) FROM tags t
                  WHERE t.repo = m.repo AND t.digest = m.digest),
                (SELECT count(*) FROM manifests r WHERE r.repo = m.repo AND r.subject = m.digest)
         FROM manifests m
         WHERE m.kind IS NOT NULL
           AND (?1 IS NULL OR m.repo = ?1)
           AND (?2 IS NULL OR substr(m.repo, 1, length(?2)) = ?2)
           AND (?3 IS NULL OR m.kind = ?3)
           AND (?4 IS NULL OR instr(m.search_text, ?4) > 0)
           AND (NOT ?5 OR EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest))
           AND (m.repo, m.digest) > (?6, ?7)
           AND (NOT ?9 OR m.version_key IS NOT NULL)
           AND (?10 IS NULL OR m.version_key >= ?10)
           AND (?11 IS NULL OR m.version_key <= ?11)
         ORDER BY m.repo, m.digest
         LIMIT ?8",
    )?;
    let rows = st
        .query_map(
            params![
                q.repository,
                q.repository_prefix,
                q.kind,
                q.text,
                q.tagged,
                after_repo,
                after_digest,
                q.limit as i64,
                q.versions.is_some(),
                low,
                high
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    ArtifactInfo {
                        kind: r.get(4)?,
                        name: r.get(5)?,
                        version: r.get(6)?,
                        app_version: r.get(7)?,
                        description: r.get(8)?,
                        keywords: keywords_from(r.get(9)?),
                        details: r.get(10)?,
                        size: r.get::<_, Option<i64>>(11)?.unwrap_or(0) as u64,
                    },
                    r.get::<_, i64>(12)?,
                    r.get::<_, Option<String>>(13)?,
                    r.get::<_, i64>(14)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(
            |(repository, d, media_type, artifact_type, info, created, tags, referrers)| {
                Ok(ArtifactRecord {
                    repository,
                    digest: parse_digest(d)?,
                    media_type,
                    artifact_type,
                    info,
                    created,
                    tags: split_tags(tags),
                    referrers: referrers as u64,
                })
            },
        )
        .collect()
}

pub(super) fn unindexed(c: &Connection, limit: usize) -> Result<Vec<(String, StoredManifest)>> {
    let mut st = c.prepare_cached(
        "SELECT repo, digest, media_type, content FROM manifests WHERE kind IS NULL LIMIT ?1",
    )?;
    let rows = st
        .query_map([limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(repo, d, media_type, content)| {
            Ok((
                repo,
                StoredManifest {
                    digest: parse_digest(d)?,
                    media_type,
                    content: content.into(),
                },
            ))
        })
        .collect()
}

/// One read of what the registry holds (see [`Usage`]).
pub(super) fn usage(c: &Connection, max_repositories: usize) -> Result<Usage> {
    let one = |sql: &str| -> rusqlite::Result<u64> {
        c.prepare_cached(sql)?
            .query_row([], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
    };
    let blob_bytes = one(
        "SELECT COALESCE(SUM(size), 0) FROM (SELECT MAX(size) AS size FROM blobs GROUP BY digest)",
    )?;
    let manifest_bytes = one(
        "SELECT COALESCE(SUM(size), 0) FROM (SELECT MAX(size) AS size FROM manifests GROUP BY digest)",
    )?;
    let uploads = one("SELECT COUNT(*) FROM uploads")?;
    let dangling_manifests = one(
        "SELECT COUNT(*) FROM manifests m
         WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)
           AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = m.repo AND r.child = m.digest)
           AND (m.subject IS NULL OR NOT EXISTS
                 (SELECT 1 FROM manifests s WHERE s.repo = m.repo AND s.digest = m.subject))",
    )?;
    let rows = c
        .prepare_cached(
            "SELECT repo, kind, COALESCE(SUM(total_size), 0) FROM manifests
             WHERE kind IS NOT NULL GROUP BY repo, kind",
        )?
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?.max(0) as u64,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Usage {
        blob_bytes,
        manifest_bytes,
        uploads,
        dangling_manifests,
        by_artifact: Usage::fold_repositories(rows, max_repositories),
    })
}

/// The bytes a namespace holds, each blob and manifest once (see `crate::quota`). Names sort
/// bytewise here, so `ns/` up to `ns0` (the byte after `/`) is exactly what lies under
/// `ns/`, read off the primary keys.
pub(super) fn namespace_usage(c: &Connection, namespace: &str) -> Result<u64> {
    let (under, past) = (format!("{namespace}/"), format!("{namespace}0"));
    let used: i64 = c
        .prepare_cached(
            "SELECT
               (SELECT COALESCE(SUM(size), 0) FROM (SELECT MAX(size) AS size FROM blobs
                  WHERE repo = ?1 OR (repo >= ?2 AND repo < ?3) GROUP BY digest))
             + (SELECT COALESCE(SUM(size), 0) FROM (SELECT MAX(size) AS size FROM manifests
                  WHERE repo = ?1 OR (repo >= ?2 AND repo < ?3) GROUP BY digest))",
        )?
        .query_row(rusqlite::params![namespace, under, past], |r| r.get(0))?;
    Ok(used.max(0) as u64)
}

/// Whether the namespace holds blob `digest` (by the blobs' digest index: a namespace may
/// hold many blobs, a digest is in few repositories), or `repo` holds manifest `digest`.
pub(super) fn namespace_contains(
    c: &Connection,
    namespace: &str,
    repo: &str,
    digest: &str,
) -> Result<bool> {
    let (under, past) = (format!("{namespace}/"), format!("{namespace}0"));
    Ok(c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM blobs INDEXED BY blobs_by_digest
                         WHERE digest = ?4 AND (repo = ?1 OR (repo >= ?2 AND repo < ?3)))
             OR EXISTS (SELECT 1 FROM manifests WHERE repo = ?5 AND digest = ?4)",
    )?
    .query_row(
        rusqlite::params![namespace, under, past, digest, repo],
        |r| r.get(0),
    )?)
}
