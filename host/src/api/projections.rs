//! `/t/{tenant}/projections`: status, promotion (and rollback), rebuilds, document reads.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use super::auth::TenantAccess;
use super::extract::{Path, Query, stored_query_text};
use super::json::JsonBody;
use super::schemas::{
    BuildParams, DeletedBuild, DocumentParams, ProjectionParams, PromoteRequest, Promoted,
    Rebuilding, TenantParams,
};
use super::views::{self, DocumentEntry, DocumentPage};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::projection::{BuildChoice, ProjectionView};

/// List the tenant's projections and their builds.
#[utoipa::path(get, path = "/t/{tenant}/projections", tag = "projections", operation_id = "list_projections",
    params(TenantParams),
    responses((status = 200, description = "Every projection, by name", body = Vec<ProjectionView>)))]
pub async fn list(access: TenantAccess, State(app): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(
        app.projections.status(&access.tenant, None).await?
    )))
}

/// One projection: which build serves reads, and every build kept.
#[utoipa::path(get, path = "/t/{tenant}/projections/{name}", tag = "projections", operation_id = "show_projection",
    params(ProjectionParams),
    responses(
        (status = 200, description = "The projection", body = ProjectionView),
        (status = 404, description = "`not_found`: no projection of that name"),
    ))]
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

/// Make a build serve reads: promotion, and rollback to a build still kept.
///
/// It cancels any build waiting to take over (that build becomes `retired`).
#[utoipa::path(post, path = "/t/{tenant}/projections/{name}/promote", tag = "projections",
    operation_id = "promote_projection", params(ProjectionParams), request_body = PromoteRequest,
    responses(
        (status = 200, description = "The build serves reads", body = Promoted),
        (status = 404, description = "`not_found`: no projection of that name, or no such version or build kept"),
        (status = 409, description = "`failed_version`: the build is parked as failed"),
    ))]
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

/// Build the active plugin version again.
///
/// The new build runs beside the active one and is promoted when it has caught up,
/// unless a later promote or build cancels it.
#[utoipa::path(post, path = "/t/{tenant}/projections/{name}/rebuild", tag = "projections",
    operation_id = "rebuild_projection", params(ProjectionParams),
    responses(
        (status = 202, description = "Building", body = Rebuilding),
        (status = 404, description = "`not_found`: no projection of that name"),
        (status = 409, description = "`not_active`: the projection has no active build to rebuild"),
        (status = 429, description = "`over_limit`: too many of the tenant's builds are catching up at once; wait for them"),
    ))]
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

/// How to read documents: read-your-writes, and for a list, which page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// Wait until the active build has passed this log position (the `position` a
    /// command or append answered), up to `timeout_ms`, then 503 `not_caught_up`.
    min_position: Option<u64>,
    /// How long to wait for `min_position`, in milliseconds (default 5000, most 30000).
    timeout_ms: Option<u64>,
    /// Lists only the keys that start with this (lists only).
    prefix: Option<String>,
    /// Lists the keys after this one: the `next` of the previous page (lists only).
    after: Option<String>,
    /// Most documents in the page (default 100, at most 1,000; more is read as 1,000;
    /// lists only).
    #[param(minimum = 1)]
    limit: Option<u32>,
}

fn wait(query: &ReadQuery) -> Option<Duration> {
    query.timeout_ms.map(Duration::from_millis)
}

/// One document of the projection's active build.
#[utoipa::path(get, path = "/t/{tenant}/projections/{name}/docs/{key}", tag = "projections",
    operation_id = "read_document", params(DocumentParams, ReadQuery),
    responses(
        (status = 200, description = "The document, as the projection wrote it", body = Value),
        (status = 404, description = "`not_found`: no projection of that name, no active build, or no document of that key"),
        (status = 409, description = "`projection_failed` (with `version`, `position`, `error`): the active build is parked as failed"),
        (status = 503, description = "`not_caught_up` (with `position`): the active build did not reach `min_position` in time; `store_unavailable` (with `version`, `position`, `Retry-After`): the active build has been waiting for the store past the retry budget and retries (not failed)"),
    ))]
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

/// A page of the projection's documents, in key order.
#[utoipa::path(get, path = "/t/{tenant}/projections/{name}/docs", tag = "projections",
    operation_id = "list_documents", params(ProjectionParams, ReadQuery),
    responses(
        (status = 200, description = "A page of documents", body = DocumentPage),
        (status = 400, description = "`bad_request`: `limit=0`"),
        (status = 404, description = "`not_found`: no projection of that name, or no active build"),
        (status = 409, description = "`projection_failed` (with `version`, `position`, `error`): the active build is parked as failed"),
        (status = 503, description = "`not_caught_up` (with `position`): the active build did not reach `min_position` in time; `store_unavailable` (with `version`, `position`, `Retry-After`): the active build has been waiting for the store past the retry budget and retries (not failed)"),
    ))]
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
    let docs = docs
        .into_iter()
        .map(|(key, doc)| {
            let doc: Value = serde_json::from_str(&doc).unwrap_or(Value::Null);
            DocumentEntry { key, doc }
        })
        .collect();
    Ok(views::body(DocumentPage { docs, next }))
}

/// Delete a build that does not serve, and its documents.
///
/// A kept build no longer wanted, or one still catching up (which cancels it).
#[utoipa::path(delete, path = "/t/{tenant}/projections/{name}/builds/{build}", tag = "projections",
    operation_id = "delete_projection_build", params(BuildParams),
    responses(
        (status = 200, description = "Deleted, with its documents", body = DeletedBuild),
        (status = 404, description = "`not_found`: no projection of that name, or no such build"),
        (status = 409, description = "`active_build`: the build serves reads; promote another first"),
    ))]
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
