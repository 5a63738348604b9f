//! The Docker registry auth flow: parsing `WWW-Authenticate` challenges, and the bearer tokens
//! a token service hands out per scope, cached until shortly before they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a registry asked for in its 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses one `WWW-Authenticate` value (`Bearer realm="...",service="...",scope="..."`).
/// Quoted values may hold commas (`scope="repository:a:pull,push"`).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    } else {
        None
    }
}

fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            return out;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
}

/// The scope a request on `repository` needs.
pub fn repository_scope(repository: &str, push: bool) -> String {
    let actions = if push { "pull,push" } else { "pull" };
    format!("repository:{repository}:{actions}")
}

/// A token service's answer (`token` per the Docker spec, `access_token` per OAuth2).
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    pub token: Option<String>,
    pub access_token: Option<String>,
    pub expires_in: Option<u64>,
}

/// Tokens that the spec says live at least 60 s when the answer gives no lifetime.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens are dropped this long before they expire, so none runs out mid-request.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// Bearer tokens by registry and scope.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl TokenCache {
    pub fn get(&self, registry: &str, scope: &str) -> Option<String> {
        let mut t = self.tokens.lock().expect("token cache lock");
        let key = (registry.to_string(), scope.to_string());
        match t.get(&key) {
            Some((token, until)) if *until > Instant::now() => Some(token.clone()),
            Some(_) => {
                t.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, registry: &str, scope: &str, token: String, expires_in: Option<u64>) {
        let life = expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
            .saturating_sub(EXPIRY_MARGIN);
        self.tokens.lock().expect("token cache lock").insert(
            (registry.to_string(), scope.to_string()),
            (token, Instant::now() + life),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_commas_in_scope() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
    }

    #[test]
    fn other_forms() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("basic"), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge("bearer realm=http://x/t, service = s"),
            Some(Challenge::Bearer {
                realm: "http://x/t".into(),
                service: Some("s".into()),
                scope: None
            })
        );
        assert_eq!(
            parse_challenge("Bearer service=s"),
            None,
            "a realm is required"
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(
            parse_challenge(r#"Bearer realm="a\"b""#).unwrap(),
            Challenge::Bearer {
                realm: "a\"b".into(),
                service: None,
                scope: None
            }
        );
    }

    #[test]
    fn tokens_expire() {
        let c = TokenCache::default();
        c.put("r", "s", "t".into(), Some(3600));
        assert_eq!(c.get("r", "s").as_deref(), Some("t"));
        assert_eq!(c.get("r", "other"), None);
        c.put("r", "s", "t".into(), Some(5)); // shorter than the margin: never used
        assert_eq!(c.get("r", "s"), None);
    }
}
