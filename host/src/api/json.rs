//! A JSON body extractor whose failures use the API's error shape and whose size
//! limit is the tenant's.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::extract::{declared_length, read_body};
use crate::app::AppState;
use crate::error::ApiError;
use crate::store::TenantId;

/// Like `axum::Json`, but a body that is not JSON or not the expected shape is a 400
/// `invalid_body` naming what is wrong, and an oversized body a 413 `too_large`. The
/// content type is not checked: `curl -d` sends JSON as a form, and the body decides.
pub struct JsonBody<T>(pub T);

/// Bodies larger than this are refused even before the tenant is known.
const DEFAULT_MAX: usize = 1 << 20;

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, ApiError> {
        // Under /t/{tenant}/… the tenant's own limit applies; `TenantAccess`, which
        // handlers extract before the body, has made its gate ready.
        let tenant_limit = request
            .uri()
            .path()
            .strip_prefix("/t/")
            .and_then(|rest| rest.split('/').next())
            .and_then(TenantId::parse)
            .and_then(|tenant| app.tenants.cached_gate(&tenant))
            .map(|gate| gate.limits.max_body_bytes as usize);
        let max = tenant_limit.unwrap_or(DEFAULT_MAX);
        if declared_length(request.headers()).is_some_and(|length| length > max) {
            return Err(too_large(max));
        }
        let bytes = read_body(request.into_body(), max, || too_large(max)).await?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("malformed JSON body: {e}"),
            )
        })
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::too_large(format!("the request body is larger than {max} bytes"))
}
