//! `GET /token`: the Docker registry token service. It grants, of the scopes asked for, what
//! the caller's credentials allow (anonymous callers get what anonymous policies allow), in a
//! short-lived JWT that this registry's replicas verify with the shared key.

use std::net::IpAddr;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wharf_spec::ErrorCode;
use wharf_store::Registry;

use super::policy::Actions;
use super::token::{parse_scope, Access, Claims};
use super::{Auth, Caller, Subject};
use crate::error::ApiError;

/// Answers a token request; `query` is the raw query string.
pub async fn issue(
    auth: &Auth,
    registry: &Registry,
    headers: &HeaderMap,
    query: &str,
    ip: Option<IpAddr>,
) -> Response {
    match issue_inner(auth, registry, headers, query, ip).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn issue_inner(
    auth: &Auth,
    registry: &Registry,
    headers: &HeaderMap,
    query: &str,
    ip: Option<IpAddr>,
) -> Result<Response, ApiError> {
    let Some(keys) = auth.config.token.as_ref() else {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "this registry issues no tokens; use basic auth",
        )
        .with_status(StatusCode::NOT_FOUND));
    };
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
    if let Some(s) = &service {
        if s != &keys.service {
            return Err(ApiError::new(
                ErrorCode::Denied,
                format!("this token service is for {:?}, not {s:?}", keys.service),
            ));
        }
    }
    let caller = match auth.authenticate(headers, ip, registry).await {
        Ok(c) => c,
        Err(e) => {
            // authenticate() has counted the failure against the address already.
            if e.code() == ErrorCode::Unauthorized {
                return Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "invalid user name or password",
                )
                .with_header("www-authenticate", "Basic realm=\"wharf\"".into()));
            }
            return Err(e);
        }
    };
    // A token is not a credential for getting another token with more rights: only
    // passwords and API keys are.
    let caller = if headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("bearer "))
    {
        Caller::anonymous()
    } else {
        caller
    };
    let mut access = Vec::new();
    for s in &scopes {
        let Some((kind, name, actions)) = parse_scope(s) else {
            continue;
        };
        match kind.as_str() {
            "repository" => {
                let wanted =
                    Actions::parse(
                        actions
                            .iter()
                            .map(|a| if a == "*" { "*" } else { a.as_str() }),
                    )
                    .unwrap_or(Actions::NONE);
                let have = auth.rights(&caller, &name);
                let mut granted = wanted.intersect(have);
                // Pushing may overwrite a tag only for those with that right; it travels in
                // the token so every replica enforces it without asking again.
                if granted.contains(Actions::PUSH) && have.contains(Actions::OVERWRITE) {
                    granted = granted.union(Actions::OVERWRITE);
                }
                if !granted.is_empty() {
                    access.push(Access {
                        kind,
                        name,
                        actions: granted.names().into_iter().map(str::to_string).collect(),
                    });
                }
            }
            "registry" if name == "catalog" && auth.may_list_catalog(&caller) => {
                access.push(Access {
                    kind,
                    name,
                    actions: vec!["*".into()],
                })
            }
            _ => {}
        }
    }
    let now = wharf_store::meta::now();
    let ttl = auth.config.token_ttl.as_secs() as i64;
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
    if !matches!(caller.subject, Subject::Anonymous) {
        tracing::info!(subject = %claims.sub, scopes = ?scopes, "token issued");
    }
    let token = keys.sign(&claims);
    let issued_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let body =
        json!({"token": token, "access_token": token, "expires_in": ttl, "issued_at": issued_at});
    Ok(crate::json_response(StatusCode::OK, body.to_string()))
}
