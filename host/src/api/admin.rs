//! `/admin/tenants`: the operator creates, lists, shows and deletes tenants.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Operator;
use super::json::JsonBody;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::limits::Limits;
use crate::store::{TenantId, TenantRecord};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    id: String,
    limits: Option<Value>,
}

fn parse_id(raw: &str) -> ApiResult<TenantId> {
    TenantId::parse(raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid tenant id {raw:?}: it must match [a-z0-9][a-z0-9-]{{0,62}}"
        ))
    })
}

fn view(record: &TenantRecord) -> Value {
    json!({"id": record.id, "limits": record.limits, "usage": {}})
}

pub async fn create(
    _: Operator,
    State(app): State<AppState>,
    JsonBody(body): JsonBody<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let id = parse_id(&body.id)?;
    let limits = Limits::from_json(body.limits.as_ref())?;
    let token = app.tenants.create(&id, &limits).await?;
    tracing::info!(tenant = %id, "tenant created");
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "token": token, "limits": limits})),
    ))
}

pub async fn list(_: Operator, State(app): State<AppState>) -> ApiResult<Json<Value>> {
    let tenants = app.tenants.list().await?;
    Ok(Json(Value::Array(tenants.iter().map(view).collect())))
}

pub async fn show(
    _: Operator,
    State(app): State<AppState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = app.tenants.get(&parse_id(&tenant)?).await?;
    Ok(Json(view(&record)))
}

pub async fn delete(
    _: Operator,
    State(app): State<AppState>,
    Path(tenant): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&tenant)?;
    app.tenants.delete(&id).await?;
    app.plugins.forget(&id);
    app.commands.forget_tenant(&id);
    app.heads.remove(&id);
    tracing::info!(tenant = %id, "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}
