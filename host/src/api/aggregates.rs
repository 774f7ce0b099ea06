//! `/t/{tenant}/aggregates/{name}/{id}`: commands and state reads.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::auth::TenantAccess;
use super::extract::{Path, Query};
use super::json::JsonBody;
use super::schemas::{AggregateParams, ExpectedVersionSchema};
use super::views::{self, CommandView, StateView};
use crate::app::AppState;
use crate::commands::{CommandRequest, StateAt};
use crate::error::{ApiError, ApiResult};
use crate::store::{is_valid_stream_id, text_problem};

/// A command for an aggregate.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    /// The command's type, as the aggregate names it (1 to 200 bytes).
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 200)]
    command_type: String,
    /// The command's fields (an object; absent or `null` is `{}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    payload: Option<Value>,
    /// A version number, or "any", "no_stream", "stream_exists" (as on raw appends).
    #[serde(default)]
    #[schema(value_type = Option<ExpectedVersionSchema>)]
    expected_version: Option<Value>,
    /// The tenant's idempotency key (1 to 200 bytes): the same request again answers
    /// the first answer; another request under it is 409 `idempotency_conflict`.
    #[schema(min_length = 1, max_length = 200)]
    command_id: Option<String>,
    /// Stored with each event the command appends.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
}

fn check_id(name: &str, id: &str) -> ApiResult<()> {
    if is_valid_stream_id(&crate::vocab::stream_of(name, id)) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid aggregate id {id:?}: printable ASCII without '/', at most 200 bytes"
        )))
    }
}

/// Run a command: the aggregate's active version decides, and its events are appended.
#[utoipa::path(post, path = "/t/{tenant}/aggregates/{name}/{id}/commands", tag = "aggregates",
    operation_id = "run_command", params(AggregateParams), request_body = CommandBody,
    responses(
        (status = 200, description = "Decided and appended (or the first answer again, for a repeated `command_id`)", body = CommandView),
        (status = 400, description = "`invalid_command`: the aggregate cannot read the command (an unknown `type`, a `payload` that does not decode), with the guest's message; not remembered under its `command_id`\n\
            `bad_request`: an invalid aggregate id, `type` or `command_id`, a `payload` that is not an object, an unknown `expected_version`"),
        (status = 404, description = "`not_found`: no aggregate plugin of that name"),
        (status = 409, description = "`wrong_expected_version` (with `current_version`): `expected_version` does not hold\n\
            `idempotency_conflict` (with `stream_id`): another request used this `command_id`\n\
            `not_active`: the aggregate has no active version yet"),
        (status = 422, description = "`rejected` (with `domain_code`, and `replayed` on a repeat): `decide` refused the command\n\
            `plugin_failed` (with `reason`: `trap`, `deadline`, `memory`, `invalid_output`, `instantiate`): the plugin failed; nothing was written"),
        (status = 429, description = "`over_limit`: past the tenant's `commands_per_second`"),
        (status = 503, description = "`load_incomplete` (with `folded_version`, `snapshot_version`): the history took longer to fold than `load_timeout_ms`; the progress is saved, retry\n\
            `contention`: the stream kept changing under the command; retry"),
        (status = 507, description = "`quota_exceeded`: past the tenant's `max_stored_bytes`"),
    ))]
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
    Ok(views::body(CommandView {
        stream_id: result.stream_id,
        version: result.version,
        position: result.position,
        events: views::events(&result.events),
    }))
}

/// Which state to read: the latest, or as it was at a version or a time (one of them).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateQuery {
    /// The state after this version of the stream (from 1).
    #[param(minimum = 1)]
    version: Option<u64>,
    /// The state as it was at this time (RFC 3339).
    #[param(format = DateTime)]
    at: Option<String>,
}

/// Read an aggregate's state, now or as it was.
#[utoipa::path(get, path = "/t/{tenant}/aggregates/{name}/{id}", tag = "aggregates",
    operation_id = "read_state", params(AggregateParams, StateQuery),
    responses(
        (status = 200, description = "The state", body = StateView),
        (status = 400, description = "`bad_request`: an invalid aggregate id, both `version` and `at`, `version=0`, or `at` not RFC 3339"),
        (status = 404, description = "`not_found`: no such aggregate plugin, or the stream is empty"),
        (status = 409, description = "`not_active`: the aggregate has no active version yet"),
        (status = 422, description = "`plugin_failed` (with `reason`): the plugin failed while folding"),
        (status = 503, description = "`load_incomplete` (with `folded_version`, `snapshot_version`): the history took longer to fold than `load_timeout_ms`; retry"),
    ))]
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
    Ok(views::body(StateView {
        stream_id: view.stream_id,
        version: view.version,
        state,
    }))
}
