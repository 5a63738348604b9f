//! The registry's metrics in the Prometheus text format. The series named `oras_*`,
//! `cosign_*` and `registry_*` are the ones dashboards and alerts written for an oras and
//! cosign pipeline already query, counted here as the registry sees the same events (a push
//! is a manifest PUT, a pull a manifest or blob GET, a verification the pull policy's
//! check); the `wharf_*` series are the registry's own.
//!
//! Label values are bounded: methods, routes, statuses, artifact kinds and error codes are
//! fixed sets, and repositories are named only up to a cap (the first ones this process
//! sees for counters, the largest ones for the storage gauge), the rest counted together as
//! `_other`. Storage gauges come from one database read, made at most once per refresh
//! interval, when scraped.

use std::collections::HashSet;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};
use wharf_store::{Registry, OTHER_REPOSITORIES};

/// How the metrics are gathered.
#[derive(Debug, Clone)]
pub struct MetricsOptions {
    /// Repositories named in labels; the rest are counted as `_other`.
    pub max_repositories: usize,
    /// Reported as `registry_storage_limit_bytes` (left out when `None`).
    pub storage_limit_bytes: Option<u64>,
    /// The storage gauges are read from the database at most this often.
    pub usage_refresh: Duration,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            max_repositories: 1000,
            storage_limit_bytes: None,
            usage_refresh: Duration::from_secs(30),
        }
    }
}

/// The artifact type of a push whose manifest could not be read, and of a failed blob upload.
pub(crate) const UNKNOWN_KIND: &str = "unknown";
pub(crate) const BLOB_KIND: &str = "blob";

