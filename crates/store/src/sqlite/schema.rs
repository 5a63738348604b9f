//! The SQLite schema, as the migrations that build it.

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE repositories (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE blobs (
    repo   TEXT NOT NULL,
    digest TEXT NOT NULL,
    size   INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX blobs_by_digest ON blobs (digest);
CREATE TABLE manifests (
    repo          TEXT NOT NULL,
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    size          INTEGER NOT NULL,
    content       BLOB NOT NULL,
    subject       TEXT,
    artifact_type TEXT,
    annotations   TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repo, subject) WHERE subject IS NOT NULL;
CREATE TABLE tags (
    repo       TEXT NOT NULL,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, tag)
) WITHOUT ROWID;
CREATE INDEX tags_by_digest ON tags (repo, digest);
CREATE TABLE uploads (
    id         TEXT PRIMARY KEY,
    repo       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE uploads ADD COLUMN state BLOB NOT NULL DEFAULT x'';
"#,
    r#"
CREATE TABLE api_keys (
    name          TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    grants        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE manifests ADD COLUMN kind TEXT;
ALTER TABLE manifests ADD COLUMN title TEXT;
ALTER TABLE manifests ADD COLUMN version TEXT;
ALTER TABLE manifests ADD COLUMN app_version TEXT;
ALTER TABLE manifests ADD COLUMN description TEXT;
ALTER TABLE manifests ADD COLUMN keywords TEXT;
ALTER TABLE manifests ADD COLUMN details TEXT;
ALTER TABLE manifests ADD COLUMN total_size INTEGER;
ALTER TABLE manifests ADD COLUMN search_text TEXT;
ALTER TABLE manifests ADD COLUMN version_key TEXT;
-- Search scans this instead of the table (whose rows carry the manifests' bytes), in the
-- order results are returned, so a page is read only as far as it fills.
CREATE INDEX manifests_search ON manifests (repo, digest, kind, version_key, search_text)
  WHERE kind IS NOT NULL;
"#,
    r#"
-- Garbage collection: when a blob was last linked (uploaded, mounted) into a repository, and
-- what each manifest references (config, layers, index children), so that "unreferenced"
-- is one indexed lookup. Existing manifests are read once, here.
ALTER TABLE blobs ADD COLUMN linked_at INTEGER NOT NULL DEFAULT 0;
-- When a manifest was last pushed (created_at stays the first push, which listings show).
ALTER TABLE manifests ADD COLUMN pushed_at INTEGER NOT NULL DEFAULT 0;
UPDATE manifests SET pushed_at = created_at;
CREATE TABLE manifest_refs (
    repo     TEXT NOT NULL,
    child    TEXT NOT NULL,
    manifest TEXT NOT NULL,
    PRIMARY KEY (repo, child, manifest)
) WITHOUT ROWID;
CREATE INDEX manifest_refs_by_manifest ON manifest_refs (repo, manifest);
INSERT OR IGNORE INTO manifest_refs (repo, child, manifest)
  SELECT m.repo, json_extract(CAST(m.content AS TEXT), '$.config.digest'), m.digest
    FROM manifests m
   WHERE json_valid(CAST(m.content AS TEXT))
     AND json_extract(CAST(m.content AS TEXT), '$.config.digest') IS NOT NULL;
INSERT OR IGNORE INTO manifest_refs (repo, child, manifest)
  SELECT m.repo, json_extract(e.value, '$.digest'), m.digest
    FROM manifests m, json_each(CAST(m.content AS TEXT), '$.layers') e
   WHERE json_valid(CAST(m.content AS TEXT)) AND json_extract(e.value, '$.digest') IS NOT NULL;
INSERT OR IGNORE INTO manifest_refs (repo, child, manifest)
  SELECT m.repo, json_extract(e.value, '$.digest'), m.digest
    FROM manifests m, json_each(CAST(m.content AS TEXT), '$.manifests') e
   WHERE json_valid(CAST(m.content AS TEXT)) AND json_extract(e.value, '$.digest') IS NOT NULL;
"#,
    r#"
-- Numbers the registry keeps for itself, by key: each quota's running tally of the bytes
-- committed to its namespace (a push checks one row instead of summing the namespace; see
-- `crate::quota`), and when each scheduled pass last finished, so that replicas sharing the
-- database run one per interval between them (see `crate::schedule`).
CREATE TABLE registry_state (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"#,
];
