//! Credentials in Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), the file docker, podman, skopeo, oras and helm share: inline
//! `auths` entries, and `docker-credential-<name>` helpers named by `credsStore` or
//! `credHelpers`. Unknown keys in the file are kept when it is rewritten.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::{Error, Result};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <redacted>)", self.username)
    }
}

/// The key Docker uses for Docker Hub in `auths` and helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

fn config_key(registry: &str) -> &str {
    if registry == crate::reference::DOCKER_HUB {
        DOCKER_HUB_KEY
    } else {
        registry
    }
}

/// Docker's credential file.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    doc: Map<String, Value>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
    }

    /// Reads the file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<DockerConfig> {
        let doc = match std::fs::read(path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(Error::Invalid(format!(
                        "{}: not a JSON object",
                        path.display()
                    )))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(Error::file(path, e)),
        };
        Ok(DockerConfig {
            path: path.to_path_buf(),
            doc,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The helper that holds `registry`'s credentials, if one is configured.
    fn helper(&self, registry: &str) -> Option<String> {
        let key = config_key(registry);
        self.doc
            .get("credHelpers")
            .and_then(|h| h.get(key))
            .or_else(|| self.doc.get("credsStore"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// The credential stored for `registry`, from its helper or the inline `auths` entry.
    pub fn get(&self, registry: &str) -> Result<Option<Credential>> {
        let key = config_key(registry);
        if let Some(helper) = self.helper(registry) {
            if let Some(c) = helper_get(&helper, key)? {
                return Ok(Some(c));
            }
        }
        let Some(entry) = self.doc.get("auths").and_then(|a| a.get(key)) else {
            return Ok(None);
        };
        if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: the auth entry for {key} is not base64 of user:password",
                        self.path.display()
                    ))
                })?;
            if let Some((u, p)) = decoded.split_once(':') {
                return Ok(Some(Credential {
                    username: u.to_string(),
                    password: p.to_string(),
                }));
            }
        }
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            return Ok(Some(Credential {
                username: u.into(),
                password: p.into(),
            }));
        }
        Ok(None)
    }

    /// Stores a credential with the configured helper, else inline; writes the file.
    pub fn store(&mut self, registry: &str, c: &Credential) -> Result<()> {
        let key = config_key(registry);
        if let Some(helper) = self.helper(registry) {
            let input = json!({"ServerURL": key, "Username": c.username, "Secret": c.password});
            run_helper(&helper, "store", input.to_string().as_bytes())?;
            // An inline entry would shadow nothing, but an old one would linger: drop it.
            self.auths().remove(key);
        } else {
            let auth = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.username, c.password));
            self.auths()
                .insert(key.to_string(), json!({ "auth": auth }));
        }
        self.save()
    }

    /// Removes `registry`'s credential; returns whether there was one.
    pub fn erase(&mut self, registry: &str) -> Result<bool> {
        let key = config_key(registry);
        let mut found = false;
        if let Some(helper) = self.helper(registry) {
            found = helper_get(&helper, key)?.is_some();
            if found {
                run_helper(&helper, "erase", key.as_bytes())?;
            }
        }
        found |= self.auths().remove(key).is_some();
        self.save()?;
        Ok(found)
    }

    fn auths(&mut self) -> &mut Map<String, Value> {
        let v = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        v.as_object_mut().expect("just made an object")
    }

    /// Writes the file atomically, readable by its owner only (it holds secrets).
    fn save(&self) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::file(dir, e))?;
        let text = serde_json::to_string_pretty(&self.doc).expect("JSON serialises");
        tmp.write_all(text.as_bytes())
            .and_then(|_| tmp.write_all(b"\n"))
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| Error::file(&self.path, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = tmp
                .as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600));
        }
        tmp.persist(&self.path)
            .map_err(|e| Error::file(&self.path, e.error))?;
        Ok(())
    }
}

fn run_helper(helper: &str, verb: &str, input: &[u8]) -> Result<Vec<u8>> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Auth(format!("cannot run credential helper {program}: {e}")))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .map_err(|e| Error::Auth(format!("{program} {verb}: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Auth(format!("{program} {verb}: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .trim()
        .to_string();
        return Err(Error::Auth(format!("{program} {verb}: {msg}")));
    }
    Ok(out.stdout)
}

fn helper_get(helper: &str, key: &str) -> Result<Option<Credential>> {
    match run_helper(helper, "get", key.as_bytes()) {
        Ok(out) => {
            let v: Value = serde_json::from_slice(&out)
                .map_err(|_| Error::Auth(format!("docker-credential-{helper} get: not JSON")))?;
            let field = |k| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Ok(Some(Credential {
                username: field("Username"),
                password: field("Secret"),
            }))
        }
        // Helpers answer "credentials not found in native keychain" with a failure status.
        Err(Error::Auth(m)) if m.contains("not found") => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"psFormat": "table", "auths": {"other.io": {"auth": "dTpw"}}}"#,
        )
        .unwrap();
        let mut c = DockerConfig::load(&path).unwrap();
        let cred = Credential {
            username: "alice".into(),
            password: "p:w".into(),
        };
        c.store("reg.example:5000", &cred).unwrap();
        let again = DockerConfig::load(&path).unwrap();
        assert_eq!(again.get("reg.example:5000").unwrap(), Some(cred));
        assert_eq!(again.get("other.io").unwrap().unwrap().username, "u");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("psFormat"));
        assert!(text.contains("YWxpY2U6cDp3"), "base64 of alice:p:w");
        let mut again = again;
        assert!(again.erase("reg.example:5000").unwrap());
        assert!(!again.erase("reg.example:5000").unwrap());
        assert_eq!(
            DockerConfig::load(&path)
                .unwrap()
                .get("reg.example:5000")
                .unwrap(),
            None
        );
    }

    #[test]
    fn docker_hub_key_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none/config.json");
        let mut c = DockerConfig::load(&path).unwrap();
        assert_eq!(c.get("docker.io").unwrap(), None);
        let cred = Credential {
            username: "u".into(),
            password: "p".into(),
        };
        c.store("docker.io", &cred).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("https://index.docker.io/v1/"));
    }

    #[test]
    fn broken_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "[1]").unwrap();
        let e = DockerConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("not a JSON object"), "{e}");
    }
}
