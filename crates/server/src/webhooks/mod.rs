//! Webhooks: what happened to content (a manifest pushed or deleted, a tag moved, a signature
//! attached), POSTed to the operator's endpoints in Distribution's notification envelope.
//!
//! Handlers describe what they did as [`Notices`] on their response; the dispatcher adds who
//! asked and how, and hands the events to each endpoint's queue without waiting. Each
//! endpoint has one worker that delivers its events in order (those waiting together, in
//! one envelope), retrying with exponential backoff. A queue is bounded: while an endpoint is down its queue fills and further events
//! are dropped and counted, so a push never waits for an endpoint.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use serde::Serialize;
use tokio::sync::mpsc;
use wharf_oci::{ArtifactKind, Digest, Pattern};

/// The envelope's media type, as Distribution 3 sends it.
pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v2+json";

/// What an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A manifest stored (by tag or by digest).
    Push,
    /// A manifest or a tag deleted.
    Delete,
    /// A tag moved from one manifest to another (sent besides the push).
    Tag,
    /// A signature or attestation stored for a subject (sent besides the push).
    Attach,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Push, Action::Delete, Action::Tag, Action::Attach];

    pub fn parse(s: &str) -> Result<Action, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown action {s:?}: expected push, delete, tag or attach"))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Tag => "tag",
            Action::Attach => "attach",
        }
    }
}

/// One configured endpoint. Its `Debug` leaves out header values, which hold credentials.
#[derive(Clone)]
pub struct Endpoint {
    pub name: String,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    /// The actions sent (all when empty).
    pub actions: Vec<Action>,
    /// The repositories whose events are sent (all when empty).
    pub repositories: Vec<Pattern>,
    /// Per attempt.
    pub timeout: Duration,
    /// Attempts per event, the first included.
    pub max_attempts: usize,
    /// The wait after the first failed attempt; it doubles after each, up to a minute.
    pub backoff: Duration,
    /// Events waiting at most; more are dropped.
    pub queue: usize,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("headers", &headers)
            .field("actions", &self.actions)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    fn wants(&self, action: Action, repository: &str) -> bool {
        (self.actions.is_empty() || self.actions.contains(&action))
            && (self.repositories.is_empty()
                || self.repositories.iter().any(|p| p.matches(repository)))
    }
}

/// What a handler did, for the events it makes.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub action: Action,
    pub repository: String,
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    pub tag: Option<String>,
    pub kind: Option<ArtifactKind>,
    /// For a tag move, the manifest it named before.
    pub previous: Option<Digest>,
    /// For an attachment, what it is attached to.
    pub subject: Option<Digest>,
}

impl Notice {
    pub fn new(action: Action, repository: &str) -> Notice {
        Notice {
            action,
            repository: repository.to_string(),
            digest: None,
            media_type: None,
            size: None,
            tag: None,
            kind: None,
            previous: None,
            subject: None,
        }
    }
}

/// The notices of one response.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notices(pub Vec<Notice>);

/// The notices a stored manifest makes: its push; the tag's move, when it moved; and its
/// attachment, when it is a signature or an attestation of a subject (named as a referrer,
/// or by cosign's `sha256-<hex>.sig` / `.att` tag).
pub(crate) fn manifest_stored(
    repository: &str,
    tag: Option<&str>,
    put: &wharf_store::ManifestPut,
) -> Notices {
    let mut push = Notice::new(Action::Push, repository);
    push.digest = Some(put.digest.clone());
    push.media_type = Some(put.media_type.clone());
    push.size = Some(put.size);
    push.tag = tag.map(str::to_string);
    push.kind = Some(put.kind);
    let mut out = vec![push.clone()];
    if let Some(previous) = &put.moved_from {
        out.push(Notice {
            action: Action::Tag,
            previous: Some(previous.clone()),
            ..push.clone()
        });
    }
    if matches!(
        put.kind,
        ArtifactKind::Signature | ArtifactKind::Attestation
    ) {
        let subject = put.subject.clone().or_else(|| tag.and_then(cosign_subject));
        if subject.is_some() {
            out.push(Notice {
                action: Action::Attach,
                subject,
                ..push
            });
        }
    }
    Notices(out)
}

/// The subject a cosign tag (`sha256-<hex>.sig`, `.att`) names.
fn cosign_subject(tag: &str) -> Option<Digest> {
    let stem = tag
        .strip_suffix(".sig")
        .or_else(|| tag.strip_suffix(".att"))?;
    let (alg, hex) = stem.split_once('-')?;
    format!("{alg}:{hex}").parse().ok()
}

/// The actor of the events a garbage collection pass makes (retention and collection).
pub const GC_ACTOR: &str = "wharf-gc";

/// The request an event came from.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RequestRecord {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub method: String,
    pub useragent: String,
}

