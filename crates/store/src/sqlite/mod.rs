//! [`MetadataStore`] on SQLite, the embedded default.
//!
//! WAL mode with `synchronous=FULL`: a commit is on disk before the call returns, and readers
//! never wait for the writer. Reads use a small pool of connections on tokio's blocking pool.
//!
//! Writes go to one writer thread (SQLite admits one writer at a time anyway) that commits in
//! groups: it takes every write waiting, runs each in a savepoint of one transaction (so a
//! failing write rolls back alone), commits once, and only then answers them all. Concurrent
//! pushes share one fsync instead of queueing behind each other's.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use wharf_oci::{Digest, Reference};

use crate::index::{ArtifactInfo, ArtifactQuery, ArtifactRecord};
use crate::meta::{
    now, parse_digest, MetadataStore, NewManifest, ReferrerRecord, StoredManifest, UploadRecord,
};
use crate::{Result, SchemaVersions, StoreError};

mod api_keys;
mod failure;
mod gc;
mod index;
mod schema;
mod writer;
use failure::CommitFailure;
use schema::MIGRATIONS;
use writer::{writer_thread, WriteJob};

/// Links a blob into a repository, or refreshes the link's time: garbage collection spares
/// an unreferenced link for its grace period counted from the last upload or mount.
const LINK_BLOB: &str = "INSERT INTO blobs (repo, digest, size, linked_at) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (repo, digest) DO UPDATE SET linked_at = excluded.linked_at";

const MAX_IDLE_READERS: usize = 16;

pub struct SqliteMetadataStore {
    path: PathBuf,
    versions: SchemaVersions,
    writer: std::sync::mpsc::Sender<WriteJob>,
    /// Why the writer last could not start a transaction, for the writes it had to drop.
    last_failure: Arc<Mutex<Option<CommitFailure>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

impl SqliteMetadataStore {
    /// Opens the database at `path`, creating it and applying migrations as needed. A database
    /// written by a newer Wharf is refused rather than misread.
    pub fn open(path: impl Into<PathBuf>) -> Result<SqliteMetadataStore> {
        let path = path.into();
        let mut conn = open_connection(&path)?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let versions =
            SchemaVersions::check(&path.display().to_string(), version, MIGRATIONS.len())?;
        for i in versions.pending() {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
            tx.execute_batch(MIGRATIONS[i])?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        let (writer, jobs) = std::sync::mpsc::channel();
        let last_failure = Arc::new(Mutex::new(None));
        std::thread::Builder::new()
            .name("wharf-sqlite-writer".into())
            .spawn({
                let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
                let last_failure = last_failure.clone();
                move || writer_thread(conn, dir, last_failure, jobs)
            })?;
        Ok(SqliteMetadataStore {
            path,
            versions,
            writer,
            last_failure,
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The schema version found when opening, and the one now in place.
    pub fn schema_versions(&self) -> SchemaVersions {
        self.versions
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let idle = pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match idle {
                Some(c) => c,
                None => open_connection(&path)?,
            };
            let out = f(&conn);
            let mut idle = pool.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            out
        })
        .await?
    }
}

fn ensure_repo(tx: &Connection, repo: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO repositories (name) VALUES (?1)")?
        .execute([repo])?;
    Ok(())
}

#[async_trait]
impl MetadataStore for SqliteMetadataStore {
    async fn blob_get(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT size FROM blobs WHERE repo = ?1 AND digest = ?2")?
                    .query_row([&repo, &digest], |r| r.get::<_, i64>(0))
                    .optional()?
                    .map(|s| s as u64),
            )
        })
        .await
    }

