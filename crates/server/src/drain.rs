//! Reading the rest of a request body that a handler refused without reading.
//!
//! An answer decided before the body is read (416 for an out-of-order chunk, 404 for an
//! unknown upload, 400 for a bad digest) would otherwise be written while the client is still
//! sending; the connection then closes with unread bytes in the kernel's buffer, which makes
//! it send a reset, and the client reports a broken pipe instead of the status (RFC 9112
//! 9.6). So the dispatcher keeps a handle on the body and, after the handler, discards what
//! is left before answering: up to `max_bytes`, each read within the idle timeout, the whole
//! within `max_time`. Past those bounds the answer says `Connection: close`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;

/// The request body, shared between the handler (which reads it through [`SharedBody`]) and
/// the dispatcher (which drains what the handler left).
#[derive(Clone)]
pub(crate) struct BodyHandle {
    body: Arc<Mutex<Body>>,
    /// Whether anyone asked for a byte: until then a client that sent `Expect: 100-continue`
    /// has not started sending, and draining would only invite it to.
    polled: Arc<AtomicBool>,
}

/// Bounds on draining.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DrainLimits {
    pub max_bytes: u64,
    pub idle: Duration,
    pub max_time: Duration,
}

impl BodyHandle {
    pub fn new(body: Body) -> (BodyHandle, Body) {
        let handle = BodyHandle {
            body: Arc::new(Mutex::new(body)),
            polled: Arc::new(AtomicBool::new(false)),
        };
        let reader = Body::new(SharedBody(handle.clone()));
        (handle, reader)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Body> {
        self.body.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Discards what is left of the body within `limits`; on failure marks `response` so
    /// the connection closes after it.
    pub async fn drain(self, expect_continue: bool, limits: DrainLimits, response: &mut Response) {
        if self.lock().is_end_stream() {
            return;
        }
        if expect_continue && !self.polled.load(Ordering::Relaxed) {
            // The client waits for 100 Continue before sending; it gets the answer instead.
            return close(response);
        }
        if self
            .lock()
            .size_hint()
            .exact()
            .is_some_and(|n| n > limits.max_bytes)
        {
            return close(response);
        }
        // The handler is done with it: take it out rather than read through the lock.
        let mut reader = std::mem::replace(&mut *self.lock(), Body::empty());
        let read_all = async {
            let mut seen = 0u64;
            loop {
                match tokio::time::timeout(limits.idle, reader.frame()).await {
                    Ok(Some(Ok(frame))) => {
                        seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                        if seen > limits.max_bytes {
                            return false;
                        }
                    }
                    Ok(None) => return true,
                    Ok(Some(Err(_))) | Err(_) => return false,
                }
            }
        };
        if !tokio::time::timeout(limits.max_time, read_all)
            .await
            .unwrap_or(false)
        {
            close(response);
        }
    }
}

fn close(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// The handler's view of the shared body.
struct SharedBody(BodyHandle);

impl HttpBody for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.0.polled.store(true, Ordering::Relaxed);
        Pin::new(&mut *self.0.lock()).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.lock().size_hint()
    }
}
