//! `/t/{tenant}/plugins`: upload, verification status, activation and rollback.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use serde::Deserialize;

use super::auth::TenantAccess;
use super::extract::{Path, Query, declared_length, read_body};
use super::json::JsonBody;
use super::views;
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
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    #[serde(default)]
    verify: Option<String>,
    #[serde(default)]
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
    let max = access.gate.limits.max_plugin_bytes as usize;
    let too_large = || ApiError::too_large(format!("plugins are limited to {max} bytes"));
    // Refuse on the declared length before reading anything.
    if declared_length(&headers).is_some_and(|length| length > max) {
        return Err(too_large());
    }
    let wasm = read_body(body, max, too_large).await?;
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
    let mut answer = json!({
        "name": v.name, "version": v.version, "kind": v.kind.as_str(), "digest": v.digest,
        "status": views::version_status(v),
        "status_url": format!("/t/{}/plugins/{}/versions/{}", access.tenant, v.name, v.version),
    });
    if let Some(report) = &v.report {
        answer["verification"] = report.clone();
    }
    Ok((status, Json(answer)))
}

/// One version with its status and verification report.
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
    Ok(Json(json!(views::plugin_version(found))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    version: u64,
    /// Verify the version again against the history as it is now before it serves.
    #[serde(default)]
    verify: bool,
}

/// Makes a verified (or earlier active) version serve: activation and rollback. 200
/// with the plugin when it serves at once; 202 with the version's status URL when
/// `"verify": true` asked for a fresh verification first.
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
        let mut view = json!(views::plugin_version(&v));
        view["status_url"] = json!(format!(
            "/t/{}/plugins/{}/versions/{}",
            access.tenant, v.name, v.version
        ));
        return Ok((StatusCode::ACCEPTED, Json(view)));
    }
    let versions = app.plugins.versions_of(&access.tenant, &name).await?;
    let view = views::plugins(&versions)
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("no plugin named {name}")))?;
    Ok((StatusCode::OK, Json(json!(view))))
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
    if !app
        .plugins
        .all(&access.tenant)
        .await?
        .iter()
        .any(|v| v.name == name)
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
