//! A classic Helm chart repository generated from the OCI charts a namespace holds, for the
//! tools that speak only that protocol (`helm repo add`, `helm search repo`, `helm install
//! REPO/CHART`): `/charts/<namespace>/index.yaml` lists every tagged version of every chart
//! `<namespace>/<name>`, and `/charts/<namespace>/<name>-<version>.tgz` serves its archive.
//! Built from the index on every request, so it follows pushes and deletes at once; each
//! chart is shown only to callers who may pull its repository.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use wharf_auth::{Actions, Caller, Need};
use wharf_oci::{ErrorCode, Reference};
use wharf_store::ArtifactQuery;

use crate::artifacts::rfc3339;
use crate::error::ApiError;
use crate::{check_need, ApiResult, App, Head};

fn not_found(what: String) -> ApiError {
    ApiError::new(ErrorCode::NameUnknown, what).with_status(StatusCode::NOT_FOUND)
}

/// `rest` is the path after `/charts/`.
pub(crate) async fn serve(app: &App, rest: &str, req: Request) -> ApiResult {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "the chart repository view is read-only: push charts with helm push or wharf chart push",
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED));
    }
    let (namespace, file) = match rest.rsplit_once('/') {
        Some((ns, f)) => (ns, f),
        None => ("", rest),
    };
    if !namespace.is_empty() {
        wharf_oci::validate_repository(namespace)?;
    }
    let head = Head::of(&req);
    if file == "index.yaml" {
        let caller = match &app.auth {
            Some(auth) => Some(check_need(auth, Need::Login, None, head).await?),
            None => None,
        };
        return index(app, namespace, caller.as_ref()).await;
    }
    let Some(stem) = file.strip_suffix(".tgz") else {
        return Err(not_found(format!(
            "no chart repository file {file:?}: there are index.yaml and NAME-VERSION.tgz"
        )));
    };
    let (name, version) = split_archive_name(stem)
        .ok_or_else(|| not_found(format!("{file} is not NAME-VERSION.tgz")))?;
    let repo = match namespace {
        "" => name.to_string(),
        ns => format!("{ns}/{name}"),
    };
    wharf_oci::validate_repository(&repo)?;
    if let Some(auth) = &app.auth {
        check_need(
            auth,
            Need::Repository(repo.clone(), Actions::PULL),
            None,
            head,
        )
        .await?;
    }
    archive(app, &repo, version, req.method() == Method::HEAD).await
}

/// `NAME-VERSION` split where the rest is a SemVer version (names may hold `-` too).
fn split_archive_name(stem: &str) -> Option<(&str, &str)> {
    stem.match_indices('-').find_map(|(i, _)| {
        let (name, version) = (&stem[..i], &stem[i + 1..]);
        (!name.is_empty() && semver::Version::parse(version).is_ok()).then_some((name, version))
    })
}

async fn index(app: &App, namespace: &str, caller: Option<&Caller>) -> ApiResult {
    let prefix = match namespace {
        "" => String::new(),
        ns => format!("{ns}/"),
    };
    let visible = |r: &str| match (&app.auth, caller) {
        (Some(auth), Some(c)) => auth.subject_rights(c, r).contains(Actions::PULL),
        _ => true,
    };
    let mut entries: BTreeMap<String, Vec<(semver::Version, serde_json::Value)>> = BTreeMap::new();
    let mut after = None;
    loop {
        let rows = app
            .registry
            .artifacts(&ArtifactQuery {
                repository_prefix: (!prefix.is_empty()).then(|| prefix.clone()),
                kind: Some("helm-chart".into()),
                tagged: true,
                after: after.clone(),
                limit: 1000,
                ..ArtifactQuery::default()
            })
            .await?;
        let done = rows.len() < 1000;
        after = rows
            .last()
            .map(|r| (r.repository.clone(), r.digest.to_string()));
        for r in rows {
            let name = &r.repository[prefix.len()..];
            if name.contains('/') || !visible(&r.repository) {
                continue;
            }
            let Some(details) = r
                .info
                .details
                .as_deref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            else {
                continue;
            };
            let Some(digest) = details["archive"]["digest"].as_str() else {
                continue;
            };
            // One entry per version tag (helm tags a chart by its version, `+` as `_`).
            for tag in &r.tags {
                let Ok(version) = semver::Version::parse(&tag.replace('_', "+")) else {
                    continue;
                };
                let mut entry = details["chart"].clone();
                let Some(obj) = entry.as_object_mut() else {
                    continue;
                };
                if obj.get("name").and_then(|n| n.as_str()) != Some(name) {
                    continue;
                }
                obj.insert("version".into(), version.to_string().into());
                obj.insert(
                    "urls".into(),
                    serde_json::json!([format!("{name}-{version}.tgz")]),
                );
                obj.insert("created".into(), rfc3339(r.created).into());
                obj.insert(
                    "digest".into(),
                    digest.trim_start_matches("sha256:").to_string().into(),
                );
                entries
                    .entry(name.to_string())
                    .or_default()
                    .push((version, entry));
            }
        }
        if done {
            break;
        }
    }
    let entries: BTreeMap<String, Vec<serde_json::Value>> = entries
        .into_iter()
        .map(|(name, mut versions)| {
            versions.sort_by(|a, b| b.0.cmp_precedence(&a.0));
            (name, versions.into_iter().map(|(_, e)| e).collect())
        })
        .collect();
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "entries": entries,
        "generated": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    });
    let yaml = serde_yaml_ng::to_string(&doc).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut resp = Response::new(Body::from(yaml));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-yaml"),
    );
    Ok(resp)
}

async fn archive(app: &App, repo: &str, version: &str, head: bool) -> ApiResult {
    let tag = version.replace('+', "_");
    let stored = app
        .registry
        .manifest_get(repo, &Reference::Tag(tag))
        .await
        .map_err(|e| match e {
            wharf_store::StoreError::ManifestUnknown => {
                not_found(format!("no chart {repo} version {version}"))
            }
            e => ApiError::from(e),
        })?;
    let m = wharf_oci::Manifest::parse(Some(&stored.media_type), &stored.content)?;
    let layer = m
        .layers
        .iter()
        .find(|l| l.media_type == wharf_oci::media_type::HELM_CHART_CONTENT)
        .ok_or_else(|| not_found(format!("{repo}:{version} is not a Helm chart")))?;
    let size = app.registry.blob_size(repo, &layer.digest).await?;
    let body = if head {
        Body::empty()
    } else {
        Body::from_stream(app.registry.blob_read(&layer.digest, 0..size, size).await?)
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/gzip"),
    );
    h.insert(header::CONTENT_LENGTH, size.into());
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_split_at_the_version() {
        assert_eq!(split_archive_name("demo-1.2.3"), Some(("demo", "1.2.3")));
        assert_eq!(
            split_archive_name("my-app-2-1.0.0-rc.1"),
            Some(("my-app-2", "1.0.0-rc.1"))
        );
        assert_eq!(
            split_archive_name("demo-1.0.0+b.1"),
            Some(("demo", "1.0.0+b.1"))
        );
        assert_eq!(split_archive_name("demo"), None);
        assert_eq!(split_archive_name("-1.0.0"), None);
    }
}
