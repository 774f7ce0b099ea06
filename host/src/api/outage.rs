//! Requests while the database does not answer: `503 store_unavailable` with
//! `Retry-After` at once, instead of each request finding out by hanging until some
//! timeout (a frozen database refuses nothing and answers nothing). A request already
//! waiting on the store when it is found unreachable is ended the same way; what it
//! had sent to the store stays the store's (an append whose answer is lost is found by
//! a retry with the same command id).
//!
//! Not covered: the routes that never need the database (`/healthz`, `/readyz`, which
//! answers for itself, `/metrics`, `/openapi.json`, the console's files) and live
//! streams, which end with a `dropped` event of their own.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;

pub(super) async fn answer_within_outage(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let exempt = matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json")
        || path == "/console"
        || path.starts_with("/console/")
        || path.ends_with("/events/live");
    if exempt {
        return next.run(request).await;
    }
    let unreachable =
        || ApiError::store_unavailable("the database does not answer").into_response();
    if !app.reachability.is_reachable() {
        return unreachable();
    }
    tokio::select! {
        response = next.run(request) => response,
        () = app.reachability.lost() => unreachable(),
    }
}
