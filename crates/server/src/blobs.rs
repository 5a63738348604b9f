//! Blob endpoints: GET (with Range), HEAD, DELETE.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use wharf_oci::Digest;

use crate::request::{byte_range, header_str};
use crate::{empty, header_value, ApiResult, App};

pub(crate) async fn get(
    app: &App,
    name: &str,
    digest: &str,
    req: Request,
    head: bool,
) -> ApiResult {
    let digest: Digest = digest.parse()?;
    let size = if head {
        app.registry.blob_size_checked(name, &digest).await?
    } else {
        app.registry.blob_size(name, &digest).await?
    };
    if !head {
        if let Some(url) = app.registry.blob_redirect(&digest).await? {
            return empty(
                StatusCode::TEMPORARY_REDIRECT,
                &[
                    ("location", url),
                    ("docker-content-digest", digest.to_string()),
                ],
            );
        }
    }
    let range = match header_str(&req, header::RANGE) {
        Some(v) if !head => byte_range(v, size)?,
        _ => None,
    };
    let (status, span) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.clone()),
        None => (StatusCode::OK, 0..size),
    };
    let body = if head {
        Body::empty()
    } else {
        Body::from_stream(app.registry.blob_read(&digest, span.clone(), size).await?)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, (span.end - span.start).into());
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let d = digest.to_string();
    h.insert(header::ETAG, header_value(&format!("\"{d}\""))?);
    h.insert("docker-content-digest", header_value(&d)?);
    if let Some(r) = range {
        h.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {}-{}/{size}", r.start, r.end - 1))?,
        );
    }
    Ok(r)
}

pub(crate) async fn delete(app: &App, name: &str, digest: &str) -> ApiResult {
    let digest: Digest = digest.parse()?;
    app.registry.blob_delete(name, &digest).await?;
    empty(
        StatusCode::ACCEPTED,
        &[("docker-content-digest", digest.to_string())],
    )
}
