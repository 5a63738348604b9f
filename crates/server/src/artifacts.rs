//! The `_wharf` extension: what the registry knows about the artifacts it stores (kind,
//! size, creation time, tags, referrer counts, a chart's name and version) listed per
//! repository and searched across the repositories a caller may pull. Announced, as OCI
//! extensions are, at `/v2/_oci/ext/discover`. docs/search.md is its reference.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use wharf_auth::{Actions, Caller};
use wharf_oci::{ArtifactKind, Constraint, ErrorCode};
use wharf_store::{ArtifactQuery, ArtifactRecord};

use crate::error::ApiError;
use crate::listing::Page;
use crate::request::Query;
use crate::{json_response, ApiResult, App};

/// How many index rows one search reads at most to fill a page, so a query that the
/// caller's rights or a version range filter down to little still ends promptly.
const MAX_SCANNED: usize = 100_000;

/// One artifact as the extension reports it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactView {
    repository: String,
    digest: String,
    media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    kind: String,
    size: u64,
    created: String,
    tags: Vec<String>,
    referrers: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    keywords: Vec<String>,
}

pub(crate) fn rfc3339(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

impl From<ArtifactRecord> for ArtifactView {
    fn from(r: ArtifactRecord) -> Self {
        ArtifactView {
            repository: r.repository,
            digest: r.digest.to_string(),
            media_type: r.media_type,
            artifact_type: r.artifact_type,
            kind: r.info.kind,
            size: r.info.size,
            created: rfc3339(r.created),
            tags: r.tags,
            referrers: r.referrers,
            name: r.info.name,
            version: r.info.version,
            app_version: r.info.app_version,
            description: r.info.description,
            keywords: r.info.keywords,
        }
    }
}

pub(crate) fn extensions() -> Response {
    let body = serde_json::json!({
        "extensions": [{
            "name": "_wharf",
            // Its reference is docs/search.md in the Wharf sources; no public address is
            // promised, so the link is relative to them.
            "url": "docs/search.md",
            "description": "artifact kinds, listings with referrer counts, and search across repositories",
            "endpoints": ["_wharf/ext/search", "{name}/_wharf/artifacts"],
        }]
    });
    json_response(StatusCode::OK, body.to_string())
}

fn kind_param(q: &Query) -> Result<Option<String>, ApiError> {
    match q.get("kind").filter(|k| !k.is_empty()) {
        None => Ok(None),
        Some(k) => k
            .parse::<ArtifactKind>()
            .map(|k| Some(k.as_str().to_string()))
            .map_err(|e| {
                ApiError::new(ErrorCode::Unsupported, e).with_status(StatusCode::BAD_REQUEST)
            }),
    }
}

/// `last` of this API: `REPOSITORY@DIGEST` for search, a digest for one repository.
fn split_last(last: &str) -> (String, String) {
    match last.rsplit_once('@') {
        Some((r, d)) => (r.to_string(), d.to_string()),
        None => (String::new(), last.to_string()),
    }
}

/// `GET /v2/<name>/_wharf/artifacts[?kind=K][&n=N][&last=DIGEST]`
pub(crate) async fn list(app: &App, name: &str, req: Request) -> ApiResult {
    let q = Query::of(&req)?;
    let page = Page::of(app, &q)?;
    let kind = kind_param(&q)?;
    let found = if page.n == 0 {
        Vec::new()
    } else {
        app.registry
            .artifacts(&ArtifactQuery {
                repository: Some(name.to_string()),
                kind: kind.clone(),
                after: page
                    .last
                    .as_deref()
                    .map(|d| (name.to_string(), d.to_string())),
                limit: page.n + 1,
                ..ArtifactQuery::default()
            })
            .await?
    };
    let extra = kind.map(|k| format!("&kind={k}")).unwrap_or_default();
    page.finish(
        &format!("/v2/{name}/_wharf/artifacts"),
        found.into_iter().map(ArtifactView::from).collect(),
        |a: &ArtifactView| a.digest.clone(),
        |artifacts| serde_json::json!({ "repository": name, "artifacts": artifacts }),
        &extra,
    )
}

/// `GET /v2/_wharf/ext/search?q=TEXT[&kind=K][&version=RANGE][&n=N][&last=REPO@DIGEST]`
pub(crate) async fn search(app: &App, req: Request, caller: Option<&Caller>) -> ApiResult {
    let q = Query::of(&req)?;
    let page = Page::of(app, &q)?;
    let kind = kind_param(&q)?;
    // Form-encoded text writes spaces as `+` (the query parser keeps `+` for media types).
    let text = q
        .get("q")
        .map(|t| t.replace('+', " ").trim().to_lowercase())
        .filter(|t| !t.is_empty());
    let range = match q.get("version").filter(|v| !v.is_empty()) {
        Some(v) => Some(Constraint::parse(v).map_err(|e| {
            ApiError::new(ErrorCode::Unsupported, e).with_status(StatusCode::BAD_REQUEST)
        })?),
        None => None,
    };
    let visible = |r: &str| match (&app.auth, caller) {
        (Some(auth), Some(c)) => auth.subject_rights(c, r).contains(Actions::PULL),
        _ => true,
    };
    let wanted = |a: &ArtifactRecord| {
        visible(&a.repository)
            && range.as_ref().is_none_or(|c| {
                a.info
                    .version
                    .as_deref()
                    .and_then(|v| semver::Version::parse(v).ok())
                    .is_some_and(|v| c.matches(&v))
            })
    };
    let mut found = Vec::new();
    let mut after = page.last.as_deref().map(split_last);
    // A page's worth first; when the filters applied here (rights, the exact range) drop
    // rows, the next read asks for twice what is missing.
    let mut batch = page.n + 1;
    let mut scanned = 0;
    while page.n > 0 && found.len() <= page.n && scanned < MAX_SCANNED {
        let rows = app
            .registry
            .artifacts(&ArtifactQuery {
                kind: kind.clone(),
                text: text.clone(),
                tagged: false,
                // The range's bounds narrow the scan; the range itself decides below.
                versions: range.as_ref().map(|c| c.core_bounds()),
                after: after.clone(),
                limit: batch,
                ..ArtifactQuery::default()
            })
            .await?;
        let done = rows.len() < batch;
        scanned += rows.len();
        after = rows
            .last()
            .map(|r| (r.repository.clone(), r.digest.to_string()));
        found.extend(rows.into_iter().filter(|a| wanted(a)));
        if done {
            break;
        }
        let missing = (page.n + 1).saturating_sub(found.len());
        batch = (2 * missing).clamp(32, 4096);
    }
    let mut extra = String::new();
    for (k, v) in [
        ("q", q.get("q")),
        ("kind", q.get("kind")),
        ("version", q.get("version")),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            extra.push_str(&format!("&{k}={}", encode(v)));
        }
    }
    page.finish(
        "/v2/_wharf/ext/search",
        found.into_iter().map(ArtifactView::from).collect(),
        |a: &ArtifactView| encode(&format!("{}@{}", a.repository, a.digest)),
        |results| serde_json::json!({ "results": results }),
        &extra,
    )
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
