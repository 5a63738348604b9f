//! Webhooks: what happened to content (a manifest pushed or deleted, a tag moved, a signature
//! attached), POSTed to the operator's endpoints in Distribution's notification envelope.
//!
//! Handlers describe what they did as `Notices` on their response; the dispatcher adds who
//! asked and how, and hands the events to each endpoint's queue without waiting. Each
//! endpoint has one worker that delivers its events in order (those waiting together, in
//! one envelope), retrying with exponential backoff. A queue is bounded: while an endpoint is down its queue fills and further events
//! are dropped and counted, so a push never waits for an endpoint.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use wharf_oci::Pattern;

mod delivery;
mod event;
use delivery::{Counters, Worker};
pub use event::GC_ACTOR;
pub(crate) use event::{manifest_stored, Notice, Notices, RequestRecord};
use event::{Event, Source};

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
            let event = Event::of(n, request, actor, self.scheme, &self.source);
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
