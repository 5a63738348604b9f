//! The PostgreSQL schema, as the migrations that build it.

/// Schema versions, applied in order; `wharf_schema.version` records how many ran.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE repositories (
    name TEXT COLLATE "C" PRIMARY KEY
);
CREATE TABLE blobs (
    repo   TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    size   BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX blobs_by_digest ON blobs (digest);
CREATE TABLE manifests (
    repo          TEXT COLLATE "C" NOT NULL,
    digest        TEXT COLLATE "C" NOT NULL,
    media_type    TEXT NOT NULL,
    size          BIGINT NOT NULL,
    content       BYTEA NOT NULL,
    subject       TEXT COLLATE "C",
    artifact_type TEXT,
    annotations   TEXT,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repo, subject) WHERE subject IS NOT NULL;
CREATE TABLE tags (
    repo       TEXT COLLATE "C" NOT NULL,
    tag        TEXT COLLATE "C" NOT NULL,
    digest     TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repo, tag)
);
CREATE INDEX tags_by_digest ON tags (repo, digest);
CREATE TABLE uploads (
    id         TEXT PRIMARY KEY,
    repo       TEXT COLLATE "C" NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
"#,
    r#"
ALTER TABLE uploads ADD COLUMN state BYTEA NOT NULL DEFAULT ''::bytea;
"#,
    r#"
CREATE TABLE api_keys (
    name          TEXT COLLATE "C" PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    grants        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT
);
"#,
    r#"
ALTER TABLE manifests ADD COLUMN kind TEXT, ADD COLUMN title TEXT, ADD COLUMN version TEXT,
  ADD COLUMN app_version TEXT, ADD COLUMN description TEXT, ADD COLUMN keywords TEXT,
  ADD COLUMN details TEXT, ADD COLUMN total_size BIGINT, ADD COLUMN search_text TEXT,
  ADD COLUMN version_key TEXT;
CREATE INDEX manifests_search ON manifests (repo, digest, kind) INCLUDE (version_key, search_text)
  WHERE kind IS NOT NULL;
"#,
    r#"
ALTER TABLE blobs ADD COLUMN linked_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE manifests ADD COLUMN pushed_at BIGINT NOT NULL DEFAULT 0;
UPDATE manifests SET pushed_at = created_at;
CREATE TABLE manifest_refs (
    repo     TEXT COLLATE "C" NOT NULL,
    child    TEXT COLLATE "C" NOT NULL,
    manifest TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (repo, child, manifest)
);
CREATE INDEX manifest_refs_by_manifest ON manifest_refs (repo, manifest);
INSERT INTO manifest_refs (repo, child, manifest)
  SELECT DISTINCT repo, child, digest FROM (
    SELECT m.repo, m.digest, convert_from(m.content, 'UTF8')::jsonb -> 'config' ->> 'digest' AS child
      FROM manifests m
    UNION ALL
    SELECT m.repo, m.digest, e ->> 'digest'
      FROM manifests m,
           jsonb_array_elements(COALESCE(convert_from(m.content, 'UTF8')::jsonb -> 'layers', '[]'::jsonb)) e
    UNION ALL
    SELECT m.repo, m.digest, e ->> 'digest'
      FROM manifests m,
           jsonb_array_elements(COALESCE(convert_from(m.content, 'UTF8')::jsonb -> 'manifests', '[]'::jsonb)) e
  ) refs
  WHERE child IS NOT NULL
ON CONFLICT DO NOTHING;
"#,
    r#"
CREATE TABLE registry_state (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value BIGINT NOT NULL
);
"#,
];
