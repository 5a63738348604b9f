//! Access control for the registry, with no HTTP in it: who the caller is (a configured
//! user's password, an API key, a bearer token this registry issued, or a client
//! certificate's name), what they may do on a repository (policies and grants), the failed-
//! login limit, and the token service's grant and signing. The server reads credentials from
//! headers, hands them here as [`Credentials`], and maps [`AuthError`] to OCI error codes.

mod apikey;
mod error;
pub mod policy;
mod ratelimit;
pub mod token;
mod users;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use subtle::ConstantTimeEq;
use wharf_oci::unix_now;

pub use apikey::{
    generate_secret, grants_json, parse_grants, validate_name, ApiKeyRecord, ApiKeyStore,
};
pub use error::AuthError;
pub use policy::{Actions, Pattern, Policies, Policy, Subject};
pub use token::{Access, Claims, TokenError, TokenKeys};
pub use users::{hash_password, parse_htpasswd, User};

/// Everything access control is configured with.
pub struct AuthConfig {
    pub users: HashMap<String, User>,
    pub policies: Policies,
    /// The token service; without it, clients authenticate with basic auth only.
    pub token: Option<TokenKeys>,
    pub token_ttl: Duration,
    /// Where clients fetch tokens; by default `http(s)://<Host>/token` of the request.
    pub realm: Option<String>,
    /// Failed logins allowed per user name and client address within `failure_window`;
    /// the next attempt is refused.
    pub failure_limit: u32,
    pub failure_window: Duration,
    /// Proxies whose `X-Forwarded-For` names the client; from anyone else it is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// How long a verified password is remembered, so a push of many blobs with basic auth does
/// not run bcrypt for every request.
const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// Verified tokens remembered at most; a few MiB.
const MAX_CACHED_TOKENS: usize = 10_000;

/// Seconds a client locked out by the failed-login limit is told to wait.
const LOCKOUT_RETRY_SECS: u64 = 60;

/// What a request presented, as the server read it from the request.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    /// Nothing: an anonymous caller.
    None,
    /// `Authorization: Basic <base64 of user:password>`.
    Basic(&'a str),
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// An Authorization header of another scheme, or unreadable.
    Unsupported,
    /// No Authorization header, and a verified TLS client certificate with this subject CN.
    ClientCertificate(&'a str),
}

impl<'a> Credentials<'a> {
    /// Reads an `Authorization` header value (if any); the certificate's name counts only
    /// when there is no header.
    pub fn parse(authorization: Option<&'a str>, client_cert: Option<&'a str>) -> Self {
        let Some(value) = authorization else {
            return match client_cert {
                Some(name) => Credentials::ClientCertificate(name),
                None => Credentials::None,
            };
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            Credentials::Basic(rest.trim())
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Credentials::Bearer(rest.trim())
        } else {
            Credentials::Unsupported
        }
    }

    fn scheme(&self) -> &'static str {
        match self {
            Credentials::None => "none",
            Credentials::Basic(_) => "basic",
            Credentials::Bearer(_) => "bearer",
            Credentials::Unsupported => "unsupported",
            Credentials::ClientCertificate(_) => "certificate",
        }
    }
}

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

    /// Whether the caller proved itself with a bearer token (whose scopes then limit it).
    pub fn holds_token(&self) -> bool {
        self.token_access.is_some()
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

impl Need {
    /// The Docker token scope that grants this, for a challenge; none for a login.
    pub fn scope(&self) -> Option<String> {
        match self {
            Need::Login => None,
            Need::Catalog => Some("registry:catalog:*".to_string()),
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
                Some(format!("repository:{name}:{}", names.join(",")))
            }
        }
    }
}

/// A token the token service issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    /// Seconds it is valid for.
    pub expires_in: i64,
}

pub struct Auth {
    pub config: AuthConfig,
    api_keys: Arc<dyn ApiKeyStore>,
    verified: Mutex<HashMap<[u8; 32], (Subject, Instant)>>,
    /// Verified tokens, with the caller each names and its expiry.
    tokens_seen: Mutex<HashMap<String, (Caller, i64)>>,
    failures: ratelimit::Failures,
    /// A bcrypt hash of nothing anyone knows, at the cost of the configured users' hashes:
    /// checked for names that are not users, so a wrong password takes as long for a name
    /// that does not exist as for one that does.
    decoy_hash: String,
}

