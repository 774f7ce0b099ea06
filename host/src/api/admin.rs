//! `/admin/tenants`: the operator creates, lists, shows and deletes tenants.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Operator;
use super::extract::Path;
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

async fn view(app: &AppState, record: &TenantRecord) -> ApiResult<Value> {
    let gate = app.tenants.gate(&record.id).await?;
    let stored = app.store.stored_usage(&record.id).await?;
    Ok(json!({
        "id": record.id,
        "limits": gate.limits,
        "usage": gate.usage.view(stored),
    }))
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
    let mut views = Vec::new();
    for record in app.tenants.list().await? {
        views.push(view(&app, &record).await?);
    }
    Ok(Json(Value::Array(views)))
}

pub async fn show(
    _: Operator,
    State(app): State<AppState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = app.tenants.get(&parse_id(&tenant)?).await?;
    Ok(Json(view(&app, &record).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    limits: Value,
}

/// `PATCH /admin/tenants/{tenant}` `{"limits": {...}}`: fields given replace the
/// current ones; the rest keep their values.
pub async fn update(
    _: Operator,
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<UpdateTenant>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&tenant)?;
    let current = app.tenants.gate(&id).await?;
    let Value::Object(changes) = body.limits else {
        return Err(ApiError::bad_request("`limits` must be an object"));
    };
    let mut merged = serde_json::to_value(&current.limits).map_err(ApiError::internal)?;
    if let Value::Object(map) = &mut merged {
        map.extend(changes);
    }
    let limits = Limits::from_json(Some(&merged))?;
    app.tenants.set_limits(&id, limits).await?;
    let record = app.tenants.get(&id).await?;
    Ok(Json(view(&app, &record).await?))
}

/// `POST /admin/tenants/{tenant}/token`: a new token; the old one stops working.
pub async fn rotate_token(
    _: Operator,
    State(app): State<AppState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&tenant)?;
    let token = app.tenants.rotate_token(&id).await?;
    tracing::info!(tenant = %id, "tenant token rotated");
    Ok(Json(json!({"id": id, "token": token})))
}

pub async fn delete(
    _: Operator,
    State(app): State<AppState>,
    Path(tenant): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&tenant)?;
    let digests: std::collections::BTreeSet<String> = app
        .store
        .plugin_versions(&id)
        .await?
        .into_iter()
        .map(|v| v.digest)
        .collect();
    app.tenants.delete(&id).await?;
    // Compiled components are shared by digest: delete the files no tenant uses now.
    for digest in digests {
        if !app.store.digest_in_use(&digest).await? {
            app.runtime.forget(&digest);
        }
    }
    app.forget_tenant(&id);
    tracing::info!(tenant = %id, "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /admin/hosts`: the hosts serving from this database, with their heartbeats.
pub async fn hosts(_: Operator, State(app): State<AppState>) -> ApiResult<Json<Value>> {
    let hosts = app.fleet.hosts().await?;
    Ok(Json(json!({"host_id": app.fleet.host_id, "hosts": hosts})))
}
