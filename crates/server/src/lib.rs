//! The distribution-spec HTTP API. Repository names contain slashes, so one dispatcher parses
//! the path into a [`route::Route`] and calls a handler; handlers parse the request, call the
//! [`Registry`], and format the answer. Every failure becomes the spec's JSON error in
//! [`error`], the one place where errors meet status codes.

mod access;
mod artifacts;
pub mod auth;
mod blobs;
mod chart_repo;
mod drain;
pub mod error;
pub mod gc;
mod listing;
mod local;
mod manifests;
pub mod metrics;
mod pull_policy;
mod request;
pub mod route;
mod uploads;
pub mod webhooks;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use wharf_oci::ErrorCode;
use wharf_store::Registry;

use crate::error::ApiError;
use crate::route::Route;
use wharf_auth::{Actions, Auth, Caller, Need};

pub use local::LocalRegistry;

/// Knobs of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest `n` a listing accepts, and the page size when `n` is absent.
    pub max_page_size: usize,
    /// Advertised as `OCI-Chunk-Min-Length`: the smallest chunk worth sending.
    pub chunk_min_length: u64,
    /// How long a request body may go without sending a byte before the request fails.
    pub body_idle_timeout: std::time::Duration,
    /// The most of an unread request body discarded so that a refusal reaches the client
    /// (see `drain`); a longer one gets its answer with `Connection: close`.
    pub drain_max_bytes: u64,
    /// Serve pulls only (maintenance mode): every write is refused.
    pub read_only: bool,
    /// Signature policy enforced on manifest pulls (see `pull_policy`).
    pub pull_policy: Option<Arc<wharf_sign::policy::Policy>>,
    /// Metrics, recorded when present.
    pub metrics: Option<Arc<metrics::Metrics>>,
    /// Who may read `/metrics` on this port.
    pub metrics_access: MetricsAccess,
    /// Defaults of on-demand garbage collection passes.
    pub gc: GcDefaults,
    /// Where events are POSTed, when configured.
    pub webhooks: Option<Arc<webhooks::Webhooks>>,
}

/// What an on-demand collection pass uses unless the request says otherwise.
#[derive(Debug, Clone)]
pub struct GcDefaults {
    pub grace: std::time::Duration,
    pub upload_expiry: std::time::Duration,
}

impl Default for GcDefaults {
    fn default() -> Self {
        GcDefaults {
            grace: std::time::Duration::from_secs(3600),
            upload_expiry: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// Who may read `/metrics` on the API port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Anyone (also what an open registry, without access control, does with any setting
    /// but `Elsewhere`).
    Public,
    /// Admins and these users, once authenticated.
    Users(Vec<String>),
    /// Nobody: the metrics are served on a port of their own ([`metrics_router`]).
    Elsewhere,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_page_size: 10_000,
            chunk_min_length: 1024 * 1024,
            body_idle_timeout: std::time::Duration::from_secs(60),
            drain_max_bytes: 64 * 1024 * 1024,
            read_only: false,
            pull_policy: None,
            metrics: None,
            metrics_access: MetricsAccess::Users(Vec::new()),
            gc: GcDefaults::default(),
            webhooks: None,
        }
    }
}

pub(crate) struct App {
    registry: Arc<Registry>,
    options: ServerOptions,
    /// Access control; `None` serves everyone (the operator chose anonymous access).
    auth: Option<Arc<Auth>>,
    pull_policy: Option<pull_policy::PullPolicy>,
}

pub type ApiResult = Result<Response, ApiError>;

pub fn router(registry: Arc<Registry>, options: ServerOptions, auth: Option<Arc<Auth>>) -> Router {
    let pull_policy = options
        .pull_policy
        .clone()
        .map(pull_policy::PullPolicy::new);
    let app = Arc::new(App {
        registry,
        options,
        auth,
        pull_policy,
    });
    Router::new().fallback(dispatch).with_state(app)
}

/// `/metrics` alone, for a listener of its own (an address only Prometheus reaches).
pub fn metrics_router(registry: Arc<Registry>, metrics: Arc<metrics::Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { metrics_response(&metrics, &registry).await }),
    )
}

