//! Access control: who the caller is (basic credentials of a configured user or an API key,
//! or a bearer token this registry issued), what they may do on a repository (policies), the
//! 401 challenge that sends clients to the token service, and the token service itself.
//! Secrets are compared in constant time; failed logins are rate-limited per client address.

mod endpoint;
pub mod policy;
mod ratelimit;
pub mod token;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use base64::Engine;
use subtle::ConstantTimeEq;
use wharf_spec::ErrorCode;
use wharf_store::Registry;

pub use endpoint::issue;
pub use policy::{Actions, Pattern, Policies, Policy, Subject};
pub use token::TokenKeys;

use crate::error::ApiError;
use token::Access;

/// A user of the registry: a bcrypt hash (htpasswd's `$2y$`/`$2b$`) and groups.
#[derive(Debug, Clone)]
pub struct User {
    pub password_hash: String,
    pub groups: Vec<String>,
}

/// Everything access control is configured with.
pub struct AuthConfig {
    pub users: HashMap<String, User>,
    pub policies: Policies,
    /// The token service; without it, clients authenticate with basic auth only.
    pub token: Option<TokenKeys>,
    pub token_ttl: Duration,
    /// Where clients fetch tokens; by default `http(s)://<Host>/token` of the request.
    pub realm: Option<String>,
    /// Failed logins allowed per client address within `failure_window`.
    pub failure_limit: u32,
    pub failure_window: Duration,
}

/// How long a verified password is remembered, so a push of many blobs with basic auth does
/// not run bcrypt for every request.
const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// Verified tokens remembered at most; a few MiB.
const MAX_CACHED_TOKENS: usize = 10_000;

pub struct Auth {
    pub config: AuthConfig,
    verified: Mutex<HashMap<[u8; 32], (Subject, Instant)>>,
    tokens_seen: Mutex<HashMap<String, token::Claims>>,
    failures: ratelimit::Failures,
}

/// The subject common name of a verified TLS client certificate, put on the request by the
/// TLS listener; it identifies the caller as the user of that name (mTLS).
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub String);

/// Who is calling, and how they proved it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: Subject,
    /// The access a bearer token grants; policies are not consulted for token callers.
    token_access: Option<Vec<Access>>,
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller {
            subject: Subject::Anonymous,
            token_access: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.subject == Subject::Anonymous
    }
}

/// What a request needs.
#[derive(Debug, Clone)]
pub enum Need {
    /// `GET /v2/`: any valid credentials (the check that clients make to log in).
    Login,
    Catalog,
    Repository(String, Actions),
}

impl Auth {
    pub fn new(config: AuthConfig) -> Auth {
        let failures = ratelimit::Failures::new(config.failure_limit, config.failure_window);
        Auth {
            config,
            verified: Mutex::new(HashMap::new()),
            tokens_seen: Mutex::new(HashMap::new()),
            failures,
        }
    }

    /// What `caller` may do on `repository`.
    pub fn rights(&self, caller: &Caller, repository: &str) -> Actions {
        match &caller.token_access {
            Some(access) => access
                .iter()
                .filter(|a| a.kind == "repository" && a.name == repository)
                .flat_map(|a| a.actions.iter())
                .filter_map(|n| Actions::parse([n.as_str()]).ok())
                .fold(Actions::NONE, Actions::union),
            None => self.config.policies.rights(&caller.subject, repository),
        }
    }

    /// Whether `caller` may list the catalog (filtered to what they may pull).
    pub fn may_list_catalog(&self, caller: &Caller) -> bool {
        match &caller.token_access {
            Some(access) => access
                .iter()
                .any(|a| a.kind == "registry" && a.name == "catalog"),
            None => !caller.is_anonymous() || self.config.policies.has_anonymous_access(),
        }
    }

    /// Rights for listings, which a token's scopes do not cover: the subject's own rights.
    pub fn subject_rights(&self, caller: &Caller, repository: &str) -> Actions {
        self.config.policies.rights(&caller.subject, repository)
    }

