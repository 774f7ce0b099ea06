//! `/t/{tenant}/projections`: status, promotion (and rollback), rebuilds, document reads.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::TenantAccess;
use super::extract::{Path, Query, stored_query_text};
use super::json::JsonBody;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::projection::BuildChoice;

pub async fn list(access: TenantAccess, State(app): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(
        app.projections.status(&access.tenant, None).await?
    )))
}

pub async fn show(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let mut views = app.projections.status(&access.tenant, Some(&name)).await?;
    Ok(Json(json!(views.pop())))
}

/// Names the build to promote: a plugin version (its newest kept build), a build id,
/// or both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    version: Option<u64>,
    build: Option<u64>,
}

pub async fn promote(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<PromoteBody>,
) -> ApiResult<Json<Value>> {
    let choice = BuildChoice {
        version: body.version,
        build: body.build,
    };
    let (version, build) = app
        .projections
        .promote(&access.tenant, &name, choice)
        .await?;
    Ok(Json(
        json!({"name": name, "active_version": version, "active_build": build}),
    ))
}

pub async fn rebuild(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (version, build) = app.projections.rebuild(&access.tenant, &name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"name": name, "version": version, "build": build, "status": "building"})),
    ))
}

/// Deletes a build that is not active (a kept one, or one still catching up).
pub async fn delete_build(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name, build)): Path<(String, String, u64)>,
) -> ApiResult<Json<Value>> {
    app.projections
        .delete_build(&access.tenant, &name, build)
        .await?;
    Ok(Json(json!({"name": name, "build": build, "deleted": true})))
}

#[derive(Deserialize)]
pub struct ReadQuery {
    min_position: Option<u64>,
    /// How long to wait for `min_position`, in milliseconds (default 5000, most 30000).
    timeout_ms: Option<u64>,
    prefix: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

fn wait(query: &ReadQuery) -> Option<Duration> {
    query.timeout_ms.map(Duration::from_millis)
}

pub async fn document(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name, key)): Path<(String, String, String)>,
    Query(query): Query<ReadQuery>,
) -> ApiResult<Json<Value>> {
    let version = app
        .projections
        .readable(&access.tenant, &name, query.min_position, wait(&query))
        .await?;
    let doc = app
        .store
        .document(&access.tenant, &name, version, &key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{name} has no document {key:?}")))?;
    let doc: Value = serde_json::from_str(&doc).map_err(ApiError::internal)?;
    Ok(Json(doc))
}

pub async fn documents(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name)): Path<(String, String)>,
    Query(query): Query<ReadQuery>,
) -> ApiResult<Json<Value>> {
    let limit = match query.limit.unwrap_or(100) {
        0 => return Err(ApiError::bad_request("limit must be at least 1")),
        n => n.min(1000),
    };
    let version = app
        .projections
        .readable(&access.tenant, &name, query.min_position, wait(&query))
        .await?;
    stored_query_text("prefix", query.prefix.as_deref())?;
    stored_query_text("after", query.after.as_deref())?;
    let prefix = query.prefix.as_deref().unwrap_or("");
    let mut docs = app
        .store
        .documents(
            &access.tenant,
            &name,
            version,
            prefix,
            query.after.as_deref(),
            limit + 1,
        )
        .await?;
    let next = (docs.len() > limit as usize).then(|| docs[limit as usize - 1].0.clone());
    docs.truncate(limit as usize);
    let docs: Vec<Value> = docs
        .into_iter()
        .map(|(key, doc)| {
            let doc: Value = serde_json::from_str(&doc).unwrap_or(Value::Null);
            json!({"key": key, "doc": doc})
        })
        .collect();
    Ok(Json(json!({"docs": docs, "next": next})))
}
