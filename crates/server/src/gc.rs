//! `POST /v2/_wharf/gc`: a garbage collection pass on demand (`wharf gc --registry`), for
//! admins when access control is on. `dry_run=true` lists what would go; `grace=DURATION`
//! overrides the configured grace period for this pass.

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use wharf_auth::Caller;
use wharf_oci::ErrorCode;
use wharf_store::GcOptions;

use crate::error::ApiError;
use crate::request::Query;
use crate::{json_response, ApiResult, App};

pub(crate) async fn run(app: &App, req: Request, caller: Option<&Caller>) -> ApiResult {
    if req.method() != Method::POST {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("method {} is not allowed on /v2/_wharf/gc", req.method()),
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .with_header("allow", "POST".into()));
    }
    if let (Some(auth), Some(caller)) = (&app.auth, caller) {
        if !auth.is_admin(caller) {
            return Err(ApiError::new(
                ErrorCode::Denied,
                format!(
                    "{} may not run garbage collection (admins may)",
                    caller.subject.id()
                ),
            ));
        }
    }
    if app.options.read_only {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "the registry is in read-only mode: garbage collection deletes, so it does not run",
        ));
    }
    let q = Query::of(&req)?;
    let bad = |what: String| {
        ApiError::new(ErrorCode::Unsupported, what).with_status(StatusCode::BAD_REQUEST)
    };
    let dry_run = match q.get("dry_run") {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => return Err(bad(format!("dry_run must be true or false, not {v:?}"))),
    };
    let grace = match q.get("grace") {
        None => app.options.gc.grace,
        Some(g) => humantime::parse_duration(g).map_err(|e| {
            bad(format!(
                "grace {g:?} is not a duration such as 1h or 30m: {e}"
            ))
        })?,
    };
    let opts = GcOptions {
        grace,
        dry_run,
        upload_expiry: app.options.gc.upload_expiry,
    };
    let report = pass(
        &app.registry,
        app.options.metrics.as_deref(),
        app.options.webhooks.as_deref(),
        &opts,
    )
    .await;
    match report? {
        Some(report) => {
            let body = serde_json::to_string(&report).expect("report serialises");
            Ok(json_response(StatusCode::OK, body))
        }
        None => Err(ApiError::new(
            ErrorCode::TooManyRequests,
            "another garbage collection pass is running; try again when it ends",
        )
        .with_header("retry-after", "10".into())),
    }
}

/// Runs one collection pass, scheduled or on demand, and logs and counts it and sends the
/// delete events of what it deleted (a dry run is only logged). `None`: another replica's
/// pass was running.
pub async fn pass(
    registry: &wharf_store::Registry,
    metrics: Option<&crate::metrics::Metrics>,
    webhooks: Option<&crate::webhooks::Webhooks>,
    opts: &GcOptions,
) -> Result<Option<wharf_store::GcReport>, wharf_store::StoreError> {
    let started = std::time::Instant::now();
    let report = registry.collect_garbage(opts).await;
    match &report {
        Ok(Some(r)) => tracing::info!(
            event = "gc",
            dry_run = opts.dry_run,
            tags = r.tags.len(),
            manifests = r.manifests.len(),
            links = r.links.len(),
            blobs = r.blobs.len(),
            reclaimed_bytes = r.reclaimed_bytes(),
            skipped_steps = r.skipped_steps,
            seconds = started.elapsed().as_secs_f64(),
            "garbage collection pass"
        ),
        Ok(None) => tracing::debug!("garbage collection: another replica's pass is running"),
        Err(e) => tracing::warn!("garbage collection pass failed: {e}"),
    }
    if let (Some(m), false) = (metrics, opts.dry_run) {
        match &report {
            Ok(r) => m.collected(r.as_ref()),
            Err(_) => m.collect_failed(),
        }
    }
    if let (Some(hooks), Ok(Some(r)), false) = (webhooks, &report, opts.dry_run) {
        hooks.collected(r);
    }
    report
}
