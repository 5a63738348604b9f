//! The HTTP face of access control (`wharf_auth` decides; this reads and answers): the
//! credentials of a request, the 401 challenge that sends clients to the token service, and
//! the token service's endpoint.

mod endpoint;

use axum::http::HeaderMap;
use wharf_auth::{Auth, Caller, Credentials, Need};
use wharf_oci::ErrorCode;

pub use endpoint::issue;

use crate::error::ApiError;

/// The subject common name of a verified TLS client certificate, put on the request by the
/// TLS listener; it identifies the caller as the user of that name (mTLS).
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub String);

/// What the request presents: its Authorization header, else its client certificate.
pub(crate) fn credentials<'a>(
    headers: &'a HeaderMap,
    cert: Option<&'a ClientCertificate>,
) -> Credentials<'a> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    Credentials::parse(header, cert.map(|c| c.0.as_str()))
}

/// The 401 for a request that needs credentials: a bearer challenge naming the scope when
/// the token service runs, else a basic one.
pub(crate) fn challenge(auth: &Auth, headers: &HeaderMap, need: &Need) -> ApiError {
    let value = match auth.token_service() {
        Some(service) => {
            let realm = realm(auth, headers);
            let scope = need
                .scope()
                .map(|s| format!(",scope=\"{s}\""))
                .unwrap_or_default();
            format!("Bearer realm=\"{realm}\",service=\"{service}\"{scope}")
        }
        None => "Basic realm=\"wharf\"".to_string(),
    };
    ApiError::new(ErrorCode::Unauthorized, "authentication required")
        .with_header("www-authenticate", value)
}

/// A token caller whose token lacks the scope gets the challenge for it along with the 403,
/// so clients that fetched a narrower token first (the oras SDK) can ask for the right one;
/// if their credentials do not allow it, the new token will not either.
pub(crate) fn insufficient_scope(
    auth: &Auth,
    denied: ApiError,
    headers: &HeaderMap,
    need: &Need,
    caller: &Caller,
) -> ApiError {
    if !caller.holds_token() {
        return denied;
    }
    let challenge = challenge(auth, headers, need);
    match challenge.header("www-authenticate") {
        Some(v) => denied.with_header(
            "www-authenticate",
            format!("{v},error=\"insufficient_scope\""),
        ),
        None => denied,
    }
}

fn realm(auth: &Auth, headers: &HeaderMap) -> String {
    if let Some(r) = &auth.config.realm {
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
