//! References as users type them: `[registry/]repository[:tag][@digest]`, with the Docker
//! Hub normalisation every container tool applies (`alpine` is
//! `docker.io/library/alpine:latest`).

use std::fmt;
use std::str::FromStr;

use wharf_oci::{validate_repository, validate_tag, Digest};

use crate::{Error, Result};

/// The registry that a reference without a registry part means.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually answers.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A repository on a registry, with an optional tag and digest.
///
/// ```
/// use wharf_client::Reference;
/// let r: Reference = "localhost:5000/team/app:v1".parse()?;
/// assert_eq!((r.registry.as_str(), r.repository.as_str()), ("localhost:5000", "team/app"));
/// assert_eq!(r.tag.as_deref(), Some("v1"));
/// // Docker Hub's normalisation, as docker and skopeo apply it
/// let hub: Reference = "alpine".parse()?;
/// assert_eq!(hub.to_string(), "docker.io/library/alpine");
/// // a scheme is a mistake a person makes; the error says what to do
/// let e = "http://localhost:5000/app".parse::<Reference>().unwrap_err();
/// assert!(e.to_string().contains("drop http://"));
/// # Ok::<(), wharf_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]`, as written (`docker.io` for Docker Hub).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// A reference to `repository` on `registry` with neither tag nor digest.
    pub fn repository(registry: &str, repository: &str) -> Result<Reference> {
        parse_registry(registry).map_err(|why| Error::Reference(registry.into(), why))?;
        validate_repository(repository)
            .map_err(|e| Error::Reference(repository.into(), e.to_string()))?;
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: None,
            digest: None,
        })
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        validate_tag(tag).map_err(|e| Error::Reference(tag.into(), e.to_string()))?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository at a digest (and no tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// What goes in `/v2/<name>/manifests/<reference>`: the digest when there is one, since
    /// it pins the content, else the tag, else `latest`.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The host the registry API answers on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Whether plain HTTP is the default: loopback registries rarely have certificates.
    pub fn is_localhost(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => &self.registry,
        };
        host == "localhost" || host == "[::1]" || host.starts_with("127.")
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A registry part is `host[:port]`; the host is a DNS name, an IPv4 address or `[IPv6]`.
fn parse_registry(s: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed '[' in the registry")?;
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err("invalid IPv6 address".into());
        }
        match after.strip_prefix(':') {
            Some(p) => ("ok", Some(p)),
            None if after.is_empty() => ("ok", None),
            None => return Err("junk after the IPv6 address".into()),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.is_empty() || !host.split('.').all(label_ok) {
        return Err("the registry host is not a valid host name".into());
    }
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err("the registry port is not a number up to 65535".into());
        }
    }
    Ok(())
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(input: &str) -> Result<Reference> {
        let bad = |why: &str| Error::Reference(input.to_string(), why.to_string());
        if input.is_empty() {
            return Err(bad("empty"));
        }
        if let Some((scheme, _)) = input.split_once("://") {
            return Err(bad(&format!(
                "drop {scheme}://: references have no scheme (--plain-http or --https choose it)"
            )));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<Digest>()
                        .map_err(|e| Error::Reference(input.into(), e.to_string()))?,
                ),
            ),
            None => (input, None),
        };
        // The tag is after the last ':' that follows the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|e| Error::Reference(input.into(), e.to_string()))?;
        }
        // Docker's rule: the first component is a registry when it has a '.' or ':', or is
        // `localhost`; otherwise the whole name is a Docker Hub repository.
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        parse_registry(&registry).map_err(|why| bad(&why))?;
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_repository(&repository)
            .map_err(|e| Error::Reference(input.into(), e.to_string()))?;
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalisation() {
        let r = parse("alpine");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/alpine");
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(parse("bitnami/redis:7").repository, "bitnami/redis");
        assert_eq!(
            parse("index.docker.io/alpine").to_string(),
            "docker.io/library/alpine"
        );
    }

    #[test]
    fn registries_ports_tags_digests() {
        let d = "sha256:".to_string() + &"a".repeat(64);
        let r = parse(&format!("localhost:5000/a/b:v1@{d}"));
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost:5000", "a/b")
        );
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_reference(), d);
        assert!(r.is_localhost());
        let r = parse("127.0.0.1:8080/x");
        assert!(r.is_localhost() && r.tag.is_none());
        let r = parse("[::1]:5000/x:y");
        assert_eq!(
            (r.registry.as_str(), r.tag.as_deref()),
            ("[::1]:5000", Some("y"))
        );
        assert!(r.is_localhost());
        let r = parse("ghcr.io/org/app");
        assert!(!r.is_localhost());
        assert_eq!(r.to_string(), "ghcr.io/org/app");
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "UPPER/case",
            "a//b",
            "host:port/x",
            "reg.io/x:bad tag",
            "reg.io/x@sha256:short",
            "reg.io/x:",
            "-bad.io/x",
            "[zz]/x",
        ] {
            assert!(s.parse::<Reference>().is_err(), "{s:?} parsed");
        }
    }
}
