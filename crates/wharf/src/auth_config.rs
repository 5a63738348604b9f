//! The `[auth]` table of the configuration file, turned into the server's access control:
//! users from an htpasswd file and the file itself, groups, admins, policies, and the token
//! service's signing key (generated on first use when the configured file does not exist).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde::Deserialize;
use wharf_auth::{parse_htpasswd, Actions, AuthConfig, Pattern, Policies, Policy, TokenKeys, User};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    /// An htpasswd file of bcrypt hashes (`htpasswd -B`, or `wharf admin hash-password`).
    pub htpasswd: Option<PathBuf>,
    #[serde(default)]
    pub users: Vec<FileUser>,
    /// Group name -> members, for users of the htpasswd file.
    #[serde(default)]
    pub groups: HashMap<String, Vec<String>>,
    /// Users (or `group:<name>`) who may do everything.
    #[serde(default)]
    pub admins: Vec<String>,
    #[serde(default)]
    pub policies: Vec<FilePolicy>,
    /// Issue bearer tokens at /token (default true); without, clients use basic auth.
    pub token_service: Option<bool>,
    /// PKCS#8 PEM P-256 key that signs tokens; replicas must share it. Default:
    /// `<data_dir>/token-key.pem`, created when missing.
    pub token_key: Option<PathBuf>,
    pub token_ttl_secs: Option<u64>,
    /// The token URL clients are sent to; default `http(s)://<Host>/token`.
    pub realm: Option<String>,
    pub service: Option<String>,
    pub issuer: Option<String>,
    pub failed_login_limit: Option<u32>,
    pub failed_login_window_secs: Option<u64>,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUser {
    pub name: String,
    pub password_hash: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePolicy {
    pub repositories: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Applies to everyone, signed in or not.
    #[serde(default)]
    pub anonymous: bool,
    pub actions: Vec<String>,
}

/// Builds the server's access control from the file's `[auth]` table.
pub fn build(a: &FileAuth, data_dir: &Path) -> Result<AuthConfig, String> {
    let mut users: HashMap<String, User> = HashMap::new();
    if let Some(path) = &a.htpasswd {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read htpasswd file {}: {e}", path.display()))?;
        for (name, hash) in parse_htpasswd(&text).map_err(|e| format!("{}: {e}", path.display()))? {
            users.insert(
                name,
                User {
                    password_hash: hash,
                    groups: Vec::new(),
                },
            );
        }
    }
    for u in &a.users {
        if !u.password_hash.starts_with("$2") {
            return Err(format!(
                "auth.users {:?}: password_hash must be a bcrypt hash (wharf admin hash-password)",
                u.name
            ));
        }
        users.insert(
            u.name.clone(),
            User {
                password_hash: u.password_hash.clone(),
                groups: u.groups.clone(),
            },
        );
    }
    for (group, members) in &a.groups {
        for m in members {
            let u = users
                .get_mut(m)
                .ok_or_else(|| format!("auth.groups.{group}: no user {m:?}"))?;
            if !u.groups.contains(group) {
                u.groups.push(group.clone());
            }
        }
    }
    let mut policies = Vec::new();
    for (i, p) in a.policies.iter().enumerate() {
        let at = |e: String| format!("auth.policies[{i}]: {e}");
        if p.repositories.is_empty() {
            return Err(at("names no repositories".into()));
        }
        if p.users.is_empty() && p.groups.is_empty() && !p.anonymous {
            return Err(at(
                "applies to nobody: give users, groups or anonymous = true".into(),
            ));
        }
        policies.push(Policy {
            repositories: p
                .repositories
                .iter()
                .map(|r| Pattern::new(r))
                .collect::<Result<_, _>>()
                .map_err(at)?,
            users: p.users.clone(),
            groups: p.groups.clone(),
            anonymous: p.anonymous,
            actions: Actions::parse(p.actions.iter().map(String::as_str)).map_err(at)?,
        });
    }
    let token = if a.token_service.unwrap_or(true) {
        let path = a
            .token_key
            .clone()
            .unwrap_or_else(|| data_dir.join("token-key.pem"));
        Some(
            TokenKeys::new(
                load_or_create_key(&path)?,
                a.issuer.clone().unwrap_or_else(|| "wharf".into()),
                a.service.clone().unwrap_or_else(|| "wharf".into()),
            )
            .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    Ok(AuthConfig {
        users,
        policies: Policies {
            policies,
            admins: a.admins.clone(),
        },
        token,
        token_ttl: Duration::from_secs(a.token_ttl_secs.unwrap_or(300).max(1)),
        realm: a.realm.clone(),
        failure_limit: a.failed_login_limit.unwrap_or(10).max(1),
        failure_window: Duration::from_secs(a.failed_login_window_secs.unwrap_or(60).max(1)),
        trusted_proxies: a
            .trusted_proxies
            .iter()
            .map(|p| parse_network(p))
            .collect::<Result<_, _>>()?,
    })
}

/// `10.0.0.0/8`, or one address as a network of one.
fn parse_network(p: &str) -> Result<ipnet::IpNet, String> {
    p.parse::<ipnet::IpNet>()
        .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            format!("auth.trusted_proxies: {p:?} is not an address or a CIDR range (10.0.0.0/8)")
        })
}

/// Reads the token signing key, or creates one (readable by its owner only) when the file
/// does not exist yet.
fn load_or_create_key(path: &Path) -> Result<SigningKey, String> {
    match std::fs::read_to_string(path) {
        Ok(pem) => SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
            format!(
                "token key {}: not a PKCS#8 PEM P-256 key: {e}",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::random(&mut rand_core::OsRng);
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| format!("encoding the token key: {e}"))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            write_private(path, pem.as_bytes())
                .map_err(|e| format!("cannot write token key {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "created a token signing key");
            Ok(key)
        }
        Err(e) => Err(format!("cannot read token key {}: {e}", path.display())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
