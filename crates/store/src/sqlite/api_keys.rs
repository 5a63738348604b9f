//! API keys in SQLite, behind `wharf_auth::ApiKeyStore`.

use rusqlite::params;
use wharf_auth::ApiKeyRecord;

use super::SqliteMetadataStore;
use crate::Result;

impl SqliteMetadataStore {
    async fn db_api_key_create(&self, key: &ApiKeyRecord) -> Result<bool> {
        let k = key.clone();
        self.write(move |tx| {
            Ok(tx
                .prepare_cached(
                    "INSERT INTO api_keys (name, secret_sha256, grants, created_at, expires_at, revoked_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, NULL) ON CONFLICT (name) DO NOTHING",
                )?
                .execute(params![k.name, k.secret_sha256, k.grants, k.created_at, k.expires_at])?
                > 0)
        })
        .await
    }

    async fn db_api_key_get(&self, name: &str) -> Result<Option<ApiKeyRecord>> {
        let name = name.to_string();
        self.read(move |c| {
            Ok(
                c.prepare_cached(&format!("{API_KEY_COLUMNS} WHERE name = ?1"))?
                    .query_map([name], api_key_row)?
                    .next()
                    .transpose()?,
            )
        })
        .await
    }

    async fn db_api_key_list(&self) -> Result<Vec<ApiKeyRecord>> {
        self.read(move |c| {
            Ok(
                c.prepare_cached(&format!("{API_KEY_COLUMNS} ORDER BY name"))?
                    .query_map([], api_key_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            )
        })
        .await
    }

    async fn db_api_key_revoke(&self, name: &str, at: i64) -> Result<bool> {
        let name = name.to_string();
        self.write(move |tx| {
            Ok(tx
                .prepare_cached(
                    "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                )?
                .execute(params![name, at])?
                > 0)
        })
        .await
    }
}

crate::meta::api_key_store!(SqliteMetadataStore);

const API_KEY_COLUMNS: &str =
    "SELECT name, secret_sha256, grants, created_at, expires_at, revoked_at FROM api_keys";

fn api_key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        name: r.get(0)?,
        secret_sha256: r.get(1)?,
        grants: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}
