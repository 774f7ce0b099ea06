//! Every request made with a tenant's token passes the tenant's admission
//! (`admission.rs`: requests per second, in flight, imports) before routing, so a
//! tenant's unknown routes, 404s and errors count like its other requests. A refusal
//! is `429 over_limit` with `Retry-After`, naming the limit.
//!
//! Keyed by the token, not the path: requests under `/t/{victim}/…` without the
//! victim's token are not the victim's, and must not spend its allowance (they are
//! answered 401 or 403 by the routes, and bounded by the host's connection cap). The
//! operator is not limited.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{Resolved, bearer};
use crate::app::AppState;
use crate::error::ApiError;
use crate::tenancy::admission::{Refused, RequestKind};
use crate::tenancy::tenant::Caller;

pub(super) async fn admit_tenant_request(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Ok(token) = bearer(request.headers()) else {
        return next.run(request).await;
    };
    // A store failure here is the route's to answer, when its extractor asks again.
    let Ok(caller) = app.tenants.authenticate(token).await else {
        return next.run(request).await;
    };
    request.extensions_mut().insert(Resolved(caller.clone()));
    let Some(Caller::Tenant(tenant)) = caller else {
        return next.run(request).await;
    };
    let gate = match app.tenants.cached_gate(&tenant) {
        Some(gate) => gate,
        None => match app.tenants.gate(&tenant).await {
            Ok(gate) => gate,
            Err(_) => return next.run(request).await,
        },
    };
    let path = request.uri().path();
    let kind = if path.ends_with("/events/live") {
        RequestKind::Live
    } else if request.method() == Method::POST && path.ends_with("/import") {
        RequestKind::Import
    } else {
        RequestKind::Other
    };
    match gate.admit_request(kind) {
        Ok(_admitted) => next.run(request).await,
        Err(refused) => ApiError::from(refused).into_response(),
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> ApiError {
        let limit = refused.limit();
        let (message, retry_after, max) = match refused {
            Refused::Rate {
                per_second,
                retry_after_secs,
            } => (
                format!("this tenant is limited to {per_second} requests per second"),
                retry_after_secs,
                per_second,
            ),
            Refused::InFlight { max } => (
                format!("this tenant already has {max} requests in flight, its most at once"),
                1,
                max,
            ),
            Refused::Imports { max } => (
                format!("this tenant already has {max} imports in flight, its most at once"),
                1,
                max,
            ),
        };
        ApiError::over_limit(message)
            .with("limit", limit)
            .with(limit, max)
            .retry_after(retry_after)
    }
}
