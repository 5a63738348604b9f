//! `GET /token`: the Docker registry token service's HTTP face. `wharf_auth` decides what the
//! caller gets; this reads the query and the credentials and writes the JSON answer.

use std::net::IpAddr;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wharf_auth::{Auth, AuthError};
use wharf_oci::ErrorCode;

use crate::error::ApiError;

/// Answers a token request; `query` is the raw query string.
pub async fn issue(auth: &Auth, headers: &HeaderMap, query: &str, ip: Option<IpAddr>) -> Response {
    match issue_inner(auth, headers, query, ip).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn issue_inner(
    auth: &Auth,
    headers: &HeaderMap,
    query: &str,
    ip: Option<IpAddr>,
) -> Result<Response, ApiError> {
    let mut service = None;
    let mut scopes = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "service" => service = Some(v.into_owned()),
            // Several scopes may also come space-separated in one parameter.
            "scope" => scopes.extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_string)),
            _ => {}
        }
    }
    let credentials = super::credentials(headers, None);
    let issued = match auth
        .issue_token(credentials, ip, service.as_deref(), &scopes)
        .await
    {
        Ok(t) => t,
        // The failure was counted against the address already.
        Err(AuthError::InvalidCredentials) => {
            return Err(
                ApiError::new(ErrorCode::Unauthorized, "invalid user name or password")
                    .with_header("www-authenticate", "Basic realm=\"wharf\"".into()),
            )
        }
        Err(e) => return Err(e.into()),
    };
    let issued_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let body = json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued_at,
    });
    Ok(crate::json_response(StatusCode::OK, body.to_string()))
}
