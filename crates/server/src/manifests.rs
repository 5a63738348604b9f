//! Manifest endpoints: GET, HEAD, PUT, DELETE by tag or digest.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use wharf_oci::{ErrorCode, Reference};
use wharf_store::StoreError;

use crate::error::ApiError;
use crate::metrics::{PushedKind, UNKNOWN_KIND};
use crate::request::header_str;
use crate::webhooks::{self, Action, Notice, Notices};
use crate::{empty, header_value, may, ApiResult, App};
use wharf_auth::{Actions, Caller};

pub(crate) async fn get(app: &App, name: &str, reference: &str, head: bool) -> ApiResult {
    // The spec answers a missing manifest with 404 only: a reference that is neither a valid
    // tag nor a valid digest names no manifest (TAG_INVALID is for PUT).
    let reference: Reference = reference.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::ManifestUnknown,
            format!("no manifest {reference:?} in {name}: it is neither a tag nor a digest"),
        )
    })?;
    let m = app.registry.manifest_get(name, &reference).await?;
    // HEAD only resolves (signing a tag starts there); the content is what a runtime needs.
    if let (Some(policy), false) = (&app.pull_policy, head) {
        let metrics = app.options.metrics.as_deref();
        policy
            .enforce(&app.registry, name, &reference, &m, metrics)
            .await?;
    }
    let len = m.content.len();
    let mut r = Response::new(if head {
        Body::empty()
    } else {
        Body::from(m.content)
    });
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(&m.media_type)?);
    h.insert(header::CONTENT_LENGTH, len.into());
    let d = m.digest.to_string();
    h.insert(header::ETAG, header_value(&format!("\"{d}\""))?);
    h.insert("docker-content-digest", header_value(&d)?);
    Ok(r)
}

/// Stores a manifest; the response carries the artifact kind pushed (or tried) for the
/// metrics, so errors become responses here.
pub(crate) async fn put(
    app: &App,
    name: &str,
    reference: &str,
    req: Request,
    caller: Option<&Caller>,
) -> ApiResult {
    let mut tried = None;
    let (mut response, kind) = match store(app, name, reference, req, caller, &mut tried).await {
        Ok((r, kind)) => (r, kind.as_str()),
        Err(e) => {
            // Only a failed push reads its manifest again, to name its kind.
            let kind = tried
                .and_then(|(t, c): (Option<String>, bytes::Bytes)| {
                    wharf_oci::Manifest::parse(t.as_deref(), &c).ok()
                })
                .map_or(UNKNOWN_KIND, |m| wharf_oci::ArtifactKind::of(&m).as_str());
            (
                e.log_internal(&axum::http::Method::PUT).into_response(),
                kind,
            )
        }
    };
    response.extensions_mut().insert(PushedKind(kind));
    Ok(response)
}

async fn store(
    app: &App,
    name: &str,
    reference: &str,
    req: Request,
    caller: Option<&Caller>,
    tried: &mut Option<(Option<String>, bytes::Bytes)>,
) -> Result<(Response, wharf_oci::ArtifactKind), ApiError> {
    let reference: Reference = reference.parse()?;
    let limit = app.registry.limits().max_manifest_size;
    let too_large = || ApiError::from(StoreError::ManifestTooLarge { limit });
    let declared = header_str(&req, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let content_type = header_str(&req, header::CONTENT_TYPE).map(str::to_string);
    let content = match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(too_large()),
        Err(e) => return Err(StoreError::BodyIncomplete(std::io::Error::other(e)).into()),
    };
    // Moving a tag to other content is a right of its own; the store enforces it in the
    // transaction that writes the tag (re-pushing the same manifest is not a move).
    let may_move = may(app, caller, name, Actions::OVERWRITE);
    *tried = Some((content_type.clone(), content.clone()));
    let put = app
        .registry
        .manifest_put_guarded(name, &reference, content_type.as_deref(), content, may_move)
        .await?;
    if let Some(policy) = &app.pull_policy {
        policy.touch(name);
    }
    let mut headers = vec![
        ("location", format!("/v2/{name}/manifests/{}", put.digest)),
        ("docker-content-digest", put.digest.to_string()),
    ];
    if let Some(s) = &put.subject {
        headers.push(("oci-subject", s.to_string()));
    }
    let mut response = empty(StatusCode::CREATED, &headers)?;
    if app.options.webhooks.is_some() {
        let tag = match &reference {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        let notices = webhooks::manifest_stored(name, tag, &put);
        response.extensions_mut().insert(notices);
    }
    Ok((response, put.kind))
}

pub(crate) async fn delete(app: &App, name: &str, reference: &str) -> ApiResult {
    let reference: Reference = reference.parse()?;
    app.registry.manifest_delete(name, &reference).await?;
    if let Some(policy) = &app.pull_policy {
        policy.touch(name);
    }
    let mut response = empty(StatusCode::ACCEPTED, &[])?;
    let mut deleted = Notice::new(Action::Delete, name);
    match reference {
        Reference::Tag(t) => deleted.tag = Some(t),
        Reference::Digest(d) => deleted.digest = Some(d),
    }
    response.extensions_mut().insert(Notices(vec![deleted]));
    Ok(response)
}
