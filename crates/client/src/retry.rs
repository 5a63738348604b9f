//! The client's one retry policy: which failures earn another attempt, and how long to wait
//! before it. Pauses grow exponentially from `ClientOptions::backoff`, with jitter so that
//! many clients failing together do not return together (backon's backoff); a `Retry-After`
//! from the registry is honoured, up to a cap. What may be retried at all is the caller's
//! side of the contract: idempotent requests, and uploads and downloads that resume where
//! they stopped.

use std::time::{Duration, SystemTime};

use backon::BackoffBuilder;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

use crate::{ClientOptions, Error};

/// The longest `Retry-After` we wait out; a registry asking for more is treated as down.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The longest pause between two attempts of our own choosing.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// The attempts left for one operation.
pub(crate) struct Retry {
    backoff: backon::ExponentialBackoff,
}

impl Retry {
    /// `opts.retries` more attempts after the first.
    pub(crate) fn new(opts: &ClientOptions) -> Retry {
        Retry::with_attempts(opts, opts.retries)
    }

    /// `attempts` more attempts after the first, paced as `opts` says.
    pub(crate) fn with_attempts(opts: &ClientOptions, attempts: u32) -> Retry {
        let backoff = backon::ExponentialBuilder::default()
            .with_min_delay(opts.backoff)
            .with_factor(2.0)
            .with_max_delay(MAX_PAUSE.max(opts.backoff))
            .with_max_times(attempts as usize)
            .with_jitter()
            .build();
        Retry { backoff }
    }

    /// The pause before the next attempt, or `None` when none is left.
    pub(crate) fn next(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        let pause = self.backoff.next()?;
        Some(match retry_after {
            Some(asked) if asked > MAX_RETRY_AFTER => return None,
            Some(asked) => asked.max(pause),
            None => pause,
        })
    }

    /// The pause before trying again after `e`, or `None`: not worth retrying, or no
    /// attempts left.
    pub(crate) fn after_error(&mut self, e: &Error) -> Option<Duration> {
        if !e.is_transient() {
            return None;
        }
        self.next(e.retry_after())
    }

    /// The pause before trying again after an answer with `status`: 429 and 5xx only.
    pub(crate) fn after_status(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<Duration> {
        if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
            return None;
        }
        self.next(retry_after(headers))
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(backoff_ms: u64, retries: u32) -> ClientOptions {
        ClientOptions {
            backoff: Duration::from_millis(backoff_ms),
            retries,
            ..ClientOptions::default()
        }
    }

    #[test]
    fn pauses_grow_with_jitter_and_stop() {
        let mut r = Retry::new(&opts(100, 3));
        let pauses: Vec<Duration> = std::iter::from_fn(|| r.next(None)).collect();
        assert_eq!(pauses.len(), 3, "{pauses:?}");
        for (i, p) in pauses.iter().enumerate() {
            let base = Duration::from_millis(100 << i);
            assert!(*p >= base && *p <= base * 2, "attempt {i}: {p:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_a_cap() {
        let mut r = Retry::new(&opts(1, 5));
        assert_eq!(
            r.next(Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(r.next(Some(Duration::from_secs(3600))), None);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(90));
        h.insert(RETRY_AFTER, later.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(85) && d <= Duration::from_secs(90),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn only_transient_answers_are_retried() {
        let mut r = Retry::new(&opts(1, 3));
        let h = HeaderMap::new();
        assert!(r.after_status(StatusCode::NOT_FOUND, &h).is_none());
        assert!(r.after_status(StatusCode::BAD_REQUEST, &h).is_none());
        assert!(r
            .after_status(StatusCode::SERVICE_UNAVAILABLE, &h)
            .is_some());
        assert!(r.after_status(StatusCode::TOO_MANY_REQUESTS, &h).is_some());
        assert!(r.after_error(&Error::NotFound("x".into())).is_none());
    }
}
