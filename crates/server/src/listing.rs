//! Listings: tags, the catalog, and referrers, all paginated with `n`, `last` and `Link`.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use wharf_oci::{media_type, Descriptor, Digest, ErrorCode};

use crate::error::ApiError;
use crate::request::Query;
use crate::{header_value, json_response, ApiResult, App};
use wharf_auth::{Actions, Caller};

/// The page a request asks for: up to `n` entries after `last`.
pub(crate) struct Page {
    pub n: usize,
    pub last: Option<String>,
}

impl Page {
    pub(crate) fn of(app: &App, q: &Query) -> Result<Page, ApiError> {
        let max = app.options.max_page_size;
        let n = match q.get("n") {
            None | Some("") => max,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::PaginationNumberInvalid,
                        format!("n must be a whole number from 0 to {max}, not {v:?}"),
                    ))
                }
            },
        };
        let last = q.get("last").filter(|l| !l.is_empty()).map(str::to_string);
        Ok(Page { n, last })
    }

    /// Trims `items` (fetched with one extra) to the page and adds `Link` when more follow.
    pub(crate) fn finish<T: Serialize>(
        &self,
        path: &str,
        mut items: Vec<T>,
        key_of: impl Fn(&T) -> String,
        body: impl FnOnce(Vec<T>) -> serde_json::Value,
        extra_query: &str,
    ) -> ApiResult {
        let more = items.len() > self.n;
        items.truncate(self.n);
        let link = match items.last() {
            Some(last) if more => Some(format!(
                "<{path}?n={}&last={}{extra_query}>; rel=\"next\"",
                self.n,
                key_of(last)
            )),
            _ => None,
        };
        let body = serde_json::to_vec(&body(items)).expect("listing serialises");
        let mut r: Response = json_response(StatusCode::OK, body);
        if let Some(l) = link {
            r.headers_mut().insert("link", header_value(&l)?);
        }
        Ok(r)
    }
}

pub(crate) async fn tags(app: &App, name: &str, req: Request) -> ApiResult {
    let page = Page::of(app, &Query::of(&req)?)?;
    let tags = if page.n == 0 {
        Vec::new()
    } else {
        app.registry
            .tags(name, page.last.as_deref(), page.n + 1)
            .await?
    };
    page.finish(
        &format!("/v2/{name}/tags/list"),
        tags,
        |t| t.clone(),
        |tags| serde_json::json!({ "name": name, "tags": tags }),
        "",
    )
}

pub(crate) async fn catalog(app: &App, req: Request, caller: Option<&Caller>) -> ApiResult {
    let page = Page::of(app, &Query::of(&req)?)?;
    let visible = |r: &str| match (&app.auth, caller) {
        (Some(auth), Some(c)) => auth.subject_rights(c, r).contains(Actions::PULL),
        _ => true,
    };
    // Repositories the caller may not pull are left out; keep reading until the page is
    // full (plus one, to know whether another follows) or the catalog ends.
    let mut repos = Vec::new();
    let mut after = page.last.clone();
    while page.n > 0 && repos.len() <= page.n {
        let batch = app
            .registry
            .repositories(after.as_deref(), page.n + 1)
            .await?;
        let done = batch.len() <= page.n;
        after = batch.last().cloned();
        repos.extend(batch.into_iter().filter(|r| visible(r)));
        if done {
            break;
        }
    }
    page.finish(
        "/v2/_catalog",
        repos,
        |r| r.clone(),
        |repos| serde_json::json!({ "repositories": repos }),
        "",
    )
}

pub(crate) async fn referrers(app: &App, name: &str, digest: &str, req: Request) -> ApiResult {
    let subject: Digest = digest.parse()?;
    let q = Query::of(&req)?;
    let page = Page::of(app, &q)?;
    let artifact_type = q.get("artifactType").filter(|t| !t.is_empty());
    let mut all = app
        .registry
        .referrers(name, &subject, artifact_type)
        .await?;
    if let Some(last) = &page.last {
        all.retain(|d| d.digest.to_string().as_str() > last.as_str());
    }
    all.truncate(page.n + 1);
    let extra = artifact_type
        .map(|t| {
            format!(
                "&artifactType={}",
                t.replace('/', "%2F").replace('+', "%2B")
            )
        })
        .unwrap_or_default();
    let mut r = page.finish(
        &format!("/v2/{name}/referrers/{subject}"),
        all,
        |d: &Descriptor| d.digest.to_string(),
        |manifests| {
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_INDEX,
                "manifests": manifests,
            })
        },
        &extra,
    )?;
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(media_type::OCI_INDEX),
    );
    if artifact_type.is_some() {
        r.headers_mut().insert(
            "oci-filters-applied",
            axum::http::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(r)
}
