//! Reading requests: query parameters, byte ranges, and the body as a stream.

use std::io;
use std::ops::Range;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use futures_util::{StreamExt, TryStreamExt};

use wharf_oci::ErrorCode;
use wharf_store::ByteStream;

use crate::error::ApiError;

/// Query parameters, percent-decoded. `+` stays `+`: media types such as `…+json` are often
/// sent unescaped, and reading them as spaces would silently match nothing.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    /// Refuses a parameter holding a NUL byte: no name, tag, digest or media type has one,
    /// and PostgreSQL text cannot store one.
    pub fn of(req: &Request) -> Result<Query, ApiError> {
        Query::parse(req.uri())
    }

    pub fn parse(uri: &axum::http::Uri) -> Result<Query, ApiError> {
        let q = uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = q
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        if let Some((k, _)) = pairs
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(ApiError::new(
                ErrorCode::Unsupported,
                format!("query parameter {k:?} contains a NUL byte"),
            )
            .with_status(axum::http::StatusCode::BAD_REQUEST));
        }
        Ok(Query(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Malformed escapes stay as they are, and invalid UTF-8 becomes U+FFFD.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

pub(crate) fn header_str(req: &Request, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request carries a body at all (a PUT closing an upload may or may not).
/// The request's declared body size, when it declares one.
pub(crate) fn content_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn has_body(req: &Request) -> bool {
    axum::body::HttpBody::size_hint(req.body()).exact() != Some(0)
}

/// The request body as a stream that fails when no byte arrives for `idle`, so a client that
/// stalls mid-body cannot hold an upload (and its lock) forever.
pub(crate) fn body_stream(body: Body, idle: Duration) -> ByteStream {
    let inner = TryStreamExt::map_err(body.into_data_stream(), io::Error::other);
    Box::pin(futures_util::stream::unfold(
        Box::pin(inner),
        move |mut s| async move {
            match tokio::time::timeout(idle, s.next()).await {
                Ok(Some(item)) => Some((item, s)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no data received for {}s", idle.as_secs()),
                    )),
                    s,
                )),
            }
        },
    ))
}

/// Parses an upload chunk's `Content-Range`: `start-end`, optionally prefixed by `bytes=` or
/// `bytes ` and followed by `/total`.
pub(crate) fn content_range(v: &str) -> Result<(u64, u64), ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::BlobUploadInvalid,
            format!("malformed Content-Range {v:?}: expected <start>-<end>"),
        )
    };
    let s = v.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or("");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let start = a.trim().parse().map_err(|_| bad())?;
    let end = b.trim().parse().map_err(|_| bad())?;
    Ok((start, end))
}

/// Parses a GET's `Range: bytes=…` against a blob of `size` bytes. `Ok(None)` means serve the
/// whole blob (no header, or a form we choose to ignore such as several ranges).
pub(crate) fn byte_range(v: &str, size: u64) -> Result<Option<Range<u64>>, ApiError> {
    let unsatisfiable = || {
        ApiError::new(
            ErrorCode::RangeInvalid,
            format!("range {v:?} is not satisfiable"),
        )
        .with_header("content-range", format!("bytes */{size}"))
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| unsatisfiable())?;
        if n == 0 {
            return Err(unsatisfiable());
        }
        size.saturating_sub(n)..size
    } else {
        let start: u64 = a.parse().map_err(|_| unsatisfiable())?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| unsatisfiable())?
                .min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Err(unsatisfiable());
        }
        start..end + 1
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("0-99").unwrap(), (0, 99));
        assert_eq!(content_range("bytes=100-199").unwrap(), (100, 199));
        assert_eq!(content_range("bytes 5-9/10").unwrap(), (5, 9));
        assert!(content_range("5").is_err());
        assert!(content_range("a-b").is_err());
        assert!(content_range("-5").is_err());
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range("bytes=0-9", 100).unwrap(), Some(0..10));
        assert_eq!(byte_range("bytes=90-", 100).unwrap(), Some(90..100));
        assert_eq!(byte_range("bytes=-10", 100).unwrap(), Some(90..100));
        assert_eq!(byte_range("bytes=50-1000", 100).unwrap(), Some(50..100));
        assert_eq!(byte_range("bytes=0-1,5-6", 100).unwrap(), None);
        assert_eq!(byte_range("items=0-1", 100).unwrap(), None);
        for bad in [
            "bytes=100-",
            "bytes=5-2",
            "bytes=x-1",
            "bytes=-0",
            "bytes=0-0",
        ] {
            let size = if bad == "bytes=0-0" { 0 } else { 100 };
            assert_eq!(
                byte_range(bad, size).unwrap_err().code(),
                ErrorCode::RangeInvalid,
                "{bad}"
            );
        }
    }

    #[test]
    fn percent() {
        assert_eq!(
            percent_decode("application%2Fvnd.x+json"),
            "application/vnd.x+json"
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%é1"), "%é1");
    }
}
