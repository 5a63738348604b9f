//! [`MetadataStore`] on PostgreSQL, for several stateless replicas sharing one database.
//!
//! Every method is one statement or one transaction, so replicas need no coordination beyond
//! the database: upload progress advances by compare-and-set, and two pushes of one tag end
//! with one winner. Text keys use the "C" collation so that listings sort and paginate by
//! bytes, exactly as on SQLite, whatever the database's locale.

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use wharf_oci::{Digest, Reference};

use crate::index::{ArtifactInfo, ArtifactQuery, ArtifactRecord};
use crate::meta::{
    now, parse_digest, MetadataStore, NewManifest, ReferrerRecord, StoredManifest, UploadRecord,
};
use crate::{Result, SchemaVersions, StoreError};

mod api_keys;
mod gc;
mod index;
mod schema;
mod tls;
use schema::MIGRATIONS;
use tls::Transport;

/// Links a blob into a repository, or refreshes the link's time: garbage collection spares
/// an unreferenced link for its grace period counted from the last upload or mount.
const LINK_BLOB: &str = "INSERT INTO blobs (repo, digest, size, linked_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (repo, digest) DO UPDATE SET linked_at = EXCLUDED.linked_at";

/// Key of the advisory lock that serialises migrations between replicas starting together.
const MIGRATION_LOCK: i64 = 0x5748_4152_4600; // "WHARF\0"

