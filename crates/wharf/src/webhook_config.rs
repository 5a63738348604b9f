//! `[[webhooks]]`: the endpoints registry events are POSTed to.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use wharf_server::webhooks::{Action, Endpoint};

/// One endpoint, as the file writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWebhook {
    /// Names the endpoint in logs and metrics.
    pub name: String,
    pub url: String,
    /// Sent with every request (an `Authorization` header, say).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `push`, `delete`, `tag`, `attach` [default: all].
    #[serde(default)]
    pub actions: Vec<String>,
    /// Repository patterns whose events are sent [default: all].
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Seconds per attempt [default: 5].
    pub timeout_secs: Option<u64>,
    /// Attempts per event, the first included [default: 5].
    pub max_attempts: Option<usize>,
    /// Milliseconds before the first retry, doubling up to a minute [default: 500].
    pub backoff_ms: Option<u64>,
    /// Events that may wait for delivery; more are dropped and counted [default: 1000].
    pub queue: Option<usize>,
}

impl FileWebhook {
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        let bad = |why: String| format!("[[webhooks]] {:?}: {why}", self.name);
        if self.name.is_empty() {
            return Err("[[webhooks]]: each endpoint needs a name".into());
        }
        let url: url::Url = self
            .url
            .parse()
            .map_err(|e| bad(format!("url {:?}: {e}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("url {:?}: not http or https", self.url)));
        }
        for (k, v) in &self.headers {
            if !valid_header(k, v) {
                return Err(bad(format!("header {k:?} is not a valid HTTP header")));
            }
        }
        let max_attempts = self.max_attempts.unwrap_or(5);
        if max_attempts == 0 {
            return Err(bad("max_attempts must be at least 1".into()));
        }
        let queue = self.queue.unwrap_or(1000);
        if queue == 0 {
            return Err(bad("queue must be at least 1".into()));
        }
        let timeout = self.timeout_secs.unwrap_or(5);
        if timeout == 0 {
            return Err(bad("timeout_secs must be at least 1".into()));
        }
        Ok(Endpoint {
            name: self.name.clone(),
            url,
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            actions: self
                .actions
                .iter()
                .map(|a| Action::parse(a).map_err(bad))
                .collect::<Result<_, _>>()?,
            repositories: self
                .repositories
                .iter()
                .map(|p| wharf_oci::Pattern::new(p).map_err(|e| bad(format!("{p:?}: {e}"))))
                .collect::<Result<_, _>>()?,
            timeout: Duration::from_secs(timeout),
            max_attempts,
            backoff: Duration::from_millis(self.backoff_ms.unwrap_or(500)),
            queue,
        })
    }
}

fn valid_header(name: &str, value: &str) -> bool {
    axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok()
        && axum::http::HeaderValue::from_str(value).is_ok()
}

/// The file's endpoints, each name used once.
pub fn endpoints(file: &[FileWebhook]) -> Result<Vec<Endpoint>, String> {
    let mut out: Vec<Endpoint> = Vec::new();
    for w in file {
        let e = w.endpoint()?;
        if out.iter().any(|o| o.name == e.name) {
            return Err(format!(
                "[[webhooks]]: two endpoints are named {:?}",
                e.name
            ));
        }
        out.push(e);
    }
    Ok(out)
}
