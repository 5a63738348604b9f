//! Users with passwords: bcrypt hashes from the configuration or an htpasswd file.

use std::collections::HashMap;

/// A user of the registry: a bcrypt hash (htpasswd's `$2y$`/`$2b$`) and groups.
#[derive(Debug, Clone)]
pub struct User {
    pub password_hash: String,
    pub groups: Vec<String>,
}

/// Parses an htpasswd file: `user:hash` lines with bcrypt hashes; other hash kinds are
/// refused rather than silently never matching.
pub fn parse_htpasswd(text: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: not user:hash", i + 1))?;
        if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
            return Err(format!(
                "line {}: the hash for {user:?} is not bcrypt (create it with `htpasswd -B` or `wharf admin hash-password`)",
                i + 1
            ));
        }
        out.insert(user.to_string(), hash.to_string());
    }
    Ok(out)
}

/// The bcrypt hash of `password` at `cost` (4 to 31).
pub fn hash_password(password: &str, cost: u32) -> Result<String, String> {
    bcrypt::hash(password, cost).map_err(|e| e.to_string())
}

/// Checks a password against a bcrypt hash on a blocking thread: bcrypt is slow on purpose.
pub(crate) async fn verify_password(password: &str, hash: &str) -> bool {
    let (password, hash) = (password.to_string(), hash.to_string());
    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}

/// A hash of a random password at the highest cost among `hashes` (bcrypt's default when
/// there are none), for checking wrong names as slowly as wrong passwords.
pub(crate) fn decoy_hash<'a>(hashes: impl Iterator<Item = &'a str>) -> String {
    let cost = hashes
        .filter_map(|h| h.get(4..6)?.parse::<u32>().ok())
        .max()
        .unwrap_or(bcrypt::DEFAULT_COST);
    let secret = uuid::Uuid::new_v4().to_string();
    bcrypt::hash(secret, cost.clamp(4, 31)).expect("bcrypt hashes at a valid cost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd() {
        let h = parse_htpasswd("# comment\nalice:$2y$05$abcdefghijklmnopqrstuv\n\n").unwrap();
        assert!(h.contains_key("alice"));
        assert!(parse_htpasswd("bob:{SHA}xyz")
            .unwrap_err()
            .contains("not bcrypt"));
        assert!(parse_htpasswd("garbage").is_err());
    }
}