impl RequestRecord {
    pub fn of(req: &axum::extract::Request, id: &str) -> RequestRecord {
        let header = |h: axum::http::HeaderName| {
            req.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        RequestRecord {
            id: id.to_string(),
            addr: req
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.to_string()),
            host: header(axum::http::header::HOST),
            method: req.method().to_string(),
            useragent: header(axum::http::header::USER_AGENT).unwrap_or_default(),
        }
    }
}

/// Events sent in one envelope at most: while an endpoint keeps up, each goes alone; when
/// events wait, those waiting go together.
const MAX_BATCH: usize = 100;

/// The envelope of `events`, each already JSON.
fn envelope(events: &[Arc<Vec<u8>>]) -> bytes::Bytes {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 12);
    body.extend_from_slice(b"{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e);
    }
    body.extend_from_slice(b"]}");
    body.into()
}

#[derive(Debug, Serialize)]
struct Event {
    id: String,
    timestamp: String,
    action: Action,
    target: Target,
    request: RequestRecord,
    actor: Actor,
    source: Source,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    /// The same as `size`, as Distribution also sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    /// Wharf's additions: the artifact kind, the digest a moved tag named before, and the
    /// subject of an attachment.
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject_digest: Option<String>,
}

#[derive(Debug, Serialize)]
struct Actor {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Source {
    addr: String,
    #[serde(rename = "instanceID")]
    instance_id: String,
}

/// Counters of deliveries, per endpoint.
#[derive(Clone)]
struct Counters {
    deliveries: IntCounterVec,
    attempt_failures: IntCounterVec,
    dropped: IntCounterVec,
    queued: IntGaugeVec,
}

impl Counters {
    fn new(metrics: Option<&crate::metrics::Metrics>, endpoints: &[Endpoint]) -> Counters {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            if let Some(m) = metrics {
                m.register(Box::new(c.clone()));
            }
            c
        };
        let queued = IntGaugeVec::new(
            Opts::new(
                "wharf_webhook_queue_length",
                "Events waiting for delivery to a webhook endpoint.",
            ),
            &["endpoint"],
        )
        .expect("valid gauge");
        if let Some(m) = metrics {
            m.register(Box::new(queued.clone()));
        }
        let c = Counters {
            deliveries: counter(
                "wharf_webhook_deliveries_total",
                "Events a webhook endpoint accepted (delivered) or did not after every attempt (failed).",
                &["endpoint", "result"],
            ),
            attempt_failures: counter(
                "wharf_webhook_attempt_failures_total",
                "Delivery attempts that failed (an error, a timeout or a status other than 2xx).",
                &["endpoint"],
            ),
            dropped: counter(
                "wharf_webhook_dropped_total",
                "Events dropped because the endpoint's queue was full.",
                &["endpoint"],
            ),
            queued,
        };
        // Every series from the start, so that an alert on an increase sees the first one.
        for e in endpoints {
            let n = e.name.as_str();
            c.deliveries.with_label_values(&[n, "delivered"]);
            c.deliveries.with_label_values(&[n, "failed"]);
            c.attempt_failures.with_label_values(&[n]);
            c.dropped.with_label_values(&[n]);
            c.queued.with_label_values(&[n]);
        }
        c
    }
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.queues.iter().map(|(e, _)| e.name.as_str()).collect();
        f.debug_struct("Webhooks")
            .field("endpoints", &names)
            .finish()
    }
}

/// The endpoints and their queues.
pub struct Webhooks {
    queues: Vec<(Endpoint, mpsc::Sender<Arc<Vec<u8>>>)>,
    source: Source,
    /// `http` or `https`, for the events' URLs.
    scheme: &'static str,
    counters: Counters,
    /// Events queued or being delivered, over all endpoints: what a stop waits for.
    pending: Arc<std::sync::atomic::AtomicUsize>,
}

