//! [`Client`]: one HTTP connection pool for every registry, with the auth flow (basic, or
//! bearer tokens per scope) and retries with backoff for idempotent requests. The operations
//! themselves live in the modules beside this one, as more `impl Client` blocks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use crate::auth::{parse_challenge, Challenge, TokenCache, TokenResponse};
use crate::credentials::{Credential, DockerConfig};
use crate::error::RegistryCode;
use crate::retry::Retry;
use crate::{Error, Reference, Result};

/// How the client talks to registries.
///
/// ```
/// use wharf_client::{Client, ClientOptions, Credential, Transport};
/// let mut opts = ClientOptions::default();
/// // one registry behind a private CA, reached with its own credentials ...
/// opts.registries.insert("registry.corp.example".into(), Transport {
///     ca_file: None, // Some("corp-ca.pem".into()) to trust that CA's certificates
///     ..Transport::default()
/// });
/// opts.credentials.insert("registry.corp.example".into(), Credential {
///     username: "ci".into(),
///     password: "token".into(),
/// });
/// // ... and a mirror on plain HTTP, four blobs at a time
/// opts.registries.insert("mirror.local:5000".into(), Transport {
///     plain_http: true,
///     ..Transport::default()
/// });
/// opts.concurrency = 4;
/// let client = Client::new(opts)?;
/// let mirror = "mirror.local:5000/app:v1".parse()?;
/// assert_eq!(client.base_url(&mirror), "http://mirror.local:5000");
/// # Ok::<(), wharf_client::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Plain HTTP for every registry (loopback registries use it anyway).
    pub plain_http: bool,
    /// HTTPS for every registry, loopback ones included.
    pub https: bool,
    /// Accept TLS certificates that do not verify (self-signed test registries).
    pub insecure: bool,
    /// PEM certificates (a CA bundle) to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Per registry (`host[:port]`, as references name it), transport settings that replace
    /// the four above: the two sides of a copy between registries can differ.
    pub registries: HashMap<String, Transport>,
    /// Extra attempts for an idempotent request after a network error, 429 or 5xx.
    pub retries: u32,
    /// First pause between attempts; doubled each time.
    pub backoff: Duration,
    /// Size of the PATCH requests a large blob is uploaded in; a dropped one resumes from the
    /// server's `Range`.
    pub chunk_size: u64,
    /// Blobs this size or smaller go up in one request.
    pub monolithic_limit: u64,
    /// Blobs moved at once.
    pub concurrency: usize,
    /// Docker's `config.json`; `None` reads no stored credentials.
    pub docker_config: Option<PathBuf>,
    /// Credentials given directly, by registry, ahead of the stored ones.
    pub credentials: HashMap<String, Credential>,
    pub user_agent: String,
    /// Where the digests of pushed files are remembered ([`crate::digest_cache`]); `None`
    /// hashes every file on every push.
    pub digest_cache: Option<PathBuf>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            plain_http: false,
            https: false,
            insecure: false,
            ca_file: None,
            registries: HashMap::new(),
            retries: 3,
            backoff: Duration::from_millis(250),
            chunk_size: 64 << 20,
            monolithic_limit: 8 << 20,
            concurrency: 4,
            docker_config: DockerConfig::default_path(),
            credentials: HashMap::new(),
            user_agent: concat!("wharf/", env!("CARGO_PKG_VERSION")).to_string(),
            digest_cache: crate::digest_cache::default_dir(),
        }
    }
}

/// How to reach one registry: the scheme and what TLS certificates to accept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    /// Plain HTTP (loopback registries use it anyway unless `https`).
    pub plain_http: bool,
    /// HTTPS, loopback registries included.
    pub https: bool,
    /// Accept certificates that do not verify.
    pub insecure: bool,
    /// PEM certificates to trust besides the system's.
    pub ca_file: Option<PathBuf>,
}

impl ClientOptions {
    /// The transport settings for `registry`: its own, else the defaults.
    pub fn transport(&self, registry: &str) -> Transport {
        self.registries
            .get(registry)
            .cloned()
            .unwrap_or_else(|| Transport {
                plain_http: self.plain_http,
                https: self.https,
                insecure: self.insecure,
                ca_file: self.ca_file.clone(),
            })
    }
}

/// A request body: bytes can be sent again (after a 401 or a retry); a stream only once.
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    Stream(reqwest::Body),
}

impl Body {
    fn replayable(&self) -> bool {
        !matches!(self, Body::Stream(_))
    }
}

