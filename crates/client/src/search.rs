//! Wharf's `_wharf` extension from the client side: searching artifacts across the
//! repositories the caller may pull, and listing one repository's artifacts with their
//! kinds. Other registries do not offer it; a 404 says so in words.

use serde::{Deserialize, Serialize};

use crate::{Client, Error, Reference, Result};

/// One artifact as the registry's index describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Found {
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    #[serde(default)]
    pub artifact_type: Option<String>,
    pub kind: String,
    pub size: u64,
    pub created: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub referrers: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub app_version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
}

/// What to search for.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub text: String,
    pub kind: Option<String>,
    /// A version range (for charts).
    pub version: Option<String>,
    /// At most this many results (all pages are read up to it).
    pub limit: usize,
}

/// Query-string encoding with spaces as `%20` (form encoding's `+` is ambiguous to
/// servers that keep `+` for media types).
fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl Client {
    /// Searches the registry `r` names (its repository part is ignored).
    pub async fn search(&self, r: &Reference, q: &SearchQuery) -> Result<Vec<Found>> {
        let mut url = format!(
            "{}/v2/_wharf/ext/search?q={}",
            self.base_url(r),
            enc(&q.text)
        );
        if let Some(k) = &q.kind {
            url.push_str(&format!("&kind={}", enc(k)));
        }
        if let Some(v) = &q.version {
            url.push_str(&format!("&version={}", enc(v)));
        }
        url.push_str(&format!("&n={}", q.limit.clamp(1, 1000)));
        self.read_pages(
            r,
            url,
            &["registry:catalog:*".to_string()],
            "results",
            q.limit,
        )
        .await
    }

    /// The artifacts of `r`'s repository, optionally of one kind.
    pub async fn repository_artifacts(
        &self,
        r: &Reference,
        kind: Option<&str>,
    ) -> Result<Vec<Found>> {
        let mut url = format!("{}/v2/{}/_wharf/artifacts", self.base_url(r), r.repository);
        if let Some(k) = kind {
            url.push_str(&format!("?kind={}", enc(k)));
        }
        let scope = [format!("repository:{}:pull", r.repository)];
        self.read_pages(r, url, &scope, "artifacts", usize::MAX)
            .await
    }

    async fn read_pages(
        &self,
        r: &Reference,
        first: String,
        scope: &[String],
        field: &str,
        limit: usize,
    ) -> Result<Vec<Found>> {
        let missing = || match field {
            "results" => Error::Invalid(format!(
                "{} has no search API (it is a Wharf extension, /v2/_wharf/ext/search)",
                r.registry
            )),
            _ => Error::NotFound(r.name()),
        };
        let items = self
            .paginate_values(r, first, scope, field, limit, &missing)
            .await?;
        serde_json::from_value(serde_json::Value::Array(items))
            .map_err(|e| Error::Protocol(format!("{}: {e}", r.registry)))
    }
}

impl Client {
    /// Asks the registry `r` names for a garbage collection pass (a Wharf extension, for
    /// admins): `dry_run` lists what would go; `grace` (e.g. `1h`) overrides the registry's
    /// grace period. Returns the registry's report as it sent it.
    pub async fn collect_garbage(
        &self,
        r: &Reference,
        dry_run: bool,
        grace: Option<&str>,
    ) -> Result<serde_json::Value> {
        let mut url = format!("{}/v2/_wharf/gc?dry_run={dry_run}", self.base_url(r));
        if let Some(g) = grace {
            url.push_str(&format!("&grace={}", enc(g)));
        }
        let resp = self
            .send(
                r,
                reqwest::Method::POST,
                &url,
                &["registry:catalog:*".to_string()],
                reqwest::header::HeaderMap::new(),
                crate::client::Body::Empty,
            )
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(Error::Invalid(format!(
                "{} has no garbage collection API (it is a Wharf extension, /v2/_wharf/gc)",
                r.registry
            )));
        }
        let resp = crate::client::check(resp, "POST", &url).await?;
        resp.json()
            .await
            .map_err(|e| Error::Protocol(format!("{}: {e}", r.registry)))
    }
}