    /// Identifies the caller from the Authorization header. No header is anonymous; a bad
    /// one is an error (401), counted against the client's address.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        ip: Option<IpAddr>,
        registry: &Registry,
    ) -> Result<Caller, ApiError> {
        self.authenticate_with(headers, ip, None, registry).await
    }

    /// As [`Auth::authenticate`], with the client certificate's name as the identity when the
    /// request carries no Authorization header.
    pub async fn authenticate_with(
        &self,
        headers: &HeaderMap,
        ip: Option<IpAddr>,
        cert: Option<&ClientCertificate>,
        registry: &Registry,
    ) -> Result<Caller, ApiError> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(match cert {
                Some(c) => Caller {
                    subject: self.subject_named(&c.0),
                    token_access: None,
                },
                None => Caller::anonymous(),
            });
        };
        let value = value.to_str().unwrap_or("");
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        // Password guessing is what the limit is for; a valid token still works.
        let password = scheme.eq_ignore_ascii_case("basic");
        if let (true, Some(ip)) = (password, ip) {
            if self.failures.blocked(ip) {
                return Err(too_many());
            }
        }
        let result = if scheme.eq_ignore_ascii_case("bearer") {
            self.bearer(rest.trim())
        } else if scheme.eq_ignore_ascii_case("basic") {
            self.basic(rest.trim(), registry).await
        } else {
            None
        };
        match result {
            Some(c) => Ok(c),
            None => {
                if let (true, Some(ip)) = (password, ip) {
                    self.failures.record(ip);
                }
                tracing::warn!(client = ?ip, scheme, "authentication failed");
                Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "authentication failed",
                ))
            }
        }
    }

    fn bearer(&self, token: &str) -> Option<Caller> {
        let keys = self.config.token.as_ref()?;
        let now = wharf_store::meta::now();
        // An ES256 verification costs ~0.4 ms of CPU, more than the request it guards; a
        // client sends the same token many times, and a verified token cannot change.
        if let Some(c) = self.tokens_seen.lock().expect("lock").get(token) {
            if c.exp > now {
                return Some(self.token_caller(c.clone()));
            }
        }
        match keys.verify(token, now) {
            Ok(claims) => {
                let mut seen = self.tokens_seen.lock().expect("lock");
                if seen.len() >= MAX_CACHED_TOKENS {
                    seen.retain(|_, c| c.exp > now);
                    if seen.len() >= MAX_CACHED_TOKENS {
                        seen.clear();
                    }
                }
                seen.insert(token.to_string(), claims.clone());
                Some(self.token_caller(claims))
            }
            Err(why) => {
                tracing::info!(?why, "bearer token refused");
                None
            }
        }
    }

    fn token_caller(&self, claims: token::Claims) -> Caller {
        Caller {
            subject: self.subject_named(&claims.sub),
            token_access: Some(claims.access),
        }
    }

    /// The subject a token names; API-key subjects keep no grants here, since the token's
    /// access is what counts for them.
    fn subject_named(&self, sub: &str) -> Subject {
        if sub.is_empty() {
            Subject::Anonymous
        } else if let Some(name) = sub.strip_prefix("apikey:") {
            Subject::ApiKey {
                name: name.to_string(),
                grants: Vec::new(),
            }
        } else {
            Subject::User {
                name: sub.to_string(),
                groups: self
                    .config
                    .users
                    .get(sub)
                    .map(|u| u.groups.clone())
                    .unwrap_or_default(),
            }
        }
    }

    async fn basic(&self, b64: &str, registry: &Registry) -> Option<Caller> {
        let decoded = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        let subject = self.check_password(user, password, registry).await?;
        Some(Caller {
            subject,
            token_access: None,
        })
    }

    /// Verifies a user's password or an API key's secret.
    pub async fn check_password(
        &self,
        user: &str,
        password: &str,
        registry: &Registry,
    ) -> Option<Subject> {
        let cache_key = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(user.as_bytes());
            h.update([0]);
            h.update(password.as_bytes());
            <[u8; 32]>::from(h.finalize())
        };
        if let Some((s, at)) = self.verified.lock().expect("lock").get(&cache_key) {
            if at.elapsed() < VERIFIED_TTL {
                return Some(s.clone());
            }
        }
        let subject = if let Some(u) = self.config.users.get(user) {
            let (hash, password) = (u.password_hash.clone(), password.to_string());
            let ok = tokio::task::spawn_blocking(move || {
                bcrypt::verify(password, &hash).unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            ok.then(|| Subject::User {
                name: user.to_string(),
                groups: u.groups.clone(),
            })?
        } else {
            // API keys are not cached: a revocation must count at once, on every replica.
            return self.check_api_key(user, password, registry).await;
        };
        let mut v = self.verified.lock().expect("lock");
        v.retain(|_, (_, at)| at.elapsed() < VERIFIED_TTL);
        v.insert(cache_key, (subject.clone(), Instant::now()));
        Some(subject)
    }

    async fn check_api_key(
        &self,
        name: &str,
        secret: &str,
        registry: &Registry,
    ) -> Option<Subject> {
        let key = match registry.metadata().api_key_get(name).await {
            Ok(k) => k?,
            Err(e) => {
                tracing::error!("reading API key {name:?}: {e}");
                return None;
            }
        };
        let given = wharf_store::ApiKeyRecord::hash_secret(secret);
        let matches: bool = given.as_bytes().ct_eq(key.secret_sha256.as_bytes()).into();
        let now = wharf_store::meta::now();
        if !matches || key.revoked_at.is_some() || key.expires_at.is_some_and(|e| e <= now) {
            return None;
        }
        Some(Subject::ApiKey {
            name: key.name,
            grants: parse_grants(&key.grants).ok()?,
        })
    }

    /// The 401 for a request that needs credentials: a bearer challenge naming the scope
    /// when the token service runs, else a basic one.
    pub fn challenge(&self, headers: &HeaderMap, need: &Need) -> ApiError {
        let value = match &self.config.token {
            Some(keys) => {
                let realm = self.realm(headers);
                let scope = match need {
                    Need::Login => String::new(),
                    Need::Catalog => ",scope=\"registry:catalog:*\"".to_string(),
                    Need::Repository(name, a) => {
                        // Docker scopes name pull, push and delete; overwrite goes with push.
                        // Clients push with pull,push (they check what exists first).
                        let a = if a.contains(Actions::OVERWRITE) {
                            a.union(Actions::PUSH)
                        } else {
                            *a
                        };
                        let a = if a.contains(Actions::PUSH) {
                            a.union(Actions::PULL)
                        } else {
                            a
                        };
                        let names: Vec<&str> = a
                            .names()
                            .into_iter()
                            .filter(|n| *n != "overwrite")
                            .collect();
                        format!(",scope=\"repository:{name}:{}\"", names.join(","))
                    }
                };
                format!(
                    "Bearer realm=\"{realm}\",service=\"{}\"{scope}",
                    keys.service
                )
            }
            None => "Basic realm=\"wharf\"".to_string(),
        };
        ApiError::new(ErrorCode::Unauthorized, "authentication required")
            .with_header("www-authenticate", value)
    }

    /// A token caller whose token lacks the scope gets the challenge for it along with the
    /// 403, so clients that fetched a narrower token first (the oras SDK) can ask for the
    /// right one; if their credentials do not allow it, the new token will not either.
    pub fn insufficient_scope(
        &self,
        denied: ApiError,
        headers: &HeaderMap,
        need: &Need,
        caller: &Caller,
    ) -> ApiError {
        if caller.token_access.is_none() {
            return denied;
        }
        let challenge = self.challenge(headers, need);
        match challenge.header("www-authenticate") {
            Some(v) => denied.with_header(
                "www-authenticate",
                format!("{v},error=\"insufficient_scope\""),
            ),
            None => denied,
        }
    }

    fn realm(&self, headers: &HeaderMap) -> String {
        if let Some(r) = &self.config.realm {
            return r.clone();
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let proto = headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("http");
        format!("{proto}://{host}/token")
    }
}

fn too_many() -> ApiError {
    ApiError::new(
        ErrorCode::TooManyRequests,
        "too many failed logins from this address; wait a minute",
    )
    .with_header("retry-after", "60".into())
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

    #[test]
    fn grants() {
        let g = parse_grants(r#"[{"repositories":["team/*","ci/**"],"actions":["pull","push"]}]"#)
            .unwrap();
        assert_eq!(g.len(), 2);
        assert!(g[1].0.matches("ci/a/b") && g[1].1.contains(Actions::PUSH));
        assert!(parse_grants(r#"[{"repositories":["x"],"actions":["fly"]}]"#).is_err());
    }
}
