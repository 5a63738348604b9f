//! Delivery: one worker per endpoint posts its events in order, those waiting together in
//! one envelope, retrying with exponential backoff, and counts what happened.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use tokio::sync::mpsc;

use super::event::envelope;
use super::{Endpoint, EVENTS_MEDIA_TYPE};

/// Events sent in one envelope at most: while an endpoint keeps up, each goes alone; when
/// events wait, those waiting go together.
const MAX_BATCH: usize = 100;

/// Counters of deliveries, per endpoint.
#[derive(Clone)]
pub(super) struct Counters {
    pub(super) deliveries: IntCounterVec,
    pub(super) attempt_failures: IntCounterVec,
    pub(super) dropped: IntCounterVec,
    pub(super) queued: IntGaugeVec,
}

impl Counters {
    pub(super) fn new(
        metrics: Option<&crate::metrics::Metrics>,
        endpoints: &[Endpoint],
    ) -> Counters {
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

/// One endpoint's delivery loop and what it reports to.
pub(super) struct Worker {
    pub(super) endpoint: Endpoint,
    pub(super) client: reqwest::Client,
    pub(super) counters: Counters,
    pub(super) pending: Arc<std::sync::atomic::AtomicUsize>,
}

impl Worker {
    /// Delivers the endpoint's events in order until the registry stops.
    pub(super) async fn deliver(self, mut rx: mpsc::Receiver<Arc<Vec<u8>>>) {
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