impl Auth {
    pub fn new(config: AuthConfig, api_keys: Arc<dyn ApiKeyStore>) -> Auth {
        let failures = ratelimit::Failures::new(config.failure_limit, config.failure_window);
        let decoy_hash = users::decoy_hash(config.users.values().map(|u| u.password_hash.as_str()));
        Auth {
            config,
            api_keys,
            verified: Mutex::new(HashMap::new()),
            tokens_seen: Mutex::new(HashMap::new()),
            failures,
            decoy_hash,
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

    /// Whether the caller is one of the configured admins (`[auth] admins`, users or groups).
    pub fn is_admin(&self, caller: &Caller) -> bool {
        self.config.policies.is_admin(&caller.subject)
    }

    /// Rights for listings, which a token's scopes do not cover: the subject's own rights.
    pub fn subject_rights(&self, caller: &Caller, repository: &str) -> Actions {
        self.config.policies.rights(&caller.subject, repository)
    }

    /// Whether the caller's identity (not the token it holds) meets `need`: a token caller
    /// for whom this is true only needs a token with more scopes.
    pub fn subject_allows(&self, caller: &Caller, need: &Need) -> bool {
        match need {
            Need::Login => !caller.is_anonymous(),
            Need::Catalog => !caller.is_anonymous() || self.config.policies.has_anonymous_access(),
            Need::Repository(name, a) => self.subject_rights(caller, name).contains(*a),
        }
    }

    /// Whether `need` is met for `caller`.
    pub fn allows(&self, caller: &Caller, need: &Need) -> bool {
        match need {
            Need::Login => !caller.is_anonymous(),
            Need::Catalog => self.may_list_catalog(caller),
            Need::Repository(name, a) => self.rights(caller, name).contains(*a),
        }
    }

    /// The token service's name (its `service` and tokens' audience), when it runs.
    pub fn token_service(&self) -> Option<&str> {
        self.config.token.as_ref().map(|k| k.service.as_str())
    }

    /// Identifies the caller. No credentials is anonymous; bad ones are
    /// [`AuthError::InvalidCredentials`], counted against the user name and the client's
    /// address (`ip`, as the server settled it from trusted proxies).
    pub async fn authenticate(
        &self,
        credentials: Credentials<'_>,
        ip: Option<IpAddr>,
    ) -> Result<Caller, AuthError> {
        let result = match credentials {
            Credentials::None => return Ok(Caller::anonymous()),
            Credentials::ClientCertificate(name) => {
                return Ok(Caller {
                    subject: self.subject_named(name),
                    token_access: None,
                })
            }
            Credentials::Bearer(token) => self.bearer(token).await,
            Credentials::Basic(b64) => return self.basic(b64, ip).await,
            Credentials::Unsupported => None,
        };
        result.ok_or_else(|| {
            tracing::warn!(client = ?ip, scheme = credentials.scheme(), "authentication failed");
            AuthError::InvalidCredentials
        })
    }

    async fn bearer(&self, token: &str) -> Option<Caller> {
        let keys = self.config.token.as_ref()?;
        let now = unix_now();
        // An ES256 verification costs ~0.4 ms of CPU, more than the request it guards; a
        // client sends the same token many times, and a verified token cannot change.
        if let Some((c, exp)) = self.tokens_seen.lock().expect("lock").get(token) {
            if *exp > now {
                return Some(c.clone());
            }
        }
        let claims = match keys.verify(token, now) {
            Ok(claims) => claims,
            Err(why) => {
                tracing::info!(?why, "bearer token refused");
                return None;
            }
        };
        let subject = match claims.sub.strip_prefix("apikey:") {
            // The key's grants decide what its identity may do (listings, and whether a
            // refusal is the token's or the key's); a key gone since is no one.
            Some(name) => match self.api_keys.api_key_get(name).await {
                Ok(Some(k)) => Subject::ApiKey {
                    name: k.name,
                    grants: parse_grants(&k.grants).ok()?,
                },
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!("reading API key {name:?}: {e}");
                    return None;
                }
            },
            None => self.subject_named(&claims.sub),
        };
        let caller = Caller {
            subject,
            token_access: Some(claims.access),
        };
        let mut seen = self.tokens_seen.lock().expect("lock");
        if seen.len() >= MAX_CACHED_TOKENS {
            seen.retain(|_, (_, exp)| *exp > now);
            if seen.len() >= MAX_CACHED_TOKENS {
                seen.clear();
            }
        }
        seen.insert(token.to_string(), (caller.clone(), claims.exp));
        Some(caller)
    }

    /// The subject a certificate or a user's token names.
    fn subject_named(&self, sub: &str) -> Subject {
        if sub.is_empty() {
            Subject::Anonymous
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

    /// Basic credentials, within the failed-login limit of that user name at that address.
    async fn basic(&self, b64: &str, ip: Option<IpAddr>) -> Result<Caller, AuthError> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|d| String::from_utf8(d).ok());
        let Some((user, password)) = decoded.as_deref().and_then(|t| t.split_once(':')) else {
            tracing::warn!(client = ?ip, "authentication failed: unreadable basic credentials");
            return Err(AuthError::InvalidCredentials);
        };
        if let Some(ip) = ip {
            if self.failures.blocked(user, ip) {
                return Err(AuthError::TooManyFailures {
                    retry_after_secs: LOCKOUT_RETRY_SECS,
                });
            }
        }
        match self.check_password(user, password).await {
            Some(subject) => Ok(Caller {
                subject,
                token_access: None,
            }),
            None => {
                if let Some(ip) = ip {
                    self.failures.record(user, ip);
                }
                tracing::warn!(client = ?ip, user, "authentication failed: wrong password");
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    /// Verifies a user's password or an API key's secret.
    pub async fn check_password(&self, user: &str, password: &str) -> Option<Subject> {
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
        let Some(u) = self.config.users.get(user) else {
            // API keys are not cached: a revocation must count at once, on every replica.
            let key = self.check_api_key(user, password).await;
            if key.is_none() {
                users::verify_password(password, &self.decoy_hash).await;
            }
            return key;
        };
        if !users::verify_password(password, &u.password_hash).await {
            return None;
        }
        let subject = Subject::User {
            name: user.to_string(),
            groups: u.groups.clone(),
        };
        let mut v = self.verified.lock().expect("lock");
        v.retain(|_, (_, at)| at.elapsed() < VERIFIED_TTL);
        v.insert(cache_key, (subject.clone(), Instant::now()));
        Some(subject)
    }

    async fn check_api_key(&self, name: &str, secret: &str) -> Option<Subject> {
        let key = match self.api_keys.api_key_get(name).await {
            Ok(k) => k?,
            Err(e) => {
                tracing::error!("reading API key {name:?}: {e}");
                return None;
            }
        };
        let given = ApiKeyRecord::hash_secret(secret);
        let matches: bool = given.as_bytes().ct_eq(key.secret_sha256.as_bytes()).into();
        let now = unix_now();
        if !matches || key.revoked_at.is_some() || key.expires_at.is_some_and(|e| e <= now) {
            return None;
        }
        Some(Subject::ApiKey {
            name: key.name,
            grants: parse_grants(&key.grants).ok()?,
        })
    }

    /// The token service: of the `scopes` asked for, grants what the credentials allow
    /// (anonymous callers get what anonymous policies allow), in a short-lived signed token.
    /// A token is not a credential for another token: only passwords and API keys are.
    pub async fn issue_token(
        &self,
        credentials: Credentials<'_>,
        ip: Option<IpAddr>,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<IssuedToken, AuthError> {
        let keys = self
            .config
            .token
            .as_ref()
            .ok_or(AuthError::NoTokenService)?;
        if let Some(s) = service {
            if s != keys.service {
                return Err(AuthError::WrongService {
                    expected: keys.service.clone(),
                    asked: s.to_string(),
                });
            }
        }
        let caller = self.authenticate(credentials, ip).await?;
        let caller = if matches!(credentials, Credentials::Bearer(_)) {
            Caller::anonymous()
        } else {
            caller
        };
        let access = scopes
            .iter()
            .filter_map(|s| token::parse_scope(s))
            .filter_map(|(kind, name, actions)| self.grant(&caller, kind, name, &actions))
            .collect();
        let now = unix_now();
        let ttl = self.config.token_ttl.as_secs() as i64;
        let claims = Claims {
            iss: keys.issuer.clone(),
            sub: caller.subject.id(),
            aud: keys.service.clone(),
            exp: now + ttl,
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        if !caller.is_anonymous() {
            tracing::info!(subject = %claims.sub, scopes = ?scopes, "token issued");
        }
        Ok(IssuedToken {
            token: keys.sign(&claims),
            expires_in: ttl,
        })
    }

    /// What of one asked-for scope `caller` gets, if anything.
    fn grant(
        &self,
        caller: &Caller,
        kind: String,
        name: String,
        actions: &[String],
    ) -> Option<Access> {
        match kind.as_str() {
            "repository" => {
                let wanted =
                    Actions::parse(actions.iter().map(String::as_str)).unwrap_or(Actions::NONE);
                let have = self.rights(caller, &name);
                let mut granted = wanted.intersect(have);
                // Pushing may overwrite a tag only for those with that right; it travels in
                // the token so every replica enforces it without asking again.
                if granted.contains(Actions::PUSH) && have.contains(Actions::OVERWRITE) {
                    granted = granted.union(Actions::OVERWRITE);
                }
                (!granted.is_empty()).then(|| Access {
                    kind,
                    name,
                    actions: granted.names().into_iter().map(str::to_string).collect(),
                })
            }
            "registry" if name == "catalog" && self.may_list_catalog(caller) => Some(Access {
                kind,
                name,
                actions: vec!["*".into()],
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_read_by_scheme() {
        assert!(matches!(
            Credentials::parse(Some("Basic YTpi"), None),
            Credentials::Basic("YTpi")
        ));
        assert!(matches!(
            Credentials::parse(Some("bearer  t.o.k "), Some("cn")),
            Credentials::Bearer("t.o.k")
        ));
        assert!(matches!(
            Credentials::parse(Some("Digest x"), None),
            Credentials::Unsupported
        ));
        assert!(matches!(
            Credentials::parse(None, Some("alice")),
            Credentials::ClientCertificate("alice")
        ));
        assert!(matches!(Credentials::parse(None, None), Credentials::None));
    }

    #[test]
    fn scopes_for_challenges() {
        let push = Need::Repository("team/app".into(), Actions::OVERWRITE);
        assert_eq!(push.scope().unwrap(), "repository:team/app:pull,push");
        let del = Need::Repository("a".into(), Actions::DELETE);
        assert_eq!(del.scope().unwrap(), "repository:a:delete");
        assert_eq!(Need::Catalog.scope().unwrap(), "registry:catalog:*");
        assert!(Need::Login.scope().is_none());
    }
}
