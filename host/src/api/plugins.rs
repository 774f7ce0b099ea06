//! `/t/{tenant}/plugins`: upload, verification status, activation and rollback.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth::TenantAccess;
use super::extract::{Path, Query, declared_length, read_body};
use super::json::JsonBody;
use super::schemas::{PluginParams, PluginVersionParams, TenantParams, WasmComponent};
use super::views::{self, LogsView, PluginVersionView, PluginView, UploadView, VerifyingView};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::plugins::{Activation, Mode, Uploaded, VerifyOptions};
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

/// How an upload is verified and whether it goes live by itself:
/// `?verify=warn|strict` and `?activate=auto|manual`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// `warn` (the default: a state difference from the active version is a warning)
    /// or `strict` (a state difference rejects the version).
    #[serde(default)]
    #[param(value_type = Option<crate::plugins::Mode>, inline)]
    verify: Option<String>,
    /// `auto` (the default: a verified version serves at once) or `manual` (it is
    /// `staged` until activated).
    #[serde(default)]
    #[param(value_type = Option<crate::plugins::Activation>, inline)]
    activate: Option<String>,
}

impl UploadQuery {
    fn options(&self) -> ApiResult<VerifyOptions> {
        let mode = match self.verify.as_deref() {
            None | Some("warn") => Mode::Warn,
            Some("strict") => Mode::Strict,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "verify={other:?}: use warn (a state difference is a warning) or strict \
                     (a state difference rejects the version)"
                )));
            }
        };
        let activation = match self.activate.as_deref() {
            None | Some("auto") => Activation::Auto,
            Some("manual") => Activation::Manual,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "activate={other:?}: use auto or manual"
                )));
            }
        };
        Ok(VerifyOptions { mode, activation })
    }
}

/// Upload a version of a plugin.
///
/// The body is a WebAssembly component of the `aggregate`, `projection` or `upcaster`
/// world. A new aggregate or upcaster version with history to check is verified by
/// replay before it serves.
#[utoipa::path(put, path = "/t/{tenant}/plugins/{name}", tag = "plugins", operation_id = "upload_plugin",
    params(PluginParams, UploadQuery),
    request_body(content = WasmComponent, content_type = "application/wasm",
        description = "The component's bytes: at most the tenant's `max_plugin_bytes` besides data segments, and `memory_bytes` more in all"),
    responses(
        (status = 200, description = "The bytes are identical to the newest version: that version", body = UploadView),
        (status = 201, description = "A new version that serves at once (no history to check; `staged` with `activate=manual`)", body = UploadView),
        (status = 202, description = "A new aggregate or upcaster version, `verifying` against the recorded history: poll `status_url`", body = UploadView),
        (status = 400, description = "`bad_request`: an invalid plugin name, an unknown `verify` or `activate`\n\
            `invalid_body`: the body broke off"),
        (status = 413, description = "`too_large`: more than the tenant's `max_plugin_bytes` besides data segments, or more than `max_plugin_bytes` + `memory_bytes` in all"),
        (status = 422, description = "`invalid_plugin`: empty, not a component, of no known world, over the shape or compile limits, with what is wrong"),
        (status = 429, description = "`over_limit` (`limit`: `compile_cpu_ms_per_hour`): the tenant's uploads spent their compile CPU of the last hour; with `Retry-After`"),
        (status = 507, description = "`quota_exceeded` (with `max_plugin_versions` when that is the limit): past the tenant's `max_stored_bytes` or `max_plugin_versions`"),
    ))]
pub async fn upload(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_name(&name)?;
    let options = query.options()?;
    // `max_plugin_bytes` bounds what costs compile time and artifact space: everything
    // but data segments. Data (an interpreter's snapshotted heap) must fit the instance
    // memory, so the body may be up to `memory_bytes` larger (docs/limits.md).
    let max = access.gate.limits.max_plugin_bytes as usize;
    let max_body = max.saturating_add(access.gate.limits.memory_bytes as usize);
    let too_large = || {
        ApiError::too_large(format!(
            "plugins are limited to {max} bytes besides their data segments, and {max_body} \
             bytes in all"
        ))
    };
    // Refuse on the declared length before reading anything.
    if declared_length(&headers).is_some_and(|length| length > max_body) {
        return Err(too_large());
    }
    let wasm = read_body(body, max_body, too_large).await?;
    let code = wasm.len() - crate::runtime::shape::data_bytes(&wasm);
    if code > max {
        return Err(ApiError::too_large(format!(
            "plugins are limited to {max} bytes besides their data segments; this one has \
             {code}"
        )));
    }
    if wasm.is_empty() {
        return Err(ApiError::invalid_plugin(
            "the body is empty: send the component's bytes",
        ));
    }
    let uploaded = app
        .plugins
        .upload(
            &access.tenant,
            access.gate.clone(),
            &name,
            wasm.to_vec(),
            options,
        )
        .await?;
    let (status, v) = match &uploaded {
        Uploaded::Ready(v) => (StatusCode::CREATED, v),
        Uploaded::Verifying(v) => (StatusCode::ACCEPTED, v),
        Uploaded::Existing(v) => (StatusCode::OK, v),
    };
    if !matches!(uploaded, Uploaded::Existing(_)) && v.kind == PluginKind::Projection {
        app.projections
            .plugin_uploaded(&access.tenant, &name, v.version, &v.digest)
            .await?;
    }
    tracing::info!(tenant = %access.tenant, plugin = %name, version = v.version, digest = %v.digest, status = %status, "plugin uploaded");
    let answer = UploadView {
        name: v.name.clone(),
        version: v.version,
        kind: v.kind.as_str(),
        digest: v.digest.clone(),
        status: views::version_status(v),
        status_url: format!(
            "/t/{}/plugins/{}/versions/{}",
            access.tenant, v.name, v.version
        ),
        verification: v.report.clone(),
    };
    Ok((status, views::body(answer)))
}