impl Webhooks {
    /// Starts one delivery worker per endpoint (on the current runtime). `source_addr` is
    /// this replica's address, as events name their source.
    pub fn start(
        endpoints: Vec<Endpoint>,
        source_addr: String,
        https: bool,
        metrics: Option<&crate::metrics::Metrics>,
    ) -> Result<Arc<Webhooks>, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        let counters = Counters::new(metrics, &endpoints);
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut queues = Vec::new();
        for e in endpoints {
            let (tx, rx) = mpsc::channel(e.queue.max(1));
            let worker = Worker {
                endpoint: e.clone(),
                client: client.clone(),
                counters: counters.clone(),
                pending: pending.clone(),
            };
            tokio::spawn(worker.deliver(rx));
            queues.push((e, tx));
        }
        Ok(Arc::new(Webhooks {
            queues,
            source: Source {
                addr: source_addr,
                instance_id: uuid::Uuid::new_v4().to_string(),
            },
            scheme: if https { "https" } else { "http" },
            counters,
            pending,
        }))
    }

    /// Waits until every queued event has been delivered or given up on, or until
    /// `deadline`; returns how many were left. A stopping registry calls this once it has
    /// stopped taking requests, so that events of acknowledged pushes are not lost.
    pub async fn flush(&self, deadline: tokio::time::Instant) -> usize {
        use std::sync::atomic::Ordering;
        loop {
            let left = self.pending.load(Ordering::Acquire);
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Queues the events of `notices` for the endpoints that want them; never waits.
    pub(crate) fn notify(&self, notices: &Notices, request: &RequestRecord, actor: Option<&str>) {
        for n in &notices.0 {
            let wanting: Vec<_> = self
                .queues
                .iter()
                .filter(|(e, _)| e.wants(n.action, &n.repository))
                .collect();
            if wanting.is_empty() {
                continue;
            }
            let event = self.event(n, request, actor);
            let body = Arc::new(serde_json::to_vec(&event).expect("events serialise"));
            for (e, tx) in wanting {
                // Counted first, so that a worker never sees an event it could un-count
                // before it was counted.
                self.pending
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                match tx.try_send(body.clone()) {
                    Ok(()) => self.counters.queued.with_label_values(&[&e.name]).inc(),
                    Err(_) => {
                        self.pending
                            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                        self.counters.dropped.with_label_values(&[&e.name]).inc();
                        tracing::warn!(endpoint = %e.name, "webhook queue full: event dropped");
                    }
                }
            }
        }
    }

    /// Queues the delete events of a collection pass: the tags retention let go, then the
    /// manifests it deleted. No request made them; the actor is [`GC_ACTOR`].
    pub fn collected(&self, report: &wharf_store::GcReport) {
        let tags = report.tags.iter().filter_map(|t| {
            let (repository, tag) = t.split_once(':')?;
            Some(Notice {
                tag: Some(tag.to_string()),
                ..Notice::new(Action::Delete, repository)
            })
        });
        let manifests = report.manifests.iter().filter_map(|m| {
            let (repository, digest) = m.split_once('@')?;
            Some(Notice {
                digest: Some(digest.parse().ok()?),
                ..Notice::new(Action::Delete, repository)
            })
        });
        let notices = Notices(tags.chain(manifests).collect());
        if notices.0.is_empty() {
            return;
        }
        let request = RequestRecord {
            id: uuid::Uuid::new_v4().to_string(),
            addr: None,
            host: None,
            method: String::new(),
            useragent: String::new(),
        };
        self.notify(&notices, &request, Some(GC_ACTOR));
    }

    fn event(&self, n: &Notice, request: &RequestRecord, actor: Option<&str>) -> Event {
        let url = match (&request.host, &n.digest) {
            (Some(host), Some(d)) => Some(format!(
                "{}://{host}/v2/{}/manifests/{d}",
                self.scheme, n.repository
            )),
            _ => None,
        };
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
            action: n.action,
            target: Target {
                media_type: n.media_type.clone(),
                size: n.size,
                digest: n.digest.as_ref().map(Digest::to_string),
                length: n.size,
                repository: n.repository.clone(),
                url,
                tag: n.tag.clone(),
                artifact_kind: n.kind.map(ArtifactKind::as_str),
                previous_digest: n.previous.as_ref().map(Digest::to_string),
                subject_digest: n.subject.as_ref().map(Digest::to_string),
            },
            request: request.clone(),
            actor: Actor {
                name: actor.map(str::to_string),
            },
            source: self.source.clone(),
        }
    }
}

/// One endpoint's delivery loop and what it reports to.
struct Worker {
    endpoint: Endpoint,
    client: reqwest::Client,
    counters: Counters,
    pending: Arc<std::sync::atomic::AtomicUsize>,
}