async fn metrics_response(metrics: &metrics::Metrics, registry: &Registry) -> Response {
    let mut r = Response::new(Body::from(metrics.render(registry).await));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `/metrics` on the API port, for whom the operator allows.
async fn serve_metrics(app: &App, req: Head<'_>) -> ApiResult {
    let (Some(metrics), false) = (
        &app.options.metrics,
        app.options.metrics_access == MetricsAccess::Elsewhere,
    ) else {
        return Err(ApiError::new(
            ErrorCode::NameUnknown,
            "no metrics here: the registry serves them on the address in [metrics] listen, \
             or not at all",
        )
        .with_status(StatusCode::NOT_FOUND));
    };
    if req.method != Method::GET {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("method {} is not allowed on /metrics", req.method),
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .with_header("allow", "GET".into()));
    }
    if let (Some(auth), MetricsAccess::Users(users)) = (&app.auth, &app.options.metrics_access) {
        let caller = check_need(auth, Need::Login, None, req).await?;
        let who = caller.subject.id();
        if !auth.is_admin(&caller) && !users.iter().any(|u| u == &who) {
            return Err(ApiError::new(
                ErrorCode::Denied,
                format!("{who} may not read the metrics (admins and [metrics] users may)"),
            ));
        }
    }
    Ok(metrics_response(metrics, &app.registry).await)
}

const API_VERSION: HeaderValue = HeaderValue::from_static("registry/2.0");

async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let id = access::request_id(req.headers());
    let span = tracing::info_span!("request", id = %id);
    let served = access::CURRENT.scope(id.clone(), handle(app, req));
    let mut response = tracing::Instrument::instrument(served, span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(access::REQUEST_ID, v);
    }
    response
}