/// The artifact kind of a pushed manifest, left on the response for the metrics.
#[derive(Clone, Copy)]
pub(crate) struct PushedKind(pub &'static str);

pub struct Metrics {
    registry: prometheus::Registry,
    options: MetricsOptions,
    repositories: RepositoryLabels,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    push_success: IntCounterVec,
    push_failure: IntCounterVec,
    pull_duration: HistogramVec,
    verify_total: IntCounterVec,
    verify_failure: IntCounterVec,
    artifact_storage: IntGaugeVec,
    storage_used: IntGauge,
    quota_used: IntGaugeVec,
    quota_limit: IntGaugeVec,
    uploads_in_progress: IntGauge,
    dangling_manifests: IntGauge,
    usage_failures: IntCounterVec,
    scrub_blobs: IntCounterVec,
    scrub_bytes: prometheus::IntCounter,
    scrub_runs: IntCounterVec,
    scrub_last: IntGauge,
    gc_runs: IntCounterVec,
    gc_deleted: IntCounterVec,
    gc_reclaimed: prometheus::IntCounter,
    gc_last: IntGauge,
    /// When the storage gauges were last read (None: never).
    refreshed: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

const PULL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new(options: MetricsOptions) -> Metrics {
        let registry = prometheus::Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry.register(Box::new(c.clone())).expect("unique name");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid histogram");
            registry.register(Box::new(h.clone())).expect("unique name");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid gauge");
            registry.register(Box::new(g.clone())).expect("unique name");
            g
        };
        let artifact_storage = IntGaugeVec::new(
            Opts::new(
                "registry_artifact_storage_bytes",
                "Bytes the manifests of a repository reference, by artifact kind.",
            ),
            &["artifact_type", "repository"],
        )
        .expect("valid gauge");
        registry
            .register(Box::new(artifact_storage.clone()))
            .expect("unique name");
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
            registry.register(Box::new(g.clone())).expect("unique name");
            g
        };
        let quota_used = gauge_vec(
            "wharf_quota_used_bytes",
            "Bytes a namespace under a [[quotas]] rule holds (each blob and manifest once).",
            &["namespace"],
        );
        let quota_limit = gauge_vec(
            "wharf_quota_limit_bytes",
            "The bytes a namespace may hold ([[quotas]] limit_bytes).",
            &["namespace"],
        );
        if let Some(limit) = options.storage_limit_bytes {
            gauge(
                "registry_storage_limit_bytes",
                "The storage the registry may use, as configured ([metrics] storage_limit_bytes).",
            )
            .set(limit.min(i64::MAX as u64) as i64);
        }
        // Outcomes are known in advance: their series start at zero, so an alert on an
        // increase sees the first one.
        let scrub_blobs = counter(
            "wharf_scrub_blobs_total",
            "Blobs checked by scrub, by result (ok, corrupt, missing).",
            &["result"],
        );
        for r in ["ok", "corrupt", "missing"] {
            scrub_blobs.with_label_values(&[r]);
        }
        let scrub_runs = counter(
            "wharf_scrub_runs_total",
            "Scrub passes run by this process, by result (completed, failed).",
            &["result"],
        );
        for r in ["completed", "failed"] {
            scrub_runs.with_label_values(&[r]);
        }
        let scrub_bytes = prometheus::IntCounter::new(
            "wharf_scrub_bytes_total",
            "Bytes read and hashed by scrub.",
        )
        .expect("valid counter");
        registry
            .register(Box::new(scrub_bytes.clone()))
            .expect("unique name");
        let gc_runs = counter(
            "wharf_gc_runs_total",
            "Garbage collection passes run by this process, by result (completed, failed, busy).",
            &["result"],
        );
        for r in ["completed", "failed", "busy"] {
            gc_runs.with_label_values(&[r]);
        }
        let gc_deleted = counter(
            "wharf_gc_deleted_total",
            "Items garbage collection deleted, by kind (tag, manifest, link, blob).",
            &["kind"],
        );
        for k in ["tag", "manifest", "link", "blob"] {
            gc_deleted.with_label_values(&[k]);
        }
        let gc_reclaimed = prometheus::IntCounter::new(
            "wharf_gc_reclaimed_bytes_total",
            "Bytes garbage collection deleted: manifests and blob bytes.",
        )
        .expect("valid counter");
        registry
            .register(Box::new(gc_reclaimed.clone()))
            .expect("unique name");
        Metrics {
            gc_runs,
            gc_deleted,
            gc_reclaimed,
            gc_last: gauge(
                "wharf_gc_last_completed_timestamp_seconds",
                "When the last garbage collection pass of this process completed (Unix time; 0: never).",
            ),
            scrub_blobs,
            scrub_bytes,
            scrub_runs,
            scrub_last: gauge(
                "wharf_scrub_last_completed_timestamp_seconds",
                "When the last scrub pass of this process completed (Unix time; 0: never).",
            ),
            repositories: RepositoryLabels::new(options.max_repositories),
            http_requests: counter(
                "wharf_http_requests_total",
                "HTTP requests answered, by method, route and status.",
                &["method", "route", "status"],
            ),
            http_duration: histogram(
                "wharf_http_request_duration_seconds",
                "Time from a request's arrival to its response headers, by method and route.",
                &["method", "route"],
                HTTP_BUCKETS,
            ),
            push_success: counter(
                "oras_push_success_total",
                "Manifests stored (a push completes with its manifest), by repository and artifact kind.",
                &["repository", "artifact_type"],
            ),
            push_failure: counter(
                "oras_push_failure_total",
                "Manifest PUTs and blob uploads refused or failed (not counting authentication challenges).",
                &["repository", "artifact_type"],
            ),
            pull_duration: histogram(
                "oras_pull_duration_seconds",
                "Time to serve a manifest or blob GET, until its last byte is sent.",
                &["repository"],
                PULL_BUCKETS,
            ),
            verify_total: counter(
                "cosign_verify_total",
                "Signature verifications made by the pull policy, by repository and outcome (error_code \"none\" when it passed).",
                &["repository", "error_code"],
            ),
            verify_failure: counter(
                "cosign_verify_failure_total",
                "Signature verifications by the pull policy that failed, by repository and error code.",
                &["repository", "error_code"],
            ),
            artifact_storage,
            quota_used,
            quota_limit,
            storage_used: gauge(
                "registry_storage_used_bytes",
                "Bytes of content stored: every blob and manifest counted once.",
            ),
            uploads_in_progress: gauge(
                "wharf_uploads_in_progress",
                "Blob upload sessions started and not yet completed, cancelled or expired.",
            ),
            dangling_manifests: gauge(
                "wharf_dangling_manifests",
                "Manifests no tag names, no index holds and no live subject keeps.",
            ),
            usage_failures: counter(
                "wharf_metrics_usage_failures_total",
                "Reads of the storage gauges from the database that failed.",
                &["reason"],
            ),
            refreshed: tokio::sync::Mutex::new(None),
            options,
            registry,
        }
    }

    /// Adds series kept elsewhere (webhook deliveries) to what `/metrics` serves.
    pub(crate) fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(c) {
            tracing::warn!("metrics not registered: {e}");
        }
    }

    /// Records one answered request; a successful blob GET has its body timed until the
    /// last byte is sent. (Public for `benches/metrics.rs`.)
    pub fn record(
        &self,
        method: &Method,
        route: &'static str,
        repository: Option<&str>,
        response: &mut Response,
        started: Instant,
    ) {
        let status = response.status();
        let m = method_label(method);
        self.http_requests
            .with_label_values(&[m, route, status.as_str()])
            .inc();
        self.http_duration
            .with_label_values(&[m, route])
            .observe(started.elapsed().as_secs_f64());
        let Some(repo) = repository else {
            return;
        };
        // A challenge is the first half of a login, not a failed push.
        let failed = status.as_u16() >= 400 && status != StatusCode::UNAUTHORIZED;
        match (route, method) {
            ("manifest", &Method::PUT) => {
                let kind = response
                    .extensions()
                    .get::<PushedKind>()
                    .map_or(UNKNOWN_KIND, |k| k.0);
                let repo = self.repositories.label(repo);
                if status.is_success() {
                    self.push_success.with_label_values(&[repo, kind]).inc();
                } else if failed {
                    self.push_failure.with_label_values(&[repo, kind]).inc();
                }
            }
            ("upload", _) if failed => {
                let repo = self.repositories.label(repo);
                self.push_failure
                    .with_label_values(&[repo, BLOB_KIND])
                    .inc();
            }
            // A manifest is sent from memory at once: its time is the response's.
            ("manifest", &Method::GET) if status.is_success() || status.is_redirection() => {
                self.pull_duration
                    .with_label_values(&[self.repositories.label(repo)])
                    .observe(started.elapsed().as_secs_f64());
            }
            // A blob streams: it is timed until its last byte is sent.
            ("blob", &Method::GET) if status.is_success() || status.is_redirection() => {
                let timer = self
                    .pull_duration
                    .with_label_values(&[self.repositories.label(repo)]);
                let body = std::mem::take(response.body_mut());
                *response.body_mut() = Body::new(TimedBody {
                    inner: body,
                    timer,
                    started,
                });
            }
            _ => {}
        }
    }

    /// Records a verification by the pull policy: `error_code` is `None` when it passed.
    pub(crate) fn verified(&self, repository: &str, error_code: Option<&str>) {
        let repo = self.repositories.label(repository);
        self.verify_total
            .with_label_values(&[repo, error_code.unwrap_or("none")])
            .inc();
        if let Some(code) = error_code {
            self.verify_failure.with_label_values(&[repo, code]).inc();
        }
    }

    /// Records one blob checked by scrub.
    pub fn scrubbed(&self, result: &str, bytes: u64) {
        self.scrub_blobs.with_label_values(&[result]).inc();
        self.scrub_bytes.inc_by(bytes);
    }

    /// Records the end of a scrub pass.
    pub fn scrub_finished(&self, completed: bool) {
        let result = if completed { "completed" } else { "failed" };
        self.scrub_runs.with_label_values(&[result]).inc();
        if completed {
            self.scrub_last.set(wharf_oci::unix_now());
        }
    }

    /// Records a collection pass: its report, `None` when another replica's pass was
    /// running (or the pass failed, when `failed`).
    pub fn collected(&self, report: Option<&wharf_store::GcReport>) {
        match report {
            Some(r) => {
                self.gc_runs.with_label_values(&["completed"]).inc();
                let n = |v: usize| v as u64;
                self.gc_deleted
                    .with_label_values(&["tag"])
                    .inc_by(n(r.tags.len()));
                self.gc_deleted
                    .with_label_values(&["manifest"])
                    .inc_by(n(r.manifests.len()));
                self.gc_deleted
                    .with_label_values(&["link"])
                    .inc_by(n(r.links.len()));
                self.gc_deleted
                    .with_label_values(&["blob"])
                    .inc_by(n(r.blobs.len()));
                self.gc_reclaimed.inc_by(r.reclaimed_bytes());
                self.gc_last.set(wharf_oci::unix_now());
            }
            None => self.gc_runs.with_label_values(&["busy"]).inc(),
        }
    }

    /// Records a collection pass that failed.
    pub fn collect_failed(&self) {
        self.gc_runs.with_label_values(&["failed"]).inc();
    }

    /// The metrics in the Prometheus text format, the storage gauges read anew when older
    /// than the refresh interval.
    pub async fn render(&self, store: &Registry) -> String {
        self.refresh_usage(store).await;
        let mut out = String::new();
        let families = self.registry.gather();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
            tracing::error!("encoding metrics failed: {e}");
        }
        out
    }

    async fn refresh_usage(&self, store: &Registry) {
        let mut last = self.refreshed.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.options.usage_refresh) {
            return;
        }
        match store.usage(self.options.max_repositories).await {
            Ok(u) => {
                let clamp = |n: u64| n.min(i64::MAX as u64) as i64;
                self.storage_used.set(clamp(u.used_bytes()));
                self.uploads_in_progress.set(clamp(u.uploads));
                self.dangling_manifests.set(clamp(u.dangling_manifests));
                // Repositories that are gone (or fell past the cap) leave no stale series.
                self.artifact_storage.reset();
                for a in &u.by_artifact {
                    self.artifact_storage
                        .with_label_values(&[&a.kind, &a.repository])
                        .set(clamp(a.bytes));
                }
                *last = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!("reading storage usage for the metrics failed: {e}");
                self.usage_failures.with_label_values(&["database"]).inc();
                return;
            }
        }
        match store.quota_usage().await {
            Ok(quotas) => {
                let clamp = |n: u64| n.min(i64::MAX as u64) as i64;
                for q in quotas {
                    self.quota_used
                        .with_label_values(&[&q.namespace])
                        .set(clamp(q.used_bytes));
                    self.quota_limit
                        .with_label_values(&[&q.namespace])
                        .set(clamp(q.limit_bytes));
                }
            }
            Err(e) => {
                tracing::warn!("reading quota usage for the metrics failed: {e}");
                self.usage_failures.with_label_values(&["database"]).inc();
            }
        }
    }

    /// How many series the registry holds (for tests of the cap).
    #[cfg(test)]
    fn series(&self) -> usize {
        self.registry
            .gather()
            .iter()
            .map(|f| f.get_metric().len())
            .sum()
    }
}

/// Methods beyond the distribution API's share one label value, so a client inventing
/// methods cannot grow the series.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The repositories named in labels: the first `max` seen; later ones are `_other`.
struct RepositoryLabels {
    seen: RwLock<HashSet<String>>,
    max: usize,
}

impl RepositoryLabels {
    fn new(max: usize) -> Self {
        RepositoryLabels {
            seen: RwLock::new(HashSet::new()),
            max,
        }
    }

    fn label<'a>(&self, repo: &'a str) -> &'a str {
        {
            let seen = self.seen.read().unwrap_or_else(|p| p.into_inner());
            if seen.contains(repo) {
                return repo;
            }
            if seen.len() >= self.max {
                return OTHER_REPOSITORIES;
            }
        }
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= self.max && !seen.contains(repo) {
            return OTHER_REPOSITORIES;
        }
        seen.insert(repo.to_string());
        repo
    }
}

/// A response body that records, when dropped (sent in full or abandoned), how long the
/// request took.
struct TimedBody {
    inner: Body,
    timer: Histogram,
    started: Instant,
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        self.timer.observe(self.started.elapsed().as_secs_f64());
    }
}

impl http_body::Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
