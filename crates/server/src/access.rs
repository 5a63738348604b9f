//! What operators see of each request: a request id (the client's `X-Request-Id` when it
//! sent a sane one, else a new one) on every log line of the request and in the response
//! header, one access-log line per request, and the `/healthz` and `/readyz` probes.

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use wharf_store::Registry;

use crate::error::ApiError;
use crate::json_response;
use crate::route::Route;

pub(crate) const REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    /// The id of the request this task serves (for error messages that quote it).
    pub(crate) static CURRENT: String;
}

/// Who made a request, as the access log names them (set once authenticated).
#[derive(Clone)]
pub(crate) struct User(pub String);

/// The client's id when it is 1 to 64 characters of `[A-Za-z0-9._-]`, else a new one.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(new_id)
}

/// A new id: 64 random bits chosen once per process, then a counter (no system call per
/// request, unique within the process and, in practice, across replicas).
fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    format!("{prefix:016x}{:016x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The id of the request being served, if any.
pub(crate) fn current_id() -> Option<String> {
    CURRENT.try_with(|id| id.clone()).ok()
}

/// What a path names: a fixed label for the log, the repository in it, and for the
/// distribution API the parsed route, which the dispatcher uses (the path is parsed once).
pub(crate) fn route_of(
    path: &str,
) -> (
    &'static str,
    Option<String>,
    Option<Result<Route, ApiError>>,
) {
    match path {
        "/healthz" | "/readyz" => return ("health", None, None),
        "/token" => return ("token", None, None),
        "/metrics" => return ("metrics", None, None),
        p if p.starts_with("/charts/") => return ("chart-repository", None, None),
        _ => {}
    }
    let parsed = Route::parse(path);
    let (label, name) = match &parsed {
        Ok(Route::Base) => ("base", None),
        Ok(Route::Catalog) => ("catalog", None),
        Ok(Route::Extensions) => ("extensions", None),
        Ok(Route::Search) => ("search", None),
        Ok(Route::GarbageCollection) => ("gc", None),
        Ok(Route::Tags { name }) => ("tags", Some(name)),
        Ok(Route::Manifest { name, .. }) => ("manifest", Some(name)),
        Ok(Route::Blob { name, .. }) => ("blob", Some(name)),
        Ok(Route::UploadStart { name } | Route::Upload { name, .. }) => ("upload", Some(name)),
        Ok(Route::Referrers { name, .. }) => ("referrers", Some(name)),
        Ok(Route::Artifacts { name }) => ("artifacts", Some(name)),
        Err(_) => ("unknown", None),
    };
    (label, name.cloned(), Some(parsed))
}

/// One access-log line: method, route, repository, status, bytes in and out, duration and
/// user. Query strings are never logged (they can carry tokens).
pub(crate) fn log(
    method: &Method,
    route: &'static str,
    repository: Option<&str>,
    response: &Response,
    bytes_in: Option<u64>,
    took: std::time::Duration,
) {
    let bytes_out = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| axum::body::HttpBody::size_hint(response.body()).exact())
        .unwrap_or(0);
    let user = response.extensions().get::<User>().map(|u| u.0.as_str());
    tracing::info!(
        target: "wharf::access",
        %method,
        route,
        repository = repository.unwrap_or("-"),
        status = response.status().as_u16(),
        bytes_in = bytes_in.unwrap_or(0),
        bytes_out,
        micros = took.as_micros() as u64,
        user = user.unwrap_or("-"),
        "access"
    );
}

/// `/readyz`: 200 when both stores answer, else 503 naming which did not (the reason goes
/// to the log, not to the caller).
pub(crate) async fn ready(registry: &Registry) -> Response {
    let (metadata, blobs) = registry.ready().await;
    let word = |r: &Result<(), String>| if r.is_ok() { "ok" } else { "failing" };
    for (store, r) in [("metadata", &metadata), ("blobs", &blobs)] {
        if let Err(e) = r {
            tracing::warn!(store, "not ready: {e}");
        }
    }
    let ok = metadata.is_ok() && blobs.is_ok();
    let body = serde_json::json!({
        "status": if ok { "ready" } else { "not ready" },
        "metadata": word(&metadata),
        "blobs": word(&blobs),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_taken_only_when_sane() {
        let mut h = HeaderMap::new();
        assert_eq!(request_id(&h).len(), 32);
        h.insert(REQUEST_ID, "abc-123.X_y".parse().unwrap());
        assert_eq!(request_id(&h), "abc-123.X_y");
        for bad in ["", "has space", "semi;colon", &"x".repeat(65)] {
            h.insert(REQUEST_ID, bad.parse().unwrap());
            assert_ne!(request_id(&h), bad, "{bad:?}");
        }
    }

    #[test]
    fn routes_are_fixed_labels() {
        let labels = |p: &str| {
            let (l, r, _) = route_of(p);
            (l, r)
        };
        assert_eq!(
            labels("/v2/a/b/manifests/v1"),
            ("manifest", Some("a/b".into()))
        );
        assert_eq!(labels("/v2/a/blobs/uploads/"), ("upload", Some("a".into())));
        assert_eq!(labels("/readyz"), ("health", None));
        assert_eq!(labels("/nope"), ("unknown", None));
        assert!(
            route_of("/v2/a/tags/list").2.unwrap().is_ok(),
            "the parsed route is kept"
        );
    }
}
