//! Upload endpoints: start (plain, monolithic, or mount), PATCH chunks, PUT to finish, GET
//! status, DELETE to cancel.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use wharf_oci::{validate_repository, Digest, ErrorCode};
use wharf_store::{MountOutcome, Upload};

use crate::error::{upload_range, ApiError};
use crate::request::{body_stream, content_length, content_range, has_body, header_str, Query};
use crate::{empty, may, ApiResult, App};
use wharf_auth::{Actions, Caller};

fn upload_accepted(app: &App, name: &str, u: &Upload) -> ApiResult {
    empty(
        StatusCode::ACCEPTED,
        &[
            ("location", format!("/v2/{name}/blobs/uploads/{}", u.id)),
            ("range", upload_range(u.size)),
            ("docker-upload-uuid", u.id.clone()),
            (
                "oci-chunk-min-length",
                app.options.chunk_min_length.to_string(),
            ),
        ],
    )
}

fn blob_created(name: &str, digest: &Digest) -> ApiResult {
    empty(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{digest}")),
            ("docker-content-digest", digest.to_string()),
        ],
    )
}

pub(crate) async fn start(
    app: &App,
    name: &str,
    req: Request,
    caller: Option<&Caller>,
) -> ApiResult {
    let q = Query::of(&req)?;
    if let Some(mount) = q.get("mount") {
        let digest: Digest = mount.parse()?;
        let from = q.get("from").filter(|f| !f.is_empty());
        if let Some(from) = from {
            validate_repository(from)?;
        }
        // A mount from a repository the caller cannot read (or, under access control, from
        // wherever the blob is) must not reveal that the blob exists: it becomes an
        // ordinary upload, as when the blob is absent.
        let readable = match from {
            Some(f) => may(app, caller, f, Actions::PULL),
            // Searching every repository is for callers who may read them all (admins).
            None => may(app, caller, "", Actions::ALL),
        };
        if !readable {
            let u = app.registry.upload_start(name).await?;
            return upload_accepted(app, name, &u);
        }
        return match app.registry.blob_mount(name, &digest, from).await? {
            MountOutcome::Mounted { .. } => blob_created(name, &digest),
            MountOutcome::Upload(u) => upload_accepted(app, name, &u),
        };
    }
    if let Some(d) = q.get("digest") {
        let digest: Digest = d.parse()?;
        if let Some(len) = content_length(&req) {
            app.registry
                .quota_admit(name, None, Some(&digest), len)
                .await?;
        }
        let body = body_stream(req.into_body(), app.options.body_idle_timeout);
        app.registry.blob_put(name, &digest, body).await?;
        return blob_created(name, &digest);
    }
    let u = app.registry.upload_start(name).await?;
    upload_accepted(app, name, &u)
}

pub(crate) async fn status(app: &App, name: &str, id: &str) -> ApiResult {
    let u = app.registry.upload_status(name, id).await?;
    let mut r = upload_accepted(app, name, &u)?;
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

pub(crate) async fn patch(app: &App, name: &str, id: &str, req: Request) -> ApiResult {
    let range = header_str(&req, header::CONTENT_RANGE)
        .map(content_range)
        .transpose()?;
    if let Some(len) = content_length(&req) {
        admit_or_cancel(app, name, id, None, len).await?;
    }
    let body = body_stream(req.into_body(), app.options.body_idle_timeout);
    let u = app.registry.upload_append(name, id, range, body).await?;
    upload_accepted(app, name, &u)
}

pub(crate) async fn put(app: &App, name: &str, id: &str, req: Request) -> ApiResult {
    let q = Query::of(&req)?;
    let digest: Digest = q
        .get("digest")
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::DigestInvalid,
                "closing an upload needs ?digest=<digest>",
            )
        })?
        .parse()?;
    let last_chunk = if has_body(&req) {
        if let Some(len) = content_length(&req) {
            admit_or_cancel(app, name, id, Some(&digest), len).await?;
        }
        let range = header_str(&req, header::CONTENT_RANGE)
            .map(content_range)
            .transpose()?;
        Some((
            range,
            body_stream(req.into_body(), app.options.body_idle_timeout),
        ))
    } else {
        None
    };
    app.registry
        .upload_finish(name, id, &digest, last_chunk)
        .await?;
    blob_created(name, &digest)
}

/// A chunk that would take its namespace past its quota ends the push: the session goes
/// with the refusal, leaving nothing behind.
async fn admit_or_cancel(
    app: &App,
    name: &str,
    id: &str,
    digest: Option<&Digest>,
    len: u64,
) -> Result<(), ApiError> {
    match app.registry.quota_admit(name, Some(id), digest, len).await {
        Err(e @ wharf_store::StoreError::QuotaExceeded(_)) => {
            app.registry.upload_cancel(name, id).await?;
            Err(e.into())
        }
        other => Ok(other?),
    }
}

pub(crate) async fn cancel(app: &App, name: &str, id: &str) -> ApiResult {
    app.registry.upload_cancel(name, id).await?;
    empty(StatusCode::NO_CONTENT, &[])
}
