//! API keys for robots and CI: how their secrets are made and stored (only a SHA-256 of the
//! secret is kept), what a stored key grants, and the narrow store trait the metadata
//! backends implement so that access control reads keys without the content model.

use async_trait::async_trait;

use crate::policy::{Actions, Pattern};
use crate::AuthError;

/// An API key as stored: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub name: String,
    /// Lowercase hex SHA-256 of the secret. Secrets are 256 random bits, so a fast hash is
    /// enough; a slow one would only cost every request.
    pub secret_sha256: String,
    /// What the key may do, as JSON: `[{"repositories": ["team/*"], "actions": ["pull"]}]`.
    pub grants: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ApiKeyRecord {
    /// How a secret is stored and compared: its SHA-256, in lowercase hex.
    pub fn hash_secret(secret: &str) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(secret.as_bytes()))
    }
}

/// Where API keys are kept: the metadata database, shared by every replica, so a revocation
/// counts at once everywhere.
#[async_trait]
pub trait ApiKeyStore: Send + Sync + 'static {
    /// Stores a new API key; false when a key of that name exists (revoked ones included, so
    /// a name is never reused for a different secret).
    async fn api_key_create(&self, key: &ApiKeyRecord) -> Result<bool, AuthError>;
    async fn api_key_get(&self, name: &str) -> Result<Option<ApiKeyRecord>, AuthError>;
    /// Every key, by name.
    async fn api_key_list(&self) -> Result<Vec<ApiKeyRecord>, AuthError>;
    /// Marks a key revoked at `at`; false when there is no such live key.
    async fn api_key_revoke(&self, name: &str, at: i64) -> Result<bool, AuthError>;
}

/// A new secret: `wharf_` and 256 random bits in hex.
pub fn generate_secret() -> String {
    let mut raw = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
    format!("wharf_{}", hex::encode(raw))
}

/// Key names are user names in basic auth: 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn validate_name(name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(AuthError::Config(format!(
            "key name {name:?}: 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// An API key's grants, as stored: `[{"repositories": [...], "actions": [...]}]`.
pub fn parse_grants(json: &str) -> Result<Vec<(Pattern, Actions)>, String> {
    #[derive(serde::Deserialize)]
    struct Grant {
        repositories: Vec<String>,
        actions: Vec<String>,
    }
    let grants: Vec<Grant> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for g in grants {
        let actions = Actions::parse(g.actions.iter().map(String::as_str))?;
        for r in g.repositories {
            out.push((Pattern::new(&r)?, actions));
        }
    }
    Ok(out)
}

/// The stored grants of a new key on `repositories` for `actions`, after checking both.
pub fn grants_json(repositories: &[String], actions: &[String]) -> Result<String, String> {
    for r in repositories {
        Pattern::new(r)?;
    }
    Actions::parse(actions.iter().map(String::as_str))?;
    let grants =
        serde_json::json!([{ "repositories": repositories, "actions": actions }]).to_string();
    parse_grants(&grants)?;
    Ok(grants)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants() {
        let g = parse_grants(r#"[{"repositories":["team/*","ci/**"],"actions":["pull","push"]}]"#)
            .unwrap();
        assert_eq!(g.len(), 2);
        assert!(g[1].0.matches("ci/a/b") && g[1].1.contains(Actions::PUSH));
        assert!(parse_grants(r#"[{"repositories":["x"],"actions":["fly"]}]"#).is_err());
    }

    #[test]
    fn names_and_secrets() {
        assert!(validate_name("ci-deploy.v2_x").is_ok());
        assert!(validate_name("").is_err() && validate_name("a/b").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
        let s = generate_secret();
        assert!(s.starts_with("wharf_") && s.len() == 6 + 64);
        assert_ne!(s, generate_secret());
        assert_eq!(
            ApiKeyRecord::hash_secret(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
