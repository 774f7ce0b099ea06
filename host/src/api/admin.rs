//! `/admin/tenants`: the operator creates, lists, shows and deletes tenants.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::Operator;
use super::extract::Path;
use super::json::JsonBody;
use super::schemas::TenantParams;
use super::views::{self, CreatedTenant, TenantView, TokenView};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::store::{TenantId, TenantRecord};
use crate::tenancy::limits::Limits;

/// A tenant to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// `[a-z0-9][a-z0-9-]{0,62}`.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    id: String,
    /// Limits other than the defaults; the fields not given take the default.
    #[schema(value_type = Option<Limits>)]
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
    let stored = gate.stored_usage(&app.store, &record.id).await?;
    let Json(view) = views::body(TenantView {
        id: record.id.clone(),
        limits: gate.limits.clone(),
        usage: gate.usage.view(stored),
    });
    Ok(view)
}

/// Create a tenant; its token is answered once.
#[utoipa::path(post, path = "/admin/tenants", tag = "tenants", operation_id = "create_tenant",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = CreatedTenant),
        (status = 400, description = "`bad_request`: an invalid id, or invalid `limits` (not an object, an unknown field, a value out of range)"),
        (status = 409, description = "`already_exists`: a tenant has that id"),
    ))]
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
        views::body(CreatedTenant { id, token, limits }),
    ))
}

/// List the tenants with their limits and usage.
#[utoipa::path(get, path = "/admin/tenants", tag = "tenants", operation_id = "list_tenants",
    responses((status = 200, description = "Every tenant, by id", body = Vec<TenantView>)))]
pub async fn list(_: Operator, State(app): State<AppState>) -> ApiResult<Json<Value>> {
    let mut views = Vec::new();
    for record in app.tenants.list().await? {
        views.push(view(&app, &record).await?);
    }
    Ok(Json(Value::Array(views)))
}

/// One tenant with its limits and usage.
#[utoipa::path(get, path = "/admin/tenants/{tenant}", tag = "tenants", operation_id = "show_tenant",
    params(TenantParams),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 400, description = "`bad_request`: an invalid tenant id"),
        (status = 404, description = "`not_found`: no such tenant"),
    ))]
pub async fn show(
    _: Operator,
    State(app): State<AppState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = app.tenants.get(&parse_id(&tenant)?).await?;
    Ok(Json(view(&app, &record).await?))
}

/// New limits for a tenant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// The fields given replace the current ones; the rest keep their values.
    #[schema(value_type = Limits)]
    limits: Value,
}

/// Change a tenant's limits.
///
/// The fields given replace the current ones; the rest keep their values.
#[utoipa::path(patch, path = "/admin/tenants/{tenant}", tag = "tenants", operation_id = "update_tenant",
    params(TenantParams), request_body = UpdateTenant,
    responses(
        (status = 200, description = "The tenant with its new limits", body = TenantView),
        (status = 400, description = "`bad_request`: an invalid tenant id, or invalid `limits` (not an object, an unknown field, a value out of range)"),
        (status = 404, description = "`not_found`: no such tenant"),
    ))]
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

/// Give a tenant a new token; the old one stops working.
#[utoipa::path(post, path = "/admin/tenants/{tenant}/token", tag = "tenants", operation_id = "rotate_tenant_token",
    params(TenantParams),
    responses(
        (status = 200, description = "The new token", body = TokenView),
        (status = 400, description = "`bad_request`: an invalid tenant id"),
        (status = 404, description = "`not_found`: no such tenant"),
    ))]
pub async fn rotate_token(
    _: Operator,
    State(app): State<AppState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&tenant)?;
    let token = app.tenants.rotate_token(&id).await?;
    tracing::info!(tenant = %id, "tenant token rotated");
    Ok(views::body(TokenView { id, token }))
}

/// Delete a tenant and every row of it.
#[utoipa::path(delete, path = "/admin/tenants/{tenant}", tag = "tenants", operation_id = "delete_tenant",
    params(TenantParams),
    responses(
        (status = 204, description = "Deleted; nothing of the tenant is left"),
        (status = 400, description = "`bad_request`: an invalid tenant id"),
        (status = 404, description = "`not_found`: no such tenant"),
    ))]
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

/// The hosts serving from this database, with their heartbeats and leases.
///
/// A host that stops gracefully removes its row; one that died stays, not alive.
#[utoipa::path(get, path = "/admin/hosts", tag = "tenants", operation_id = "list_hosts",
    responses((status = 200, description = "This host's id, and every host with a row", body = HostsView)))]
pub async fn hosts(_: Operator, State(app): State<AppState>) -> ApiResult<Json<Value>> {
    let hosts = app.fleet.hosts().await?;
    Ok(views::body(HostsView {
        host_id: app.fleet.host_id.clone(),
        hosts,
    }))
}

/// `GET /admin/hosts`.
#[derive(serde::Serialize, ToSchema)]
pub struct HostsView {
    /// The host that answered.
    host_id: String,
    hosts: Vec<crate::fleet::HostView>,
}
