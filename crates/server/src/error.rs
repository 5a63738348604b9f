//! API errors: the distribution-spec's JSON error body, and the one mapping from storage and
//! spec errors to error codes and HTTP statuses.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use wharf_auth::AuthError;
use wharf_oci::{ErrorCode, SpecError};
use wharf_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    status: StatusCode,
    message: String,
    /// Internal text (database and I/O messages) for the log only; clients get `message`.
    detail: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            status: StatusCode::from_u16(code.status()).expect("codes map to valid statuses"),
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    /// A failure of the registry itself: `detail` is logged, never sent.
    pub fn internal(detail: impl Into<String>) -> Self {
        let mut e = ApiError::new(ErrorCode::Unknown, "internal server error");
        e.detail = Some(detail.into());
        e
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Logs an internal failure under a new request id, which the client's message names so
    /// that an operator can find the cause.
    pub(crate) fn log_internal(mut self, method: &axum::http::Method) -> Self {
        if let Some(detail) = self.detail.take() {
            let id = crate::access::current_id()
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
            tracing::error!(request_id = %id, %method, status = %self.status, "{detail}");
            self.message = format!("{} (request id {id})", self.message);
        } else if self.status.is_server_error() {
            tracing::error!(%method, status = %self.status, "{}", self.message);
        }
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        if let Ok(v) = HeaderValue::from_str(&value) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    /// The value of a header this error will carry.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .and_then(|(_, v)| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

/// The `Range` header value for an upload holding `size` bytes ("0-0" when empty, as
/// Distribution does).
pub(crate) fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let msg = e.to_string();
        if e.is_out_of_files() {
            return ApiError::internal(msg)
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .with_message("the registry has run out of file descriptors; try again shortly")
                .with_header("retry-after", "5".into());
        }
        match e {
            StoreError::BlobUnknown => ApiError::new(ErrorCode::BlobUnknown, msg),
            // The log has the fault; the client is told only that the blob is not there, so
            // that it pushes it again (which repairs it).
            StoreError::BlobMissing { .. } => {
                ApiError::new(ErrorCode::BlobUnknown, "blob unknown to this repository")
            }
            StoreError::UploadUnknown => ApiError::new(ErrorCode::BlobUploadUnknown, msg),
            StoreError::RangeNotSatisfiable { size } => {
                ApiError::new(ErrorCode::BlobUploadInvalid, msg)
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_header("range", upload_range(size))
            }
            StoreError::UploadInvalid(_) | StoreError::BodyIncomplete(_) => {
                ApiError::new(ErrorCode::BlobUploadInvalid, msg)
            }
            StoreError::DigestMismatch { .. } => ApiError::new(ErrorCode::DigestInvalid, msg),
            StoreError::ManifestUnknown => ApiError::new(ErrorCode::ManifestUnknown, msg),
            StoreError::ManifestBlobUnknown(_) => {
                ApiError::new(ErrorCode::ManifestBlobUnknown, msg)
            }
            StoreError::NameUnknown => ApiError::new(ErrorCode::NameUnknown, msg),
            StoreError::Busy(_) => ApiError::new(ErrorCode::TooManyRequests, msg),
            StoreError::TagProtected(_)
            | StoreError::TagImmutable(_)
            | StoreError::QuotaExceeded(_)
            | StoreError::KindRefused(_) => ApiError::new(ErrorCode::Denied, msg),
            StoreError::ManifestTooLarge { .. } => ApiError::new(ErrorCode::SizeInvalid, msg)
                .with_status(StatusCode::PAYLOAD_TOO_LARGE),
            StoreError::Spec(e) => e.into(),
            StoreError::StorageFull(_) => ApiError::internal(msg)
                .with_status(StatusCode::INSUFFICIENT_STORAGE)
                .with_message("the registry's storage is full"),
            StoreError::ReadOnly(_) => ApiError::internal(msg)
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .with_message(
                    "the registry's storage is read-only: pulls work, pushes and deletes do not",
                ),
            StoreError::Io(_) | StoreError::Database(_) => ApiError::internal(msg),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let msg = e.to_string();
        match e {
            AuthError::InvalidCredentials => ApiError::new(ErrorCode::Unauthorized, msg),
            AuthError::TooManyFailures { retry_after_secs } => {
                ApiError::new(ErrorCode::TooManyRequests, msg)
                    .with_header("retry-after", retry_after_secs.to_string())
            }
            AuthError::NoTokenService => {
                ApiError::new(ErrorCode::Unsupported, msg).with_status(StatusCode::NOT_FOUND)
            }
            AuthError::WrongService { .. } => ApiError::new(ErrorCode::Denied, msg),
            AuthError::Config(_) | AuthError::Store(_) => ApiError::internal(msg),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(Serialize)]
struct Entry<'a> {
    code: &'static str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            errors: [Entry {
                code: self.code.as_str(),
                message: &self.message,
            }],
        })
        .expect("error body serialises");
        let mut r = crate::json_response(self.status, body);
        for (k, v) in self.headers {
            r.headers_mut().insert(k, v);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(e: ApiError) -> (StatusCode, String) {
        let r = e.log_internal(&axum::http::Method::PUT).into_response();
        let status = r.status();
        let bytes = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn internal_text_stays_in_the_log() {
        let e = ApiError::from(StoreError::Database(
            "relation \"tags\" does not exist at /var/lib/secret".into(),
        ));
        let (status, body) = body_of(e).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !body.contains("secret") && !body.contains("relation"),
            "{body}"
        );
        assert!(
            body.contains("\"UNKNOWN\"") && body.contains("request id "),
            "{body}"
        );

        let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "ENOSPC on /dev/sdb1");
        let (status, body) = body_of(ApiError::from(StoreError::from_io(full))).await;
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
        assert!(
            body.contains("storage is full") && !body.contains("sdb1"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn storage_states_get_their_own_statuses() {
        let emfile = std::io::Error::from_raw_os_error(libc_emfile());
        let e = ApiError::from(StoreError::from_io(emfile));
        assert_eq!(e.header("retry-after").as_deref(), Some("5"));
        let (status, body) = body_of(e).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("out of file descriptors"), "{body}");

        let rofs = std::io::Error::new(std::io::ErrorKind::ReadOnlyFilesystem, "EROFS");
        let (status, body) = body_of(ApiError::from(StoreError::from_io(rofs))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("read-only") && !body.contains("EROFS"),
            "{body}"
        );

        let missing = StoreError::BlobMissing {
            digest: wharf_oci::Digest::sha256_of(b"x"),
            recorded: 1,
            found: None,
        };
        let (status, body) = body_of(ApiError::from(missing)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            body.contains("BLOB_UNKNOWN") && !body.contains("recorded"),
            "{body}"
        );
    }

    /// EMFILE, "too many open files", on Linux.
    fn libc_emfile() -> i32 {
        24
    }

    #[tokio::test]
    async fn client_errors_keep_their_message() {
        let (status, body) = body_of(ApiError::from(StoreError::BlobUnknown)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            body.contains("BLOB_UNKNOWN") && !body.contains("request id"),
            "{body}"
        );
    }
}