/// A registry client; cheap to share behind an `Arc`, safe to use from many tasks.
///
/// The operations a CLI user has are methods here. The example starts a registry of its own
/// (`wharf serve` runs one for people); `host` is its `host:port`:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let registry = wharf_server::LocalRegistry::start(&dir.path().join("registry")).await?;
/// # let host = registry.host();
/// # std::fs::write(dir.path().join("app.yaml"), "replicas: 3\n")?;
/// # let (app_yaml, out) = (dir.path().join("app.yaml"), dir.path().join("out"));
/// use std::sync::Arc;
/// use wharf_client::artifact::{PushFile, PushRequest};
/// use wharf_client::copy::CopyOptions;
/// use wharf_client::pull::PullOptions;
/// use wharf_client::{Client, ClientOptions, NoProgress, Reference, SharedProgress};
///
/// let client = Client::new(ClientOptions::default())?;
/// let quiet: SharedProgress = Arc::new(NoProgress);
/// let r: Reference = format!("{host}/team/config:v1").parse()?;
/// // push a file as an artifact, under two tags
/// let file = PushFile { path: app_yaml, media_type: None, annotations: Default::default() };
/// let req = PushRequest { files: vec![file], ..PushRequest::default() };
/// let pushed = client.push_artifact(&r, &["v1".into(), "stable".into()], req, &quiet).await?;
/// // pull it back (charts, Flux bundles and, with `unpack`, images too)
/// client.pull(&r, &out, &PullOptions::default(), &quiet).await?;
/// assert_eq!(std::fs::read_to_string(out.join("app.yaml"))?, "replicas: 3\n");
/// // copy with referrers, remove a tag, delete by digest
/// let prod: Reference = format!("{host}/prod/config:v1").parse()?;
/// client.copy(&r, &prod, &CopyOptions { referrers: true, platform: None }, &quiet).await?;
/// client.untag(&r.with_tag("stable")?).await?;
/// assert_eq!(client.tags(&r).await?, ["v1"]);
/// client.delete_manifest(&r.with_digest(pushed.digest)).await?;
/// # Ok(()) }
/// ```
pub struct Client {
    http: reqwest::Client,
    /// Connection pools for registries with transport settings of their own.
    http_by_registry: HashMap<String, reqwest::Client>,
    pub(crate) opts: ClientOptions,
    tokens: TokenCache,
    token_fetch: tokio::sync::Mutex<()>,
    challenges: Mutex<HashMap<String, Challenge>>,
    credentials: Mutex<HashMap<String, Option<Credential>>>,
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Client> {
        let default = Transport {
            plain_http: opts.plain_http,
            https: opts.https,
            insecure: opts.insecure,
            ca_file: opts.ca_file.clone(),
        };
        let http = http_client(&opts, &default)?;
        let http_by_registry = opts
            .registries
            .iter()
            .map(|(registry, t)| Ok((registry.clone(), http_client(&opts, t)?)))
            .collect::<Result<_>>()?;
        Ok(Client {
            http,
            http_by_registry,
            opts,
            tokens: TokenCache::default(),
            token_fetch: tokio::sync::Mutex::new(()),
            challenges: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
        })
    }

    /// The connection pool for hosts that are not registries (key URLs).
    pub(crate) fn http_default(&self) -> &reqwest::Client {
        &self.http
    }

