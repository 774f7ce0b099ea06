//! `/t/{tenant}/plugins`: upload and list plugin versions.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use super::auth::TenantAccess;
use super::views;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::store::{PluginKind, is_valid_name};

fn check_name(name: &str) -> ApiResult<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid plugin name {name:?}: it must match [a-z0-9][a-z0-9-]{{0,62}}"
        )))
    }
}

pub async fn upload(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_name(&name)?;
    let max = access.gate.limits.max_plugin_bytes as usize;
    let too_large = || ApiError::too_large(format!("plugins are limited to {max} bytes"));
    // Refuse on the declared length before reading anything.
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && length > max
    {
        return Err(too_large());
    }
    let wasm = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| too_large())?;
    if wasm.is_empty() {
        return Err(ApiError::invalid_plugin(
            "the body is empty: send the component's bytes",
        ));
    }
    let uploaded = app
        .plugins
        .upload(&access.tenant, &name, wasm.to_vec())
        .await?;
    let v = &uploaded.version;
    if uploaded.created && v.kind == PluginKind::Projection {
        app.projections
            .plugin_uploaded(&access.tenant, &name, v.version, &v.digest)
            .await?;
    }
    tracing::info!(tenant = %access.tenant, plugin = %name, version = v.version, digest = %v.digest, created = uploaded.created, "plugin uploaded");
    let status = if uploaded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "name": v.name, "version": v.version, "kind": v.kind.as_str(), "digest": v.digest,
        })),
    ))
}

pub async fn list(access: TenantAccess, State(app): State<AppState>) -> ApiResult<Json<Value>> {
    let versions = app.plugins.all(&access.tenant).await?;
    Ok(Json(json!(views::plugins(&versions))))
}

/// The last lines the plugin printed (stdout and stderr) in this host.
pub async fn logs(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    if app
        .plugins
        .versions_of(&access.tenant, &name)
        .await?
        .is_empty()
    {
        return Err(ApiError::not_found(format!("no plugin named {name}")));
    }
    Ok(Json(
        json!({"name": name, "lines": access.gate.logs.last(&name)}),
    ))
}

pub async fn show(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let versions = app.plugins.versions_of(&access.tenant, &name).await?;
    let view = views::plugins(&versions)
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("no plugin named {name}")))?;
    Ok(Json(json!(view)))
}
