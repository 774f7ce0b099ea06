//! The host's one error type: every failure a client can see, with its HTTP status
//! and the shape `{"error": {"code", "message", ...details}}` from the API contract.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::runtime::PluginFailure;
use crate::store::AppendError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Machine-readable, snake_case.
    pub code: &'static str,
    /// For a person.
    pub message: String,
    /// Extra fields beside code and message (e.g. `current_version`).
    pub details: Map<String, Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
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

    /// A bug or a broken dependency: logged in full, shown briefly.
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {error:#}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error: {error:#}"),
        )
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
        ApiError::internal(error)
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
            AppendError::Store(message) => ApiError::internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(self.message));
        error.extend(self.details);
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}