async fn handle(app: Arc<App>, req: Request) -> Response {
    let method = req.method().clone();
    // Only paths are logged: query strings can carry tokens once auth lands.
    let path = tracing::enabled!(tracing::Level::DEBUG).then(|| req.uri().path().to_string());
    let started = std::time::Instant::now();
    let (route_name, repository, parsed) = access::route_of(req.uri().path());
    let bytes_in = request::content_length(&req);
    let origin = app
        .options
        .webhooks
        .as_ref()
        .map(|_| webhooks::RequestRecord::of(&req, &access::current_id().unwrap_or_default()));
    // Requests without a body (most GETs) skip the shared handle.
    let (req, body) = if request::has_body(&req) {
        let expect = req.headers().contains_key(header::EXPECT);
        let (parts, body) = req.into_parts();
        let (handle, reader) = drain::BodyHandle::new(body);
        (Request::from_parts(parts, reader), Some((handle, expect)))
    } else {
        (req, None)
    };
    let mut response = match route(&app, req, parsed).await {
        Ok(r) => r,
        Err(e) => e.log_internal(&method).into_response(),
    };
    if let (Some(hooks), Some(origin)) = (&app.options.webhooks, &origin) {
        if let Some(notices) = response.extensions().get::<webhooks::Notices>() {
            let actor = response.extensions().get::<access::User>();
            hooks.notify(notices, origin, actor.map(|u| u.0.as_str()));
        }
    }
    if let Some(metrics) = &app.options.metrics {
        metrics.record(
            &method,
            route_name,
            repository.as_deref(),
            &mut response,
            started,
        );
    }
    if let Some((handle, expect)) = body {
        let limits = drain::DrainLimits {
            max_bytes: app.options.drain_max_bytes,
            idle: app.options.body_idle_timeout,
            max_time: app.options.body_idle_timeout,
        };
        handle.drain(expect, limits, &mut response).await;
    }
    response
        .headers_mut()
        .insert("docker-distribution-api-version", API_VERSION);
    access::log(
        &method,
        route_name,
        repository.as_deref(),
        &response,
        bytes_in,
        started.elapsed(),
    );
    if let Some(path) = path {
        tracing::debug!(
            %method,
            path,
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
    }
    response
}

/// Serves `req`; `parsed` is its path as a distribution API route, when it is one.
async fn route(app: &App, req: Request, parsed: Option<Result<Route, ApiError>>) -> ApiResult {
    match req.uri().path() {
        "/healthz" => return Ok(json_response(StatusCode::OK, r#"{"status":"up"}"#)),
        "/readyz" => return Ok(access::ready(&app.registry).await),
        "/metrics" => return serve_metrics(app, Head::of(&req)).await,
        _ => {}
    }
    if req.uri().path() == "/token" {
        if let Some(auth) = &app.auth {
            // Only the GET form of the token protocol. Clients that try the OAuth2 POST
            // first (docker, containerd) fall back to GET on 405; answering a POST without
            // reading its form would hand them an anonymous token as if the login worked.
            if req.method() != Method::GET {
                return Err(ApiError::new(
                    ErrorCode::Unsupported,
                    "the token service answers GET with basic credentials",
                )
                .with_status(StatusCode::METHOD_NOT_ALLOWED)
                .with_header("allow", "GET".into()));
            }
            let ip = auth::client_address(auth, Head::of(&req));
            let query = req.uri().query().unwrap_or("");
            return Ok(auth::issue(auth, req.headers(), query, ip).await);
        }
    }
    if let Some(rest) = req.uri().path().strip_prefix("/charts/") {
        let rest = rest.to_string();
        return chart_repo::serve(app, &rest, req).await;
    }
    let route = match parsed {
        Some(r) => r?,
        None => Route::parse(req.uri().path())?,
    };
    let m = req.method().clone();
    if app.options.read_only && !matches!(m, Method::GET | Method::HEAD) {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "the registry is in read-only mode (wharf serve --read-only): pulls only",
        ));
    }
    let caller = authorize(app, &route, Head::of(&req)).await?;
    let who = caller.as_ref().map(|c| access::User(c.subject.id()));
    // Errors become responses here, so the access log names the caller of a refusal too.
    let mut answer = match serve_route(app, route, req, caller.as_ref()).await {
        Ok(r) => r,
        Err(e) => e.log_internal(&m).into_response(),
    };
    if let Some(who) = who {
        answer.extensions_mut().insert(who);
    }
    Ok(answer)
}

async fn serve_route(app: &App, route: Route, req: Request, caller: Option<&Caller>) -> ApiResult {
    let m = req.method().clone();
    let head = m == Method::HEAD;
    match (route, m) {
        (Route::Base, Method::GET | Method::HEAD) => Ok(json_response(StatusCode::OK, "{}")),
        (Route::Catalog, Method::GET) => listing::catalog(app, req, caller).await,
        (Route::Extensions, Method::GET) => Ok(artifacts::extensions()),
        (Route::Search, Method::GET) => artifacts::search(app, req, caller).await,
        (Route::GarbageCollection, _) => gc::run(app, req, caller).await,
        (Route::Artifacts { name }, Method::GET) => artifacts::list(app, &name, req).await,
        (Route::Tags { name }, Method::GET) => listing::tags(app, &name, req).await,
        (Route::Referrers { name, digest }, Method::GET) => {
            listing::referrers(app, &name, &digest, req).await
        }
        (Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
            manifests::get(app, &name, &reference, head).await
        }
        (Route::Manifest { name, reference }, Method::PUT) => {
            manifests::put(app, &name, &reference, req, caller).await
        }
        (Route::Manifest { name, reference }, Method::DELETE) => {
            manifests::delete(app, &name, &reference).await
        }
        (Route::Blob { name, digest }, Method::GET | Method::HEAD) => {
            blobs::get(app, &name, &digest, req, head).await
        }
        (Route::Blob { name, digest }, Method::DELETE) => blobs::delete(app, &name, &digest).await,
        (Route::UploadStart { name }, Method::POST) => {
            uploads::start(app, &name, req, caller).await
        }
        (Route::Upload { name, id }, Method::GET) => uploads::status(app, &name, &id).await,
        (Route::Upload { name, id }, Method::PATCH) => uploads::patch(app, &name, &id, req).await,
        (Route::Upload { name, id }, Method::PUT) => uploads::put(app, &name, &id, req).await,
        (Route::Upload { name, id }, Method::DELETE) => uploads::cancel(app, &name, &id).await,
        (_, m) => Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("method {m} is not allowed on this endpoint"),
        )),
    }
}

/// The parts of a request that access control reads; unlike the request (whose body is not
/// `Sync`), they may be held across an await.
#[derive(Clone, Copy)]
pub(crate) struct Head<'a> {
    pub method: &'a Method,
    pub uri: &'a axum::http::Uri,
    pub headers: &'a axum::http::HeaderMap,
    pub extensions: &'a axum::http::Extensions,
}