impl Worker {
    /// Delivers the endpoint's events in order until the registry stops.
    async fn deliver(self, mut rx: mpsc::Receiver<Arc<Vec<u8>>>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.send(&batch).await;
            self.pending
                .fetch_sub(batch.len(), std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Posts one batch, retrying as configured, and counts the outcome.
    async fn send(&self, batch: &[Arc<Vec<u8>>]) {
        use backon::{ExponentialBuilder, Retryable};
        let (e, counters) = (&self.endpoint, &self.counters);
        let name = e.name.as_str();
        counters
            .queued
            .with_label_values(&[name])
            .sub(batch.len() as i64);
        let body = envelope(batch);
        let attempt = || post(&self.client, e, body.clone());
        let backoff = ExponentialBuilder::default()
            .with_min_delay(e.backoff)
            .with_max_delay(Duration::from_secs(60))
            .with_max_times(e.max_attempts.saturating_sub(1));
        let result = attempt
            .retry(backoff)
            .notify(|err, wait| {
                counters.attempt_failures.with_label_values(&[name]).inc();
                tracing::info!(
                    endpoint = name,
                    "webhook delivery failed ({err}); again in {wait:?}"
                );
            })
            .await;
        let events = batch.len() as u64;
        match result {
            Ok(()) => counters
                .deliveries
                .with_label_values(&[name, "delivered"])
                .inc_by(events),
            Err(err) => {
                counters.attempt_failures.with_label_values(&[name]).inc();
                counters
                    .deliveries
                    .with_label_values(&[name, "failed"])
                    .inc_by(events);
                tracing::warn!(
                    endpoint = name,
                    attempts = e.max_attempts,
                    events,
                    "webhook events not delivered: {err}"
                );
            }
        }
    }
}

async fn post(client: &reqwest::Client, e: &Endpoint, body: bytes::Bytes) -> Result<(), String> {
    let mut req = client
        .post(e.url.clone())
        .timeout(e.timeout)
        .header(reqwest::header::CONTENT_TYPE, EVENTS_MEDIA_TYPE);
    for (k, v) in &e.headers {
        req = req.header(k, v);
    }
    let response = req
        .body(body)
        .send()
        .await
        .map_err(|err| err.without_url().to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the endpoint answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(
        kind: ArtifactKind,
        subject: Option<Digest>,
        moved: Option<Digest>,
    ) -> wharf_store::ManifestPut {
        wharf_store::ManifestPut {
            digest: Digest::sha256_of(b"m"),
            subject,
            kind,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 10,
            moved_from: moved,
        }
    }

    fn actions(n: &Notices) -> Vec<Action> {
        n.0.iter().map(|n| n.action).collect()
    }

    #[test]
    fn a_stored_manifest_makes_a_push_and_what_else_happened() {
        let old = Digest::sha256_of(b"old");
        let n = manifest_stored("r", Some("v1"), &put(ArtifactKind::Image, None, None));
        assert_eq!(actions(&n), [Action::Push]);
        let n = manifest_stored(
            "r",
            Some("v1"),
            &put(ArtifactKind::Image, None, Some(old.clone())),
        );
        assert_eq!(actions(&n), [Action::Push, Action::Tag]);
        assert_eq!(n.0[1].previous, Some(old));
        let subject = Digest::sha256_of(b"subject");
        let n = manifest_stored(
            "r",
            None,
            &put(ArtifactKind::Signature, Some(subject.clone()), None),
        );
        assert_eq!(actions(&n), [Action::Push, Action::Attach]);
        assert_eq!(n.0[1].subject, Some(subject.clone()));
        // cosign's tag scheme names the subject
        let tag = format!("sha256-{}.sig", subject.hex());
        let n = manifest_stored("r", Some(&tag), &put(ArtifactKind::Signature, None, None));
        assert_eq!(n.0[1].subject, Some(subject));
        // an SBOM is no signature; a signature of nothing attaches to nothing
        let n = manifest_stored(
            "r",
            None,
            &put(ArtifactKind::Sbom, Some(Digest::sha256_of(b"s")), None),
        );
        assert_eq!(actions(&n), [Action::Push]);
        let n = manifest_stored(
            "r",
            Some("x.sig"),
            &put(ArtifactKind::Signature, None, None),
        );
        assert_eq!(actions(&n), [Action::Push]);
    }

    #[test]
    fn waiting_events_share_an_envelope() {
        let one = Arc::new(br#"{"action":"push"}"#.to_vec());
        let two = Arc::new(br#"{"action":"delete"}"#.to_vec());
        let body = envelope(&[one.clone(), two]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["events"][0]["action"], "push");
        assert_eq!(v["events"][1]["action"], "delete");
        let v: serde_json::Value = serde_json::from_slice(&envelope(&[one])).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn endpoints_filter_by_action_and_repository() {
        let e = Endpoint {
            name: "e".into(),
            url: "http://127.0.0.1:1/".parse().unwrap(),
            headers: vec![],
            actions: vec![Action::Delete],
            repositories: vec![Pattern::new("prod/**").unwrap()],
            timeout: Duration::from_secs(1),
            max_attempts: 1,
            backoff: Duration::from_millis(1),
            queue: 1,
        };
        assert!(e.wants(Action::Delete, "prod/app"));
        assert!(!e.wants(Action::Push, "prod/app"));
        assert!(!e.wants(Action::Delete, "dev/app"));
        assert_eq!(Action::parse("attach"), Ok(Action::Attach));
        assert!(Action::parse("pull")
            .unwrap_err()
            .contains("unknown action \"pull\""));
    }
}