    /// The connection pool for `r`'s registry.
    pub(crate) fn http(&self, r: &Reference) -> &reqwest::Client {
        self.http_by_registry.get(&r.registry).unwrap_or(&self.http)
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// `http(s)://host` of the registry's API.
    pub fn base_url(&self, r: &Reference) -> String {
        let t = self.opts.transport(&r.registry);
        let scheme = if t.plain_http || (r.is_localhost() && !t.https) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", r.api_host())
    }

    /// The credential for `registry`: given directly, else from Docker's config (looked up
    /// once per run, since helpers are processes, and on a blocking thread, since reading
    /// the file and running a `docker-credential-*` helper block).
    pub async fn credential(&self, registry: &str) -> Result<Option<Credential>> {
        if let Some(c) = self.opts.credentials.get(registry) {
            return Ok(Some(c.clone()));
        }
        if let Some(c) = self.credentials.lock().expect("lock").get(registry) {
            return Ok(c.clone());
        }
        let found = match self.opts.docker_config.clone() {
            Some(p) => {
                let registry = registry.to_string();
                tokio::task::spawn_blocking(move || DockerConfig::load(&p)?.get(&registry))
                    .await
                    .map_err(|e| Error::Invalid(format!("credential lookup failed: {e}")))??
            }
            None => None,
        };
        self.credentials
            .lock()
            .expect("lock")
            .insert(registry.to_string(), found.clone());
        Ok(found)
    }

    /// Checks that the registry answers and that the credentials (if any) are accepted:
    /// `GET /v2/`, authenticating as it asks.
    pub async fn ping(&self, r: &Reference) -> Result<()> {
        let url = format!("{}/v2/", self.base_url(r));
        let resp = self
            .send(r, Method::GET, &url, &[], HeaderMap::new(), Body::Empty)
            .await?;
        check(resp, "GET", &url).await.map(drop)
    }

    async fn token(
        &self,
        r: &Reference,
        challenge: &Challenge,
        scopes: &[String],
    ) -> Result<Option<String>> {
        let Challenge::Bearer { realm, service, .. } = challenge else {
            return Ok(None);
        };
        let key = scopes.join(" ");
        if let Some(t) = self.tokens.get(&r.registry, &key) {
            return Ok(Some(t));
        }
        // Concurrent transfers wanting the same token wait for one fetch, not one each.
        let _one_fetch = self.token_fetch.lock().await;
        if let Some(t) = self.tokens.get(&r.registry, &key) {
            return Ok(Some(t));
        }
        let mut url = url::Url::parse(realm).map_err(|_| {
            Error::Auth(format!(
                "{}: token realm {realm:?} is not a URL",
                r.registry
            ))
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let mut req = self.http(r).get(url.clone());
        let cred = self.credential(&r.registry).await?;
        if let Some(c) = &cred {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = req.send().await.map_err(|source| Error::Transport {
            url: url.to_string(),
            source,
        })?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(match cred {
                Some(c) => Error::Auth(format!(
                    "{} refused the credentials for {}",
                    r.registry, c.username
                )),
                None => Error::Unauthorized(r.registry.clone()),
            });
        }
        let resp = check(resp, "GET", url.as_str()).await?;
        let body: TokenResponse = resp
            .json()
            .await
            .map_err(|e| Error::Auth(format!("{}: token service answer: {e}", r.registry)))?;
        let token = body
            .token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Auth(format!("{}: the token service sent no token", r.registry))
            })?;
        self.tokens
            .put(&r.registry, &key, token.clone(), body.expires_in);
        Ok(Some(token))
    }

    /// The Authorization header for a request, when the registry is known to want one.
    async fn authorization(&self, r: &Reference, scopes: &[String]) -> Result<Option<HeaderValue>> {
        let challenge = self
            .challenges
            .lock()
            .expect("lock")
            .get(&r.registry)
            .cloned();
        let value = match challenge {
            None => return Ok(None),
            Some(Challenge::Basic) => match self.credential(&r.registry).await? {
                Some(c) => format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", c.username, c.password))
                ),
                None => return Ok(None),
            },
            Some(c @ Challenge::Bearer { .. }) => match self.token(r, &c, scopes).await? {
                Some(t) => format!("Bearer {t}"),
                None => return Ok(None),
            },
        };
        Ok(HeaderValue::from_str(&value).ok())
    }

    /// Sends one request with authentication, answering a 401 challenge once, and retrying
    /// idempotent requests on transient failures. Returns whatever status came back last.
    pub(crate) async fn send(
        &self,
        r: &Reference,
        method: Method,
        url: &str,
        scopes: &[String],
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response> {
        // Learn the auth scheme first when a one-shot body cannot be sent twice, and when we
        // hold credentials: a registry that also serves anonymous callers would otherwise
        // answer with its anonymous view and never ask for them.
        let known = self
            .challenges
            .lock()
            .expect("lock")
            .contains_key(&r.registry);
        if !known && (!body.replayable() || self.credential(&r.registry).await?.is_some()) {
            self.learn_challenge(r).await?;
        }
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        ) && body.replayable();
        let mut body = Some(body);
        let mut answered_challenge = false;
        let mut retry = Retry::new(&self.opts);
        loop {
            let mut req = self
                .http(r)
                .request(method.clone(), url)
                .headers(headers.clone());
            if let Some(auth) = self.authorization(r, scopes).await? {
                req = req.header(AUTHORIZATION, auth);
            }
            let this_body = match body.take().expect("body present") {
                Body::Empty => {
                    body = Some(Body::Empty);
                    None
                }
                Body::Bytes(b) => {
                    body = Some(Body::Bytes(b.clone()));
                    Some(reqwest::Body::from(b))
                }
                Body::Stream(s) => Some(s),
            };
            if let Some(b) = this_body {
                req = req.body(b);
            }
            match req.send().await {
                Err(source) => {
                    let e = Error::Transport {
                        url: url.to_string(),
                        source,
                    };
                    if let Some(pause) = retry.after_error(&e).filter(|_| idempotent) {
                        tracing::debug!("{method} {url}: {e}; retrying in {pause:?}");
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    return Err(e);
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    let challenge = resp
                        .headers()
                        .get_all(WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .filter_map(parse_challenge)
                        .next();
                    let Some(challenge) = challenge else {
                        return Err(Error::Unauthorized(r.registry.clone()));
                    };
                    let known = self
                        .challenges
                        .lock()
                        .expect("lock")
                        .insert(r.registry.clone(), challenge.clone());
                    let can_answer = match &challenge {
                        Challenge::Basic => self.credential(&r.registry).await?.is_some(),
                        Challenge::Bearer { .. } => true,
                    };
                    if answered_challenge && known.is_some() || !can_answer || body.is_none() {
                        // Basic credentials were sent (the challenge was known) and refused.
                        let sent = answered_challenge || known.is_some();
                        if let (true, Challenge::Basic) = (sent, &challenge) {
                            if let Some(c) = self.credential(&r.registry).await? {
                                return Err(Error::Auth(format!(
                                    "{} refused the credentials for {}",
                                    r.registry, c.username
                                )));
                            }
                        }
                        return Err(Error::Unauthorized(r.registry.clone()));
                    }
                    answered_challenge = true;
                }
                Ok(resp) if idempotent => match retry.after_status(resp.status(), resp.headers()) {
                    Some(pause) => {
                        tracing::debug!("{method} {url}: {}; retrying in {pause:?}", resp.status());
                        tokio::time::sleep(pause).await;
                    }
                    None => return Ok(resp),
                },
                Ok(resp) => return Ok(resp),
            }
        }
    }

    async fn learn_challenge(&self, r: &Reference) -> Result<()> {
        let url = format!("{}/v2/", self.base_url(r));
        let resp = self
            .http(r)
            .get(&url)
            .send()
            .await
            .map_err(|source| Error::Transport {
                url: url.clone(),
                source,
            })?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            if let Some(c) = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_challenge)
            {
                self.challenges
                    .lock()
                    .expect("lock")
                    .insert(r.registry.clone(), c);
            }
        }
        Ok(())
    }
}