/// One version with its status and verification report.
#[utoipa::path(get, path = "/t/{tenant}/plugins/{name}/versions/{version}", tag = "plugins",
    operation_id = "show_plugin_version", params(PluginVersionParams),
    responses(
        (status = 200, description = "The version", body = PluginVersionView),
        (status = 400, description = "`bad_request`: the version is not a number"),
        (status = 404, description = "`not_found`: no such plugin or version"),
    ))]
pub async fn version(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name, version)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let number: u64 = version
        .parse()
        .map_err(|_| ApiError::bad_request(format!("version {version:?} is not a number")))?;
    let versions = app.plugins.versions_of(&access.tenant, &name).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("no plugin named {name}")));
    }
    let found = versions
        .iter()
        .find(|v| v.version == number)
        .ok_or_else(|| ApiError::not_found(format!("plugin {name} has no version {number}")))?;
    Ok(views::body(views::plugin_version(found)))
}

/// The version to serve.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    #[schema(minimum = 1)]
    version: u64,
    /// Verify the version again against the history as it is now before it serves.
    #[serde(default)]
    verify: bool,
}

/// Make a version serve: activation and rollback.
///
/// A verified (or earlier active) version serves at once: 200 with the plugin. With
/// `"verify": true` it is first verified again against the history as it is now: 202
/// with the version's status URL.
#[utoipa::path(post, path = "/t/{tenant}/plugins/{name}/activate", tag = "plugins",
    operation_id = "activate_plugin", params(PluginParams), request_body = ActivateBody,
    responses(
        (status = 200, description = "The version serves: the plugin", body = PluginView),
        (status = 202, description = "Verifying again before it serves: poll `status_url`", body = VerifyingView),
        (status = 400, description = "`bad_request`: the plugin is a projection (promote its builds instead)"),
        (status = 404, description = "`not_found`: no such plugin or version"),
        (status = 409, description = "`not_verified` (with `status`): the version is verifying or rejected"),
    ))]
pub async fn activate(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<ActivateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let done = app
        .plugins
        .activate(
            &access.tenant,
            access.gate.clone(),
            &name,
            body.version,
            body.verify,
        )
        .await?;
    if let Uploaded::Verifying(v) = done {
        let view = VerifyingView {
            version: views::plugin_version(&v),
            status_url: format!(
                "/t/{}/plugins/{}/versions/{}",
                access.tenant, v.name, v.version
            ),
        };
        return Ok((StatusCode::ACCEPTED, views::body(view)));
    }
    let versions = app.plugins.versions_of(&access.tenant, &name).await?;
    let view = views::plugins(&versions)
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("no plugin named {name}")))?;
    Ok((StatusCode::OK, views::body(view)))
}

/// List the tenant's plugins and their versions.
#[utoipa::path(get, path = "/t/{tenant}/plugins", tag = "plugins", operation_id = "list_plugins",
    params(TenantParams),
    responses((status = 200, description = "Every plugin, by name", body = Vec<PluginView>)))]
pub async fn list(access: TenantAccess, State(app): State<AppState>) -> ApiResult<Json<Value>> {
    let versions = app.plugins.all(&access.tenant).await?;
    Ok(views::body(views::plugins(&versions)))
}

/// The last lines the plugin printed (stdout and stderr) in this host.
#[utoipa::path(get, path = "/t/{tenant}/plugins/{name}/logs", tag = "plugins", operation_id = "plugin_logs",
    params(PluginParams),
    responses(
        (status = 200, description = "Its last lines, oldest first", body = LogsView),
        (status = 404, description = "`not_found`: no such plugin"),
    ))]
pub async fn logs(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    if !app
        .plugins
        .all(&access.tenant)
        .await?
        .iter()
        .any(|v| v.name == name)
    {
        return Err(ApiError::not_found(format!("no plugin named {name}")));
    }
    let lines = access.gate.logs.last(&name);
    Ok(views::body(LogsView { name, lines }))
}

/// One plugin and its versions.
#[utoipa::path(get, path = "/t/{tenant}/plugins/{name}", tag = "plugins", operation_id = "show_plugin",
    params(PluginParams),
    responses(
        (status = 200, description = "The plugin", body = PluginView),
        (status = 404, description = "`not_found`: no such plugin"),
    ))]
pub async fn show(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let versions = app.plugins.versions_of(&access.tenant, &name).await?;
    let view = views::plugins(&versions)
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("no plugin named {name}")))?;
    Ok(views::body(view))
}

impl From<crate::tenancy::compile_budget::CompileBudgetSpent> for ApiError {
    fn from(spent: crate::tenancy::compile_budget::CompileBudgetSpent) -> ApiError {
        ApiError::over_limit(format!(
            "this tenant's uploads spent {} ms of compile CPU in the last hour, its \
             compile_cpu_ms_per_hour of {}; retry once earlier compiles leave the hour",
            spent.used_ms, spent.budget_ms
        ))
        .with("limit", "compile_cpu_ms_per_hour")
        .with("compile_cpu_ms_per_hour", spent.budget_ms)
        .retry_after((spent.retry_after.as_secs_f64().ceil() as u32).max(1))
    }
}