impl<'a> Head<'a> {
    fn of(req: &'a Request) -> Head<'a> {
        Head {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }
}

/// Decides whether the caller may make this request: `None` when access control is off,
/// else the authenticated caller for handlers that refine the decision (overwrites, mounts,
/// the catalog).
async fn authorize(app: &App, route: &Route, req: Head<'_>) -> Result<Option<Caller>, ApiError> {
    let Some(auth) = &app.auth else {
        return Ok(None);
    };
    let m = req.method;
    let repo = |name: &str, a: Actions| Need::Repository(name.to_string(), a);
    let need = match (route, m) {
        (Route::Base, _) => Need::Login,
        (Route::Catalog, _) => Need::Catalog,
        (Route::Manifest { name, .. }, &Method::PUT) => repo(name, Actions::PUSH),
        (Route::Manifest { name, .. } | Route::Blob { name, .. }, &Method::DELETE) => {
            repo(name, Actions::DELETE)
        }
        (
            Route::Tags { name }
            | Route::Referrers { name, .. }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. },
            _,
        ) => repo(name, Actions::PULL),
        (Route::UploadStart { name } | Route::Upload { name, .. }, _) => repo(name, Actions::PUSH),
        (Route::Extensions | Route::Search | Route::GarbageCollection, _) => Need::Login,
        (Route::Artifacts { name }, _) => repo(name, Actions::PULL),
    };
    // A cross-repository mount also reads the source: the challenge names its pull scope,
    // so a client that follows challenges gets a token with which the mount succeeds.
    let mount_from = match route {
        Route::UploadStart { .. } if m == Method::POST => request::Query::parse(req.uri)?
            .get("from")
            .filter(|f| !f.is_empty() && wharf_oci::validate_repository(f).is_ok())
            .map(|f| Need::Repository(f.to_string(), Actions::PULL)),
        _ => None,
    };
    check_need(auth, need, mount_from, req).await.map(Some)
}

/// Authenticates the caller and checks that it may do `need` (and `also`); a refusal is a
/// challenge for a caller that can do better with other credentials or a new token.
pub(crate) async fn check_need(
    auth: &Auth,
    need: Need,
    mount_from: Option<Need>,
    req: Head<'_>,
) -> Result<Caller, ApiError> {
    let headers = req.headers;
    let origin = auth::Origin {
        headers,
        tls: req.extensions.get::<auth::Https>().is_some(),
    };
    let challenge = |error: Option<&str>| {
        let needs: Vec<&Need> = std::iter::once(&need).chain(mount_from.as_ref()).collect();
        auth::challenge(auth, origin, &needs, error)
    };
    let ip = auth::client_address(auth, req);
    let cert = req.extensions.get::<auth::ClientCertificate>();
    let caller = auth
        .authenticate(auth::credentials(headers, cert), ip)
        .await
        .map_err(|e| match e {
            wharf_auth::AuthError::InvalidCredentials => challenge(None),
            e => ApiError::from(e),
        })?;
    if auth.allows(&caller, &need) {
        return Ok(caller);
    }
    let what = match &need {
        Need::Repository(name, a) => format!("{a} on {name}"),
        Need::Catalog => "list the catalog".into(),
        Need::Login => "log in".into(),
    };
    if caller.is_anonymous() {
        Err(challenge(None))
    } else if caller.holds_token() && auth.subject_allows(&caller, &need) {
        // The identity may; the token it holds was issued for less. A new token will do.
        Err(challenge(Some("insufficient_scope")).with_message(format!("the token lacks {what}")))
    } else {
        Err(ApiError::new(
            ErrorCode::Denied,
            format!("{} may not {what}", caller.subject.id()),
        ))
    }
}

/// Whether a refined check passes: always without access control.
pub(crate) fn may(app: &App, caller: Option<&Caller>, repository: &str, a: Actions) -> bool {
    match (&app.auth, caller) {
        (Some(auth), Some(c)) => auth.rights(c, repository).contains(a),
        _ => true,
    }
}

pub(crate) fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Builds a response with no body and the given headers.
pub(crate) fn empty(status: StatusCode, headers: &[(&'static str, String)]) -> ApiResult {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    for (k, v) in headers {
        r.headers_mut().insert(*k, header_value(v)?);
    }
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(r)
}

pub(crate) fn header_value(v: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(v).map_err(|_| ApiError::internal("unrepresentable header value"))
}
