//! API keys in PostgreSQL, behind `wharf_auth::ApiKeyStore`.

use wharf_auth::ApiKeyRecord;

use super::PostgresMetadataStore;
use crate::Result;

impl PostgresMetadataStore {
    async fn db_api_key_create(&self, k: &ApiKeyRecord) -> Result<bool> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO api_keys (name, secret_sha256, grants, created_at, expires_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT (name) DO NOTHING",
            )
            .await?;
        let n = c
            .execute(
                &st,
                &[
                    &k.name,
                    &k.secret_sha256,
                    &k.grants,
                    &k.created_at,
                    &k.expires_at,
                ],
            )
            .await?;
        Ok(n > 0)
    }

    async fn db_api_key_get(&self, name: &str) -> Result<Option<ApiKeyRecord>> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached(&format!("{API_KEY_COLUMNS} WHERE name = $1"))
            .await?;
        Ok(c.query_opt(&st, &[&name]).await?.map(|r| api_key_row(&r)))
    }

    async fn db_api_key_list(&self) -> Result<Vec<ApiKeyRecord>> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached(&format!("{API_KEY_COLUMNS} ORDER BY name"))
            .await?;
        Ok(c.query(&st, &[]).await?.iter().map(api_key_row).collect())
    }

    async fn db_api_key_revoke(&self, name: &str, at: i64) -> Result<bool> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached(
                "UPDATE api_keys SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
            )
            .await?;
        Ok(c.execute(&st, &[&name, &at]).await? > 0)
    }
}

crate::meta::api_key_store!(PostgresMetadataStore);

const API_KEY_COLUMNS: &str =
    "SELECT name, secret_sha256, grants, created_at, expires_at, revoked_at FROM api_keys";

fn api_key_row(r: &tokio_postgres::Row) -> ApiKeyRecord {
    ApiKeyRecord {
        name: r.get(0),
        secret_sha256: r.get(1),
        grants: r.get(2),
        created_at: r.get(3),
        expires_at: r.get(4),
        revoked_at: r.get(5),
    }
}