pub struct PostgresMetadataStore {
    pub(crate) pool: Pool,
    /// The connection holding the collector's gate exclusively, while a step runs: its
    /// deletions run on it (a transaction on another connection would wait for the gate
    /// the step itself holds, and pushes waiting for the gate may hold every other one).
    pub(crate) gate: gc::GateSlot,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Database(with_causes(&e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Database(with_causes(&e))
    }
}

/// The error and every cause under it, on one line: tokio-postgres says only "db error" or
/// "error performing TLS handshake" and keeps the server's or rustls's reason as a source.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

impl PostgresMetadataStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`). Does not migrate.
    pub fn connect(url: &str) -> Result<PostgresMetadataStore> {
        let (url, transport) = tls::split(url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))?;
        let manager_config = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match transport {
            Transport::Plain => Manager::from_config(config, NoTls, manager_config()),
            Transport::Tls(tls) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(*tls);
                Manager::from_config(config, tls, manager_config())
            }
        };
        let pool = Pool::builder(manager)
            .max_size(16)
            .build()
            .map_err(|e| StoreError::Database(e.to_string()))?;
        Ok(PostgresMetadataStore {
            pool,
            gate: Default::default(),
        })
    }

    /// Applies the migrations this binary knows and the database lacks. A database migrated by
    /// a newer Wharf is refused rather than misread.
    pub async fn migrate(&self) -> Result<SchemaVersions> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS wharf_schema (version INTEGER NOT NULL)")
            .await?;
        let row = tx
            .query_opt("SELECT version FROM wharf_schema", &[])
            .await?;
        let before = match row {
            Some(r) => r.get::<_, i32>(0) as usize,
            None => {
                tx.execute("INSERT INTO wharf_schema (version) VALUES (0)", &[])
                    .await?;
                0
            }
        };
        let versions = SchemaVersions::check("the database", before, MIGRATIONS.len())?;
        for i in versions.pending() {
            tx.batch_execute(MIGRATIONS[i]).await?;
        }
        tx.execute(
            "UPDATE wharf_schema SET version = $1",
            &[&(MIGRATIONS.len() as i32)],
        )
        .await?;
        tx.commit().await?;
        Ok(versions)
    }
}

async fn ensure_repo(tx: &deadpool_postgres::Transaction<'_>, repo: &str) -> Result<()> {
    let st = tx
        .prepare_cached("INSERT INTO repositories (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .await?;
    tx.execute(&st, &[&repo]).await?;
    Ok(())
}

fn manifest_row(row: &tokio_postgres::Row) -> Result<StoredManifest> {
    Ok(StoredManifest {
        digest: parse_digest(row.get(0))?,
        media_type: row.get(1),
        content: Bytes::from(row.get::<_, Vec<u8>>(2)),
    })
}

#[async_trait]
impl MetadataStore for PostgresMetadataStore {
    async fn blob_get(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached("SELECT size FROM blobs WHERE repo = $1 AND digest = $2")
            .await?;
        let row = c.query_opt(&st, &[&repo, &digest.to_string()]).await?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    async fn blob_find(&self, digest: &Digest) -> Result<Option<u64>> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached("SELECT size FROM blobs WHERE digest = $1 LIMIT 1")
            .await?;
        let row = c.query_opt(&st, &[&digest.to_string()]).await?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    async fn blob_link(&self, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        gc::gate_shared(&tx).await?;
        ensure_repo(&tx, repo).await?;
        let st = tx.prepare_cached(LINK_BLOB).await?;
        tx.execute(&st, &[&repo, &digest.to_string(), &(size as i64), &now()])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn blob_unlink(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached("DELETE FROM blobs WHERE repo = $1 AND digest = $2")
            .await?;
        Ok(c.execute(&st, &[&repo, &digest.to_string()]).await? > 0)
    }

    async fn upload_create(&self, repo: &str, id: &str, state: &[u8]) -> Result<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        ensure_repo(&tx, repo).await?;
        let st = tx
            .prepare_cached(
                "INSERT INTO uploads (id, repo, size, state, created_at, updated_at)
                 VALUES ($1, $2, 0, $3, $4, $4)",
            )
            .await?;
        tx.execute(&st, &[&id, &repo, &state, &now()]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn upload_get(&self, id: &str) -> Result<Option<UploadRecord>> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached("SELECT repo, size, state FROM uploads WHERE id = $1")
            .await?;
        let row = c.query_opt(&st, &[&id]).await?;
        Ok(row.map(|r| UploadRecord {
            id: id.to_string(),
            repo: r.get(0),
            size: r.get::<_, i64>(1) as u64,
            state: r.get(2),
        }))
    }

    async fn upload_advance(&self, id: &str, from: u64, to: u64, state: &[u8]) -> Result<bool> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached(
                "UPDATE uploads SET size = $3, state = $4, updated_at = $5
                 WHERE id = $1 AND size = $2",
            )
            .await?;
        let n = c
            .execute(&st, &[&id, &(from as i64), &(to as i64), &state, &now()])
            .await?;
        Ok(n == 1)
    }

    async fn upload_complete(&self, id: &str, blob: Option<(&Digest, u64)>) -> Result<bool> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let st = tx
            .prepare_cached("DELETE FROM uploads WHERE id = $1 RETURNING repo")
            .await?;
        let Some(row) = tx.query_opt(&st, &[&id]).await? else {
            return Ok(false);
        };
        let repo: String = row.get(0);
        if let Some((digest, size)) = blob {
            gc::gate_shared(&tx).await?;
            let st = tx.prepare_cached(LINK_BLOB).await?;
            tx.execute(&st, &[&repo, &digest.to_string(), &(size as i64), &now()])
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn uploads_expire(
        &self,
        updated_before: i64,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let c = self.pool.get().await?;
        // SKIP LOCKED: a replica expiring at the same moment takes other rows, never these.
        let st = c
            .prepare_cached(
                "DELETE FROM uploads WHERE id IN
                   (SELECT id FROM uploads WHERE updated_at < $1
                    ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING id, state",
            )
            .await?;
        let rows = c.query(&st, &[&updated_before, &(limit as i64)]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn upload_ids(&self) -> Result<Vec<String>> {
        let c = self.pool.get().await?;
        let rows = c.query("SELECT id FROM uploads", &[]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn manifest_put(&self, m: NewManifest) -> Result<Option<Digest>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        gc::gate_shared(&tx).await?;
        let repo = m.repo.as_str();
        ensure_repo(&tx, repo).await?;
        let has_blob = tx
            .prepare_cached("SELECT 1 FROM blobs WHERE repo = $1 AND digest = $2")
            .await?;
        for d in &m.blobs {
            if tx
                .query_opt(&has_blob, &[&repo, &d.to_string()])
                .await?
                .is_none()
            {
                return Err(StoreError::ManifestBlobUnknown(d.clone()));
            }
        }
        let has_manifest = tx
            .prepare_cached("SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2")
            .await?;
        for d in &m.manifests {
            if tx
                .query_opt(&has_manifest, &[&repo, &d.to_string()])
                .await?
                .is_none()
            {
                return Err(StoreError::ManifestBlobUnknown(d.clone()));
            }
        }
        let digest = m.digest.to_string();
        let t = now();
        let st = tx
            .prepare_cached(
                "INSERT INTO manifests
                   (repo, digest, media_type, size, content, subject, artifact_type, annotations,
                    created_at, pushed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
                 ON CONFLICT (repo, digest)
                 DO UPDATE SET media_type = EXCLUDED.media_type, pushed_at = EXCLUDED.pushed_at",
            )
            .await?;
        tx.execute(
            &st,
            &[
                &repo,
                &digest,
                &m.media_type,
                &(m.content.len() as i64),
                &&m.content[..],
                &m.subject.as_ref().map(|d| d.to_string()),
                &m.artifact_type,
                &m.annotations,
                &t,
            ],
        )
        .await?;
        index::set_info(&tx, repo, &digest, &m.info).await?;
        let refs = tx
            .prepare_cached(
                "INSERT INTO manifest_refs (repo, child, manifest) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        for child in m.blobs.iter().chain(&m.manifests) {
            tx.execute(&refs, &[&repo, &child.to_string(), &digest])
                .await?;
        }
        let mut moved_from = None;
        if let Some(tag) = &m.tag {
            // Locked until commit: the digest read is the one this put replaces.
            let before = tx
                .query_opt(
                    "SELECT digest FROM tags WHERE repo = $1 AND tag = $2 FOR UPDATE",
                    &[&repo, tag],
                )
                .await?
                .map(|r| r.get::<_, String>(0))
                .filter(|d| *d != digest);
            moved_from = before.map(parse_digest).transpose()?;
            let st = tx
                .prepare_cached(
                    "INSERT INTO tags (repo, tag, digest, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (repo, tag)
                     DO UPDATE SET digest = EXCLUDED.digest, updated_at = EXCLUDED.updated_at
                     WHERE $5 OR tags.digest = EXCLUDED.digest",
                )
                .await?;
            if tx
                .execute(&st, &[&repo, tag, &digest, &t, &m.tag_may_move])
                .await?
                == 0
            {
                return Err(StoreError::TagProtected(tag.clone()));
            }
        }
        tx.commit().await?;
        Ok(moved_from)
    }

    async fn manifest_get(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>> {
        let c = self.pool.get().await?;
        let row = match reference {
            Reference::Digest(d) => {
                let st = c
                    .prepare_cached(
                        "SELECT digest, media_type, content FROM manifests
                         WHERE repo = $1 AND digest = $2",
                    )
                    .await?;
                c.query_opt(&st, &[&repo, &d.to_string()]).await?
            }
            Reference::Tag(t) => {
                let st = c
                    .prepare_cached(
                        "SELECT m.digest, m.media_type, m.content FROM tags t
                         JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
                         WHERE t.repo = $1 AND t.tag = $2",
                    )
                    .await?;
                c.query_opt(&st, &[&repo, t]).await?
            }
        };
        row.as_ref().map(manifest_row).transpose()
    }

    async fn manifest_delete(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let d = digest.to_string();
        let n = tx
            .execute(
                "DELETE FROM manifests WHERE repo = $1 AND digest = $2",
                &[&repo, &d],
            )
            .await?;
        tx.execute(
            "DELETE FROM tags WHERE repo = $1 AND digest = $2",
            &[&repo, &d],
        )
        .await?;
        tx.execute(
            "DELETE FROM manifest_refs WHERE repo = $1 AND manifest = $2",
            &[&repo, &d],
        )
        .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn tag_delete(&self, repo: &str, tag: &str) -> Result<bool> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached("DELETE FROM tags WHERE repo = $1 AND tag = $2")
            .await?;
        Ok(c.execute(&st, &[&repo, &tag]).await? > 0)
    }

    async fn tags_of(&self, repo: &str, digest: &Digest) -> Result<Vec<String>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT tag FROM tags WHERE repo = $1 AND digest = $2 ORDER BY tag",
                &[&repo, &digest.to_string()],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn tags(&self, repo: &str, last: Option<&str>, n: usize) -> Result<Option<Vec<String>>> {
        let c = self.pool.get().await?;
        let known = c
            .prepare_cached("SELECT 1 FROM repositories WHERE name = $1")
            .await?;
        if c.query_opt(&known, &[&repo]).await?.is_none() {
            return Ok(None);
        }
        let st = c
            .prepare_cached(
                "SELECT tag FROM tags WHERE repo = $1 AND tag > $2 ORDER BY tag LIMIT $3",
            )
            .await?;
        let rows = c
            .query(&st, &[&repo, &last.unwrap_or(""), &(n as i64)])
            .await?;
        Ok(Some(rows.iter().map(|r| r.get(0)).collect()))
    }

    async fn repositories(&self, last: Option<&str>, n: usize) -> Result<Vec<String>> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached(
                "SELECT name FROM repositories r WHERE name > $1
                   AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo = r.name)
                 ORDER BY name LIMIT $2",
            )
            .await?;
        let rows = c.query(&st, &[&last.unwrap_or(""), &(n as i64)]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn artifacts(&self, q: &ArtifactQuery) -> Result<Vec<ArtifactRecord>> {
        let c = self.pool.get().await?;
        index::artifacts(&c, q).await
    }

    async fn manifests_unindexed(&self, limit: usize) -> Result<Vec<(String, StoredManifest)>> {
        let c = self.pool.get().await?;
        index::unindexed(&c, limit).await
    }

    async fn manifest_set_info(
        &self,
        repo: &str,
        digest: &Digest,
        info: &ArtifactInfo,
    ) -> Result<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        index::set_info(&tx, repo, &digest.to_string(), info).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn blob_digests(&self, after: Option<&str>, limit: usize) -> Result<Vec<(Digest, u64)>> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached(
                "SELECT digest, MAX(size) FROM blobs WHERE digest > $1
                 GROUP BY digest ORDER BY digest LIMIT $2",
            )
            .await?;
        let rows = c
            .query(&st, &[&after.unwrap_or(""), &(limit as i64)])
            .await?;
        rows.iter()
            .map(|r| Ok((parse_digest(r.get(0))?, r.get::<_, i64>(1).max(0) as u64)))
            .collect()
    }

    async fn blob_link_if_linked(&self, repo: &str, digest: &Digest, size: u64) -> Result<bool> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        gc::gate_shared(&tx).await?;
        ensure_repo(&tx, repo).await?;
        let n = tx
            .execute(
                "INSERT INTO blobs (repo, digest, size, linked_at)
                 SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM blobs WHERE digest = $2)
                 ON CONFLICT (repo, digest) DO UPDATE SET linked_at = EXCLUDED.linked_at",
                &[&repo, &digest.to_string(), &(size as i64), &now()],
            )
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn usage(&self, max_repositories: usize) -> Result<crate::Usage> {
        let mut c = self.pool.get().await?;
        index::usage(&mut c, max_repositories).await
    }

    async fn scheduled_pass_lock(&self, name: &str) -> Result<Option<crate::gc::GcLock>> {
        gc::scheduled_pass_lock(&self.pool, name).await
    }

    async fn state_get(&self, key: &str) -> Result<Option<i64>> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached("SELECT value FROM registry_state WHERE key = $1")
            .await?;
        Ok(c.query_opt(&st, &[&key]).await?.map(|r| r.get(0)))
    }

    async fn state_set(&self, key: &str, value: i64) -> Result<()> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO registry_state (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            )
            .await?;
        c.execute(&st, &[&key, &value]).await?;
        Ok(())
    }

    async fn namespace_lock(&self, namespace: &str) -> Result<crate::gc::GcLock> {
        gc::namespace_lock(&self.pool, namespace).await
    }

    async fn namespace_contains(
        &self,
        namespace: &str,
        repo: &str,
        digest: &Digest,
    ) -> Result<bool> {
        let c = self.pool.get().await?;
        index::namespace_contains(&c, namespace, repo, &digest.to_string()).await
    }

    async fn namespace_usage(&self, namespace: &str) -> Result<u64> {
        let c = self.pool.get().await?;
        index::namespace_usage(&c, namespace).await
    }

    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<ReferrerRecord>> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached(
                "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
                 WHERE repo = $1 AND subject = $2 ORDER BY digest",
            )
            .await?;
        let rows = c.query(&st, &[&repo, &subject.to_string()]).await?;
        rows.into_iter()
            .map(|r| {
                Ok(ReferrerRecord {
                    digest: parse_digest(r.get(0))?,
                    media_type: r.get(1),
                    size: r.get::<_, i64>(2) as u64,
                    artifact_type: r.get(3),
                    annotations: r.get(4),
                })
            })
            .collect()
    }
}
