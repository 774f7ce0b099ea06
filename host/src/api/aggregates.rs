//! `/t/{tenant}/aggregates/{name}/{id}`: commands and state reads.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::auth::TenantAccess;
use super::extract::{Path, Query};
use super::json::JsonBody;
use super::views;
use crate::app::AppState;
use crate::commands::{CommandRequest, StateAt};
use crate::error::{ApiError, ApiResult};
use crate::store::{is_valid_stream_id, text_problem};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    #[serde(rename = "type")]
    command_type: String,
    #[serde(default)]
    payload: Option<Value>,
    /// A version number, or "any", "no_stream", "stream_exists" (as on raw appends).
    #[serde(default)]
    expected_version: Option<Value>,
    command_id: Option<String>,
    metadata: Option<Map<String, Value>>,
}

fn check_id(name: &str, id: &str) -> ApiResult<()> {
    if is_valid_stream_id(&crate::commands::stream_of(name, id)) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid aggregate id {id:?}: printable ASCII without '/', at most 200 bytes"
        )))
    }
}

pub async fn command(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name, id)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<CommandBody>,
) -> ApiResult<Json<Value>> {
    check_id(&name, &id)?;
    if body.command_type.is_empty() || body.command_type.len() > 200 {
        return Err(ApiError::bad_request("`type` must be 1 to 200 bytes"));
    }
    let payload = match body.payload {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ApiError::bad_request("`payload` must be a JSON object")),
    };
    if let Some(command_id) = &body.command_id
        && (command_id.is_empty() || command_id.len() > 200)
    {
        return Err(ApiError::bad_request("`command_id` must be 1 to 200 bytes"));
    }
    if let Some(problem) = body
        .command_id
        .as_deref()
        .and_then(|id| text_problem("command_id", id))
    {
        return Err(ApiError::bad_request(problem));
    }
    let request = CommandRequest {
        command_type: body.command_type,
        payload,
        expected_version: super::streams::parse_expected(body.expected_version)?,
        command_id: body.command_id,
        metadata: body.metadata.unwrap_or_default(),
    };
    let result = app
        .commands
        .execute(&access.tenant, &access.gate, &name, &id, request)
        .await?;
    Ok(Json(json!({
        "stream_id": result.stream_id,
        "version": result.version,
        "position": result.position,
        "events": views::events(&result.events),
    })))
}

#[derive(Deserialize)]
pub struct StateQuery {
    version: Option<u64>,
    at: Option<String>,
}

pub async fn state(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, name, id)): Path<(String, String, String)>,
    Query(query): Query<StateQuery>,
) -> ApiResult<Json<Value>> {
    check_id(&name, &id)?;
    let at = match (query.version, query.at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give `version` or `at`, not both"));
        }
        (Some(0), None) => return Err(ApiError::bad_request("versions start at 1")),
        (Some(version), None) => StateAt::Version(version),
        (None, Some(at)) => {
            let time = chrono::DateTime::parse_from_rfc3339(&at).map_err(|e| {
                ApiError::bad_request(format!("`at` must be an RFC 3339 time: {e}"))
            })?;
            StateAt::Time(time.timestamp_millis())
        }
        (None, None) => StateAt::Latest,
    };
    let view = app
        .commands
        .state(&access.tenant, &access.gate, &name, &id, at)
        .await?;
    let state = serde_json::from_slice::<Value>(&view.state)
        .unwrap_or_else(|_| json!({"opaque_bytes": view.state.len()}));
    Ok(Json(json!({
        "stream_id": view.stream_id,
        "version": view.version,
        "state": state,
    })))
}