    async fn blob_find(&self, digest: &Digest) -> Result<Option<u64>> {
        let digest = digest.to_string();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT size FROM blobs WHERE digest = ?1 LIMIT 1")?
                    .query_row([&digest], |r| r.get::<_, i64>(0))
                    .optional()?
                    .map(|s| s as u64),
            )
        })
        .await
    }

    async fn blob_link(&self, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.write(move |tx| {
            ensure_repo(tx, &repo)?;
            tx.prepare_cached(LINK_BLOB)?
                .execute(params![repo, digest, size as i64, now()])?;
            Ok(())
        })
        .await
    }

    async fn blob_unlink(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.write(move |tx| {
            Ok(tx
                .prepare_cached("DELETE FROM blobs WHERE repo = ?1 AND digest = ?2")?
                .execute([repo, digest])?
                > 0)
        })
        .await
    }

    async fn upload_create(&self, repo: &str, id: &str, state: &[u8]) -> Result<()> {
        let (repo, id, state) = (repo.to_string(), id.to_string(), state.to_vec());
        self.write(move |tx| {
            ensure_repo(tx, &repo)?;
            let t = now();
            tx.prepare_cached(
                "INSERT INTO uploads (id, repo, size, state, created_at, updated_at)
                 VALUES (?1, ?2, 0, ?3, ?4, ?4)",
            )?
            .execute(params![id, repo, state, t])?;
            Ok(())
        })
        .await
    }

    async fn upload_get(&self, id: &str) -> Result<Option<UploadRecord>> {
        let id = id.to_string();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT repo, size, state FROM uploads WHERE id = ?1")?
                    .query_row([&id], |r| {
                        Ok(UploadRecord {
                            id: id.clone(),
                            repo: r.get(0)?,
                            size: r.get::<_, i64>(1)? as u64,
                            state: r.get(2)?,
                        })
                    })
                    .optional()?,
            )
        })
        .await
    }

    async fn upload_advance(&self, id: &str, from: u64, to: u64, state: &[u8]) -> Result<bool> {
        let (id, state) = (id.to_string(), state.to_vec());
        self.write(move |tx| {
            Ok(tx
                .prepare_cached(
                    "UPDATE uploads SET size = ?3, state = ?4, updated_at = ?5
                     WHERE id = ?1 AND size = ?2",
                )?
                .execute(params![id, from as i64, to as i64, state, now()])?
                == 1)
        })
        .await
    }

    async fn upload_complete(&self, id: &str, blob: Option<(&Digest, u64)>) -> Result<bool> {
        let id = id.to_string();
        let blob = blob.map(|(d, s)| (d.to_string(), s as i64));
        self.write(move |tx| {
            let repo: Option<String> = tx
                .prepare_cached("DELETE FROM uploads WHERE id = ?1 RETURNING repo")?
                .query_row([&id], |r| r.get(0))
                .optional()?;
            let Some(repo) = repo else { return Ok(false) };
            if let Some((digest, size)) = blob {
                tx.prepare_cached(LINK_BLOB)?
                    .execute(params![repo, digest, size, now()])?;
            }
            Ok(true)
        })
        .await
    }

    async fn uploads_expire(
        &self,
        updated_before: i64,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        self.write(move |tx| {
            let mut st = tx.prepare_cached(
                "DELETE FROM uploads WHERE id IN
                   (SELECT id FROM uploads WHERE updated_at < ?1 LIMIT ?2)
                 RETURNING id, state",
            )?;
            let rows = st
                .query_map(params![updated_before, limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<Vec<(String, Vec<u8>)>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn upload_ids(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare("SELECT id FROM uploads")?;
            let ids = st
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ids)
        })
        .await
    }

    async fn manifest_put(&self, m: NewManifest) -> Result<Option<Digest>> {
        self.write(move |tx| {
            let repo = &m.repo;
            ensure_repo(tx, repo)?;
            {
                let mut has_blob =
                    tx.prepare_cached("SELECT 1 FROM blobs WHERE repo = ?1 AND digest = ?2")?;
                for d in &m.blobs {
                    if !has_blob.exists(params![repo, d.to_string()])? {
                        return Err(StoreError::ManifestBlobUnknown(d.clone()));
                    }
                }
                let mut has_manifest =
                    tx.prepare_cached("SELECT 1 FROM manifests WHERE repo = ?1 AND digest = ?2")?;
                for d in &m.manifests {
                    if !has_manifest.exists(params![repo, d.to_string()])? {
                        return Err(StoreError::ManifestBlobUnknown(d.clone()));
                    }
                }
            }
            let digest = m.digest.to_string();
            let t = now();
            tx.prepare_cached(
                "INSERT INTO manifests
                   (repo, digest, media_type, size, content, subject, artifact_type, annotations, created_at, pushed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
                 ON CONFLICT (repo, digest)
                 DO UPDATE SET media_type = excluded.media_type, pushed_at = excluded.pushed_at",
            )?
            .execute(params![
                repo,
                digest,
                m.media_type,
                m.content.len() as i64,
                &m.content[..],
                m.subject.as_ref().map(|d| d.to_string()),
                m.artifact_type,
                m.annotations,
                t
            ])?;
            index::set_info(tx, repo, &digest, &m.info)?;
            {
                let mut refs = tx.prepare_cached(
                    "INSERT OR IGNORE INTO manifest_refs (repo, child, manifest) VALUES (?1, ?2, ?3)",
                )?;
                for child in m.blobs.iter().chain(&m.manifests) {
                    refs.execute(params![repo, child.to_string(), digest])?;
                }
            }
            let mut moved_from = None;
            if let Some(tag) = &m.tag {
                moved_from = tx
                    .prepare_cached("SELECT digest FROM tags WHERE repo = ?1 AND tag = ?2")?
                    .query_row(params![repo, tag], |r| r.get::<_, String>(0))
                    .optional()?
                    .filter(|d| *d != digest);
                let written = tx
                    .prepare_cached(
                        "INSERT INTO tags (repo, tag, digest, updated_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at
                         WHERE ?5 OR tags.digest = excluded.digest",
                    )?
                    .execute(params![repo, tag, digest, t, m.tag_may_move])?;
                if written == 0 {
                    return Err(StoreError::TagProtected(tag.clone()));
                }
            }
            Ok(moved_from)
        })
        .await?
        .map(crate::meta::parse_digest)
        .transpose()
    }

    async fn manifest_get(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>> {
        let repo = repo.to_string();
        let reference = reference.clone();
        self.read(move |c| {
            let row = match &reference {
                Reference::Digest(d) => c
                    .prepare_cached(
                        "SELECT digest, media_type, content FROM manifests WHERE repo = ?1 AND digest = ?2",
                    )?
                    .query_row([&repo, &d.to_string()], |r| {
                        Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, Vec<u8>>(2)?))
                    })
                    .optional()?,
                Reference::Tag(t) => c
                    .prepare_cached(
                        "SELECT m.digest, m.media_type, m.content FROM tags t
                         JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
                         WHERE t.repo = ?1 AND t.tag = ?2",
                    )?
                    .query_row([&repo, t], |r| {
                        Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, Vec<u8>>(2)?))
                    })
                    .optional()?,
            };
            row.map(|(digest, media_type, content)| {
                Ok(StoredManifest {
                    digest: parse_digest(digest)?,
                    media_type,
                    content: Bytes::from(content),
                })
            })
            .transpose()
        })
        .await
    }

    async fn manifest_delete(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.write(move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM manifests WHERE repo = ?1 AND digest = ?2")?
                .execute([&repo, &digest])?;
            tx.prepare_cached("DELETE FROM tags WHERE repo = ?1 AND digest = ?2")?
                .execute([&repo, &digest])?;
            tx.prepare_cached("DELETE FROM manifest_refs WHERE repo = ?1 AND manifest = ?2")?
                .execute([&repo, &digest])?;
            Ok(n > 0)
        })
        .await
    }

    async fn tag_delete(&self, repo: &str, tag: &str) -> Result<bool> {
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.write(move |tx| {
            Ok(tx
                .prepare_cached("DELETE FROM tags WHERE repo = ?1 AND tag = ?2")?
                .execute([repo, tag])?
                > 0)
        })
        .await
    }

    async fn tags_of(&self, repo: &str, digest: &Digest) -> Result<Vec<String>> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT tag FROM tags WHERE repo = ?1 AND digest = ?2 ORDER BY tag",
            )?
            .query_map([&repo, &digest], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn tags(&self, repo: &str, last: Option<&str>, n: usize) -> Result<Option<Vec<String>>> {
        let (repo, last) = (repo.to_string(), last.unwrap_or("").to_string());
        self.read(move |c| {
            let known = c
                .prepare_cached("SELECT 1 FROM repositories WHERE name = ?1")?
                .exists([&repo])?;
            if !known {
                return Ok(None);
            }
            let mut st = c.prepare_cached(
                "SELECT tag FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3",
            )?;
            let tags = st
                .query_map(params![repo, last, n as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(Some(tags))
        })
        .await
    }

    async fn repositories(&self, last: Option<&str>, n: usize) -> Result<Vec<String>> {
        let last = last.unwrap_or("").to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT name FROM repositories r WHERE name > ?1
                   AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo = r.name)
                 ORDER BY name LIMIT ?2",
            )?;
            let names = st
                .query_map(params![last, n as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(names)
        })
        .await
    }

    async fn artifacts(&self, q: &ArtifactQuery) -> Result<Vec<ArtifactRecord>> {
        let q = q.clone();
        self.read(move |c| index::artifacts(c, &q)).await
    }

    async fn manifests_unindexed(&self, limit: usize) -> Result<Vec<(String, StoredManifest)>> {
        self.read(move |c| index::unindexed(c, limit)).await
    }

    async fn manifest_set_info(
        &self,
        repo: &str,
        digest: &Digest,
        info: &ArtifactInfo,
    ) -> Result<()> {
        let (repo, digest, info) = (repo.to_string(), digest.to_string(), info.clone());
        self.write(move |tx| Ok(index::set_info(tx, &repo, &digest, &info)?))
            .await
    }

    async fn blob_digests(&self, after: Option<&str>, limit: usize) -> Result<Vec<(Digest, u64)>> {
        let after = after.unwrap_or("").to_string();
        let rows = self
            .read(move |c| {
                Ok(c.prepare_cached(
                    "SELECT digest, MAX(size) FROM blobs WHERE digest > ?1
                     GROUP BY digest ORDER BY digest LIMIT ?2",
                )?
                .query_map(params![after, limit as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
        rows.into_iter()
            .map(|(d, n)| Ok((parse_digest(d)?, n.max(0) as u64)))
            .collect()
    }

    async fn blob_link_if_linked(&self, repo: &str, digest: &Digest, size: u64) -> Result<bool> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.write(move |tx| {
            ensure_repo(tx, &repo)?;
            Ok(tx
                .prepare_cached(
                    "INSERT INTO blobs (repo, digest, size, linked_at)
                     SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM blobs WHERE digest = ?2)
                     ON CONFLICT (repo, digest) DO UPDATE SET linked_at = excluded.linked_at",
                )?
                .execute(params![repo, digest, size as i64, now()])?
                > 0)
        })
        .await
    }

    async fn usage(&self, max_repositories: usize) -> Result<crate::Usage> {
        self.read(move |c| index::usage(c, max_repositories)).await
    }

    async fn namespace_contains(
        &self,
        namespace: &str,
        repo: &str,
        digest: &Digest,
    ) -> Result<bool> {
        let (namespace, repo) = (namespace.to_string(), repo.to_string());
        let digest = digest.to_string();
        self.read(move |c| index::namespace_contains(c, &namespace, &repo, &digest))
            .await
    }

    async fn state_get(&self, key: &str) -> Result<Option<i64>> {
        let key = key.to_string();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT value FROM registry_state WHERE key = ?1")?
                    .query_row([key], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    async fn state_set(&self, key: &str, value: i64) -> Result<()> {
        let key = key.to_string();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO registry_state (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
            Ok(())
        })
        .await
    }

    async fn namespace_usage(&self, namespace: &str) -> Result<u64> {
        let namespace = namespace.to_string();
        self.read(move |c| index::namespace_usage(c, &namespace))
            .await
    }

    async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<ReferrerRecord>> {
        let (repo, subject) = (repo.to_string(), subject.to_string());
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
                 WHERE repo = ?1 AND subject = ?2 ORDER BY digest",
            )?;
            let rows = st
                .query_map([&repo, &subject], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(d, media_type, size, artifact_type, annotations)| {
                    Ok(ReferrerRecord {
                        digest: parse_digest(d)?,
                        media_type,
                        size: size as u64,
                        artifact_type,
                        annotations,
                    })
                })
                .collect()
        })
        .await
    }
}
