//! Extractors for the path, the query string and request bodies whose every failure is
//! an [`ApiError`] in the contract's shape, with a stable code: `invalid_path`,
//! `invalid_query`, `invalid_body`, `bad_request` (400), `body_timeout` (408),
//! `too_large` (413). axum's own extractors answer `text/plain`; handlers use these
//! instead.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::serve::BodyTimeout;
use crate::store::text_problem;

/// Like `axum::extract::Path`; a segment that is not UTF-8, does not parse, or holds a
/// character no store can keep is a 400 `invalid_path` naming it. An empty segment
/// (`/aggregates/account//commands`) is a 400 `bad_request`: no tenant, plugin,
/// aggregate, stream, projection, build or key is named by nothing, and an empty
/// aggregate id would write a stream (`account-`) that no read can name.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| invalid_path(e.status(), e.body_text()))?;
        for (name, value) in &raw {
            if value.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "the path's `{name}` segment is empty"
                )));
            }
            if let Some(problem) = text_problem(name, value) {
                return Err(invalid_path(StatusCode::BAD_REQUEST, problem));
            }
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|e| invalid_path(e.status(), e.body_text()))
    }
}

fn invalid_path(status: StatusCode, message: String) -> ApiError {
    // A route whose handler asks for a parameter it does not have is our bug.
    if status.is_server_error() {
        return ApiError::internal(message);
    }
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", message)
}

/// Like `axum::extract::Query`; a parameter that does not parse (`?after=-1`,
/// `?limit=x`, an unknown `direction`) is a 400 `invalid_query` naming it.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
    }
}

/// A query parameter that reaches the store: refused when the store cannot keep it.
pub fn stored_query_text(name: &str, value: Option<&str>) -> Result<(), ApiError> {
    match value.and_then(|value| text_problem(name, value)) {
        Some(problem) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            problem,
        )),
        None => Ok(()),
    }
}

/// Reads a whole body of at most `max` bytes. Over `max` (declared or sent) is 413
/// `too_large`; a body that breaks off or is malformed on the wire (bad chunked
/// framing) is 400 `invalid_body` — only a real oversize is a 413; one that keeps the
/// server waiting past its bound is 408 `body_timeout`.
pub async fn read_body(
    body: Body,
    max: usize,
    too_large: impl Fn() -> ApiError,
) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, max).await.map_err(|error| {
        if cause::<http_body_util::LengthLimitError>(&error).is_some() {
            return too_large();
        }
        unreadable_body(&error)
    })
}

/// The answer for a request body that could not be read: 408 `body_timeout` when the
/// client kept the server waiting past the bound `serve` puts on every body, else 400
/// `invalid_body` (it broke off, or its framing on the wire is broken).
pub fn unreadable_body(error: &(dyn std::error::Error + 'static)) -> ApiError {
    match cause::<BodyTimeout>(error) {
        Some(timeout) => ApiError::body_timeout(timeout),
        None => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the request body could not be read: {error}"),
        ),
    }
}

/// The first error of type `E` in `error`'s chain of causes.
fn cause<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cause = e.source();
    }
    None
}

/// Where a declared `Content-Length` is already over `max`, refuse before reading.
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<usize> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}
