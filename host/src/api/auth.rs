//! Extractors for who is calling and which tenant they may act for.
//!
//! The order of checks is the contract's: no or unknown token → 401, a valid token
//! for another tenant → 403, then the tenant must exist (404, operator only).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::extract::Path;
use crate::app::AppState;
use crate::error::ApiError;
use crate::store::TenantId;
use crate::tenancy::gate::TenantGate;
use crate::tenancy::tenant::Caller;

/// The bearer token of a request, or why there is none usable.
pub(super) fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be Bearer <token>"))
}

/// The caller as `tenant_rate.rs` resolved it before routing (`None`: an unknown
/// token), so the token is looked up once per request.
#[derive(Clone)]
pub(super) struct Resolved(pub Option<Caller>);

async fn caller(parts: &Parts, app: &AppState) -> Result<Caller, ApiError> {
    let resolved = match parts.extensions.get::<Resolved>() {
        Some(Resolved(resolved)) => resolved.clone(),
        None => app.tenants.authenticate(bearer(&parts.headers)?).await?,
    };
    resolved.ok_or_else(|| ApiError::unauthorized("unknown token"))
}

/// The operator: required by `/admin/…`.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        match caller(parts, app).await? {
            Caller::Operator => Ok(Operator),
            Caller::Tenant(_) => Err(ApiError::forbidden("this route needs the operator token")),
        }
    }
}

/// `Option<Operator>`: the operator, or nobody in particular (no token, a tenant's, or
/// a wrong one), for routes that show more to the operator than to anyone else.
impl axum::extract::OptionalFromRequestParts<AppState> for Operator {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(match caller(parts, app).await {
            Ok(Caller::Operator) => Some(Operator),
            _ => None,
        })
    }
}

/// The tenant named in the path, reached by its own token or the operator's.
pub struct TenantAccess {
    pub tenant: TenantId,
    /// The tenant's limits, call slots and usage.
    pub gate: Arc<TenantGate>,
}

impl FromRequestParts<AppState> for TenantAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let who = caller(parts, app).await?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, app).await?;
        let raw = params.get("tenant").map(String::as_str).unwrap_or_default();
        let tenant = match (&who, TenantId::parse(raw)) {
            (Caller::Tenant(own), Some(asked)) if *own == asked => asked,
            (Caller::Tenant(_), _) => {
                return Err(ApiError::forbidden("this token belongs to another tenant"));
            }
            (Caller::Operator, Some(asked)) => asked,
            (Caller::Operator, None) => {
                return Err(ApiError::bad_request(format!("invalid tenant id {raw:?}")));
            }
        };
        let gate = app.tenants.gate(&tenant).await?;
        Ok(TenantAccess { tenant, gate })
    }
}