/// One connection pool with `t`'s certificate settings.
fn http_client(opts: &ClientOptions, t: &Transport) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(&opts.user_agent)
        .tls_danger_accept_invalid_certs(t.insecure)
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(300))
        .tcp_nodelay(true)
        // Redirects (presigned blob URLs) must not carry our Authorization header
        // elsewhere; reqwest drops it on a cross-host redirect.
        .redirect(reqwest::redirect::Policy::limited(10));
    if let Some(path) = &t.ca_file {
        let pem = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)",
                    path.display()
                ))
            })?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))
}

/// What a bodiless 403 refused: access to the repository in the API path `url` names.
fn refused_access(url: &str) -> String {
    let path = url.split_once("/v2/").map_or("", |(_, p)| p);
    let repository = ["/blobs/", "/manifests/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|seg| path.find(seg).map(|i| &path[..i]))
        .min_by_key(|r| r.len());
    match repository {
        Some(r) if !r.is_empty() => {
            format!("access to {r} refused for these credentials (a HEAD answer gives no reason)")
        }
        _ => "access refused for these credentials (a HEAD answer gives no reason)".into(),
    }
}

/// Turns an error status into [`Error::Registry`], reading the spec's JSON error body.
pub(crate) async fn check(resp: Response, method: &str, url: &str) -> Result<Response> {
    let status = resp.status();
    if status.is_success() || status.is_redirection() {
        return Ok(resp);
    }
    let retry_after = crate::retry::retry_after(resp.headers());
    // Go's HTTPS servers answer a plain-HTTP request with a bare HTTP/1.0 400 ("Client sent an
    // HTTP request to an HTTPS server."); no registry answers its API that way.
    let bare_http10 = resp.version() == reqwest::Version::HTTP_10 && url.starts_with("http://");
    let body = resp.bytes().await.unwrap_or_default();
    if status == StatusCode::BAD_REQUEST
        && (bare_http10
            || body
                .windows(29)
                .any(|w| w == b"HTTP request to an HTTPS serv"))
    {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            .unwrap_or_else(|| url.to_string());
        return Err(Error::Invalid(format!(
            "{host} speaks HTTPS: drop --plain-http or use --https"
        )));
    }
    let first = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("errors")?.get(0).cloned())
        .or_else(|| {
            // HEAD answers have no body: name the common refusals anyway, and say what a
            // refusal was about, since the registry could not.
            let (code, message) = match status.as_u16() {
                401 => ("UNAUTHORIZED", None),
                403 => ("DENIED", Some(refused_access(url))),
                404 => ("NOT_FOUND", None),
                _ => return None,
            };
            Some(serde_json::json!({ "code": code, "message": message }))
        });
    let field = |k: &str| {
        first
            .as_ref()
            .and_then(|e| e.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    Err(Error::Registry {
        method: method.to_string(),
        url: url.to_string(),
        status: status.as_u16(),
        code: field("code").map(|c| RegistryCode::parse(&c)),
        message: field("message"),
        retry_after,
    })
}
