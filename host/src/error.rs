//! The host's one error type: every failure a client can see, with its HTTP status
//! and the shape `{"error": {"code", "message", "request_id", ...details}}` from the
//! API contract; and the request id every answer and log line of a request carries.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::runtime::PluginFailure;
use crate::store::{AppendError, StoreFault};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Machine-readable, snake_case.
    pub code: &'static str,
    /// For a person.
    pub message: String,
    /// Extra fields beside code and message (e.g. `current_version`).
    pub details: Map<String, Value>,
    /// Seconds for a `Retry-After` header: set on the answers that say "the same
    /// request may succeed later" (the store unavailable, the disk full).
    pub retry_after: Option<u32>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
        }
    }

    /// Asks the client to retry after `seconds` (a `Retry-After` header).
    pub fn retry_after(mut self, seconds: u32) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// `507 storage_full`: the host's disk (or the database's) has no room for this
    /// write. Nothing of it was stored; reads go on; retry once space returns.
    pub fn storage_full(message: impl std::fmt::Display) -> ApiError {
        let id = current_request_id().unwrap_or_else(new_request_id);
        tracing::warn!(request_id = %id, "storage full: {message:#}");
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage_full",
            "the server's storage is full: nothing of this request was stored; \
             retry once the operator has freed space",
        )
        .with("request_id", id)
        .retry_after(5)
    }

    /// `503 store_unavailable`: the database did not answer, or refused for a passing
    /// reason. Nothing of the request is known to be stored (a command id makes the
    /// retry safe either way).
    pub fn store_unavailable(message: impl std::fmt::Display) -> ApiError {
        let id = current_request_id().unwrap_or_else(new_request_id);
        tracing::warn!(request_id = %id, "store unavailable: {message:#}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the database is unavailable or busy right now; retry (with the same \
             command_id, a retry is applied at most once)",
        )
        .with("request_id", id)
        .retry_after(1)
    }

    /// The answer for a store failure of kind `fault`.
    pub fn from_store(fault: StoreFault, error: impl std::fmt::Display) -> ApiError {
        match fault {
            StoreFault::Full => ApiError::storage_full(error),
            StoreFault::Unavailable => ApiError::store_unavailable(error),
            StoreFault::Other => ApiError::internal(error),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn already_exists(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "already_exists", message)
    }

    pub fn wrong_expected_version(current: u64) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "wrong_expected_version",
            format!("the stream is at version {current}"),
        )
        .with("current_version", current)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    pub fn rejected(domain_code: String, message: String) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", message)
            .with("domain_code", domain_code)
    }

    pub fn invalid_plugin(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin", message)
    }

    pub fn over_limit(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "over_limit", message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// `408 body_timeout`: the request body kept the server waiting past its bound
    /// (`cairn serve --body-read-timeout`); the connection is closed after the answer.
    pub fn body_timeout(detail: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("{detail}: a body must keep arriving; send it again"),
        )
    }

    /// The answer to a request head that could not be parsed (before any route), by
    /// the status the HTTP layer chose: `414 uri_too_long`, `431 headers_too_large`,
    /// else `400 malformed_request`.
    pub fn unparsable_head(
        status: StatusCode,
        max_headers: usize,
        max_head_bytes: usize,
        max_uri_bytes: usize,
    ) -> ApiError {
        match status {
            StatusCode::URI_TOO_LONG => ApiError::new(
                status,
                "uri_too_long",
                format!("the request's URI is longer than {max_uri_bytes} bytes"),
            ),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::new(
                status,
                "headers_too_large",
                format!(
                    "the request's head has more than {max_headers} header fields or is \
                     larger than {max_head_bytes} bytes"
                ),
            ),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                "the request's head is not valid HTTP/1.1: its request line (method, \
                 target, version), a header, or its Content-Length or Transfer-Encoding",
            ),
        }
    }

    /// A bug or a broken dependency: logged in full with the request id, shown to the
    /// client only as that id. A store's message may name tables, constraints or other
    /// tenants' values, so it never leaves the host.
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        let id = current_request_id().unwrap_or_else(new_request_id);
        tracing::error!(request_id = %id, "internal error: {error:#}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the operator can find it in the server log by its request_id",
        )
        .with("request_id", id)
    }
}

/// A store failure answered as an `ApiError` keeps its kind in its code: the database
/// unavailable or busy, or the disk full, may pass; anything else will not.
impl crate::store::retry::Transient for ApiError {
    fn is_transient(&self) -> bool {
        self.store_fault().is_retryable()
    }
}

/// For logs: the code and the message.
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ApiError {
    /// The kind of store failure this answer reports (`Other` for every answer that is
    /// not a store's passing failure).
    pub fn store_fault(&self) -> StoreFault {
        match self.code {
            "storage_full" => StoreFault::Full,
            "store_unavailable" => StoreFault::Unavailable,
            _ => StoreFault::Other,
        }
    }

    /// This error as an `anyhow::Error` for code that speaks `anyhow` (verification),
    /// still classified as the store failure it reports (`store::fault::classify`).
    pub fn into_anyhow(self) -> anyhow::Error {
        anyhow::Error::new(crate::store::fault::Classified {
            fault: self.store_fault(),
            message: self.message,
        })
    }
}

impl From<PluginFailure> for ApiError {
    fn from(failure: PluginFailure) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "plugin_failed",
            failure.message,
        )
        .with("reason", failure.reason.as_str())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> ApiError {
        ApiError::from_store(crate::store::fault::classify(&error), error)
    }
}

impl From<AppendError> for ApiError {
    fn from(error: AppendError) -> ApiError {
        match error {
            AppendError::WrongExpectedVersion { current } => {
                ApiError::wrong_expected_version(current)
            }
            AppendError::IdempotencyConflict => ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                "some of these event ids were already appended, but not as this same append",
            ),
            AppendError::CommandAlreadyApplied => ApiError::new(
                StatusCode::CONFLICT,
                "already_applied",
                "this command id was already applied",
            ),
            AppendError::UnknownTenant => ApiError::not_found("no such tenant"),
            AppendError::GroupRefused => ApiError::new(
                StatusCode::CONFLICT,
                "not_written",
                "another append of the same request was refused, so nothing was written",
            ),
            AppendError::Store(fault, message) => ApiError::from_store(fault, message),
        }
    }
}

impl ApiError {
    /// The error's body in the contract's shape, naming `request_id` when there is one.
    pub fn to_json(&self, request_id: Option<&str>) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(self.message));
        if let Some(id) = request_id {
            error.insert("request_id".into(), json!(id));
        }
        error.extend(self.details.clone());
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.to_json(current_request_id().as_deref());
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

tokio::task_local! {
    /// The id of the request being answered, set by the API's request-id layer for the
    /// whole of its handling, so an error made anywhere in it can name it.
    static REQUEST_ID: String;
}

/// Runs `future` (one request's handling) with `id` as its request id.
pub async fn with_request_id<F: Future>(id: String, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}

/// The id of the request being handled on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A fresh request id: 16 random hex digits, short enough to quote on the phone.
pub fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
