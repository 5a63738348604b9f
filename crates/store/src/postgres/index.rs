//! The artifact index in PostgreSQL: the columns `manifest_put` fills and the one query that
//! lists and searches them (the same query as SQLite's, in PostgreSQL's words).

use deadpool_postgres::{Object, Transaction};

use crate::index::{
    bounds, keywords_from, keywords_to, split_tags, ArtifactInfo, ArtifactQuery, ArtifactRecord,
};
use crate::meta::{parse_digest, StoredManifest};
use crate::usage::Usage;
use crate::Result;

pub(crate) async fn set_info(
    tx: &Transaction<'_>,
    repo: &str,
    digest: &str,
    info: &ArtifactInfo,
) -> Result<()> {
    let st = tx
        .prepare_cached(
            "UPDATE manifests SET kind = $3, title = $4, version = $5, app_version = $6,
               description = $7, keywords = $8, details = $9, total_size = $10, search_text = $11,
               version_key = $12
             WHERE repo = $1 AND digest = $2",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &repo,
            &digest,
            &info.kind,
            &info.name,
            &info.version,
            &info.app_version,
            &info.description,
            &keywords_to(&info.keywords),
            &info.details,
            &(info.size as i64),
            &info.search_text(repo),
            &info.version_key(),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn artifacts(c: &Object, q: &ArtifactQuery) -> Result<Vec<ArtifactRecord>> {
    let (after_repo, after_digest) = q.after.clone().unwrap_or_default();
    let (low, high) = bounds(q);
    let st = c
        .prepare_cached(
            "SELECT m.repo, m.digest, m.media_type, m.artifact_type, m.kind, m.title, m.version,
                    m.app_version, m.description, m.keywords, m.details, m.total_size, m.created_at,
                    (SELECT string_agg(t.tag, E'\\n') FROM tags t
                      WHERE t.repo = m.repo AND t.digest = m.digest),
                    (SELECT count(*) FROM manifests r WHERE r.repo = m.repo AND r.subject = m.digest)
             FROM manifests m
             WHERE m.kind IS NOT NULL
               AND ($1::text IS NULL OR m.repo = $1)
               AND ($2::text IS NULL OR left(m.repo, length($2)) = $2)
               AND ($3::text IS NULL OR m.kind = $3)
               AND ($4::text IS NULL OR strpos(m.search_text, $4) > 0)
               AND (NOT $5::bool OR EXISTS
                     (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest))
               AND (m.repo, m.digest) > ($6::text, $7::text)
               AND (NOT $9::bool OR m.version_key IS NOT NULL)
               AND ($10::text IS NULL OR m.version_key >= $10)
               AND ($11::text IS NULL OR m.version_key <= $11)
             ORDER BY m.repo, m.digest
             LIMIT $8",
        )
        .await?;
    let rows = c
        .query(
            &st,
            &[
                &q.repository,
                &q.repository_prefix,
                &q.kind,
                &q.text,
                &q.tagged,
                &after_repo,
                &after_digest,
                &(q.limit as i64),
                &q.versions.is_some(),
                &low,
                &high,
            ],
        )
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok(ArtifactRecord {
                repository: r.get(0),
                digest: parse_digest(r.get(1))?,
                media_type: r.get(2),
                artifact_type: r.get(3),
                info: ArtifactInfo {
                    kind: r.get(4),
                    name: r.get(5),
                    version: r.get(6),
                    app_version: r.get(7),
                    description: r.get(8),
                    keywords: keywords_from(r.get(9)),
                    details: r.get(10),
                    size: r.get::<_, Option<i64>>(11).unwrap_or(0) as u64,
                },
                created: r.get(12),
                tags: split_tags(r.get(13)),
                referrers: r.get::<_, i64>(14) as u64,
            })
        })
        .collect()
}

pub(crate) async fn unindexed(c: &Object, limit: usize) -> Result<Vec<(String, StoredManifest)>> {
    let st = c
        .prepare_cached(
            "SELECT repo, digest, media_type, content FROM manifests WHERE kind IS NULL LIMIT $1",
        )
        .await?;
    let rows = c.query(&st, &[&(limit as i64)]).await?;
    rows.into_iter()
        .map(|r| {
            Ok((
                r.get(0),
                StoredManifest {
                    digest: parse_digest(r.get(1))?,
                    media_type: r.get(2),
                    content: r.get::<_, Vec<u8>>(3).into(),
                },
            ))
        })
        .collect()
}

/// One read of what the registry holds (see [`Usage`]), in one snapshot.
pub(crate) async fn usage(c: &mut Object, max_repositories: usize) -> Result<Usage> {
    let tx = c
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    let row = tx
        .query_one(
                "SELECT
                   (SELECT COALESCE(SUM(size), 0)::BIGINT
                      FROM (SELECT MAX(size) AS size FROM blobs GROUP BY digest) b),
                   (SELECT COALESCE(SUM(size), 0)::BIGINT
                      FROM (SELECT MAX(size) AS size FROM manifests GROUP BY digest) m),
                   (SELECT COUNT(*) FROM uploads),
                   (SELECT COUNT(*) FROM manifests m
                     WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)
                       AND (m.subject IS NULL OR NOT EXISTS
                             (SELECT 1 FROM manifests s WHERE s.repo = m.repo AND s.digest = m.subject))
                       AND NOT EXISTS
                             (SELECT 1 FROM manifest_refs r WHERE r.repo = m.repo AND r.child = m.digest))",
            &[],
        )
        .await?;
    let rows = tx
        .query(
            "SELECT repo, kind, COALESCE(SUM(total_size), 0)::BIGINT FROM manifests
             WHERE kind IS NOT NULL GROUP BY repo, kind",
            &[],
        )
        .await?;
    tx.commit().await?;
    let n = |i: usize| row.get::<_, i64>(i).max(0) as u64;
    Ok(Usage {
        blob_bytes: n(0),
        manifest_bytes: n(1),
        uploads: n(2),
        dangling_manifests: n(3),
        by_artifact: Usage::fold_repositories(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2).max(0) as u64))
                .collect(),
            max_repositories,
        ),
    })
}

/// The bytes a namespace holds, each blob and manifest once (see `crate::quota`).
/// `starts_with`, not a range: under the database's collation names need not sort bytewise.
pub(crate) async fn namespace_usage(c: &Object, namespace: &str) -> Result<u64> {
    let under = format!("{namespace}/");
    let row = c
        .query_one(
            "SELECT
               (SELECT COALESCE(SUM(size), 0)::BIGINT FROM (SELECT MAX(size) AS size FROM blobs
                  WHERE repo = $1 OR starts_with(repo, $2) GROUP BY digest) b)
             + (SELECT COALESCE(SUM(size), 0)::BIGINT FROM (SELECT MAX(size) AS size FROM manifests
                  WHERE repo = $1 OR starts_with(repo, $2) GROUP BY digest) m)",
            &[&namespace, &under],
        )
        .await?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// Whether the namespace holds blob `digest`, or `repo` holds manifest `digest`.
pub(crate) async fn namespace_contains(
    c: &Object,
    namespace: &str,
    repo: &str,
    digest: &str,
) -> Result<bool> {
    let under = format!("{namespace}/");
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM blobs
                         WHERE digest = $3 AND (repo = $1 OR starts_with(repo, $2)))
             OR EXISTS (SELECT 1 FROM manifests WHERE repo = $4 AND digest = $3)",
        &[&namespace, &under, &digest, &repo],
    )
    .await?
    .get(0))
}
