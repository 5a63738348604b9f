//! The HTTP face of access control (`wharf_auth` decides; this reads and answers): the
//! credentials of a request, the 401 challenge that sends clients to the token service, and
//! the token service's endpoint.

mod endpoint;

use std::net::IpAddr;

use axum::http::HeaderMap;
use wharf_auth::{Auth, Credentials, Need};
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

/// The client's address for the failed-login limit: the connection's peer, or, when the
/// peer is a trusted proxy, the last address in `X-Forwarded-For` that is not one.
pub(crate) fn client_address(auth: &Auth, req: crate::Head<'_>) -> Option<IpAddr> {
    let peer = req
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())?;
    let trusted = |ip: &IpAddr| auth.config.trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = req
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|a| a.trim().parse::<IpAddr>())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted(ip))
            .unwrap_or(peer),
    )
}

/// The 401 for a request that needs credentials: a bearer challenge naming the scopes when
/// the token service runs, else a basic one. `error` is the RFC 6750 error code, for a token
/// that lacks a scope (`insufficient_scope`).
pub(crate) fn challenge(
    auth: &Auth,
    origin: Origin<'_>,
    needs: &[&Need],
    error: Option<&str>,
) -> ApiError {
    let value = match auth.token_service() {
        Some(service) => {
            let realm = realm(auth, origin);
            let scopes: Vec<String> = needs.iter().filter_map(|n| n.scope()).collect();
            let scope = if scopes.is_empty() {
                String::new()
            } else {
                format!(",scope=\"{}\"", scopes.join(" "))
            };
            let error = error.map(|e| format!(",error=\"{e}\"")).unwrap_or_default();
            format!("Bearer realm=\"{realm}\",service=\"{service}\"{scope}{error}")
        }
        None => "Basic realm=\"wharf\"".to_string(),
    };
    ApiError::new(ErrorCode::Unauthorized, "authentication required")
        .with_header("www-authenticate", value)
}

/// The configured realm, else the token URL on the host the client used. The `Host` header
/// and `X-Forwarded-Proto` end up inside a quoted header parameter, so only a plain host name
/// or address with a port is taken, and only `http` or `https`.
fn realm(auth: &Auth, origin: Origin<'_>) -> String {
    if let Some(r) = &auth.config.realm {
        return r.clone();
    }
    let header = |name: &str| origin.headers.get(name).and_then(|h| h.to_str().ok());
    let host = header("host")
        .filter(|h| valid_host(h))
        .unwrap_or("localhost");
    let proto = match header("x-forwarded-proto") {
        Some("https") => "https",
        Some("http") => "http",
        _ if origin.tls => "https",
        _ => "http",
    };
    format!("{proto}://{host}/token")
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

/// Put on requests by a TLS listener: the default realm is then `https://`.
#[derive(Debug, Clone, Copy)]
pub struct Https;

/// What the default realm is built from: the request's headers, and whether it came over TLS.
#[derive(Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub headers: &'a HeaderMap,
    pub tls: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_may_go_into_a_realm() {
        for ok in [
            "registry.example.com",
            "127.0.0.1:5000",
            "[::1]:5000",
            "a_b-c",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "a\"b", "x,error=\"y", "host/path", "a b", "h\r\nX: y"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
