//! `/t/{tenant}/streams/{stream}` (raw appends and reads) and `/t/{tenant}/events`
//! (the tenant's log, paged; live over Server-Sent Events is in `live.rs`).

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::auth::TenantAccess;
use super::extract::{Path, Query, stored_query_text};
use super::json::JsonBody;
use super::schemas::{ExpectedVersionSchema, StreamParams, TenantParams};
use super::views::{self, AppendView, LogPage, MultiAppendView, StreamAppendView, StreamPage};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::store::{
    AppendRequest, Direction, ExpectedVersion, ProposedEvent, is_valid_stream_id, name_problem,
};
use crate::tenancy::gate::Stored;

/// Most events one append request may carry.
const MAX_EVENTS_PER_APPEND: usize = 1000;
/// Page size when none is asked for, and the most a page may hold.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// Events to append to one stream.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    #[serde(default)]
    #[schema(value_type = Option<ExpectedVersionSchema>)]
    expected_version: Option<Value>,
    /// 1 to 1,000 events, appended in this order.
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<EventBody>,
}

/// An event to append.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// The writer's id for the event (1 to 200 printable characters), which makes a
    /// retry safe: the same ids at the same place answer the original positions. Made
    /// up when absent.
    #[schema(min_length = 1, max_length = 200)]
    pub(super) event_id: Option<String>,
    /// The event's type: 1 to 200 printable characters.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 200)]
    pub(super) event_type: String,
    /// The payload: any JSON.
    pub(super) data: Value,
    /// The writer's metadata, stored beside the payload.
    #[schema(value_type = Option<Object>)]
    pub(super) metadata: Option<Map<String, Value>>,
}

pub(super) fn parse_expected(value: Option<Value>) -> ApiResult<ExpectedVersion> {
    match value {
        None | Some(Value::Null) => Ok(ExpectedVersion::Any),
        Some(Value::String(s)) => match s.as_str() {
            "any" => Ok(ExpectedVersion::Any),
            "no_stream" => Ok(ExpectedVersion::NoStream),
            "stream_exists" => Ok(ExpectedVersion::StreamExists),
            other => Err(ApiError::bad_request(format!(
                "unknown expected_version {other:?}: use \"any\", \"no_stream\", \"stream_exists\" or a version number"
            ))),
        },
        Some(Value::Number(n)) => n
            .as_u64()
            .map(ExpectedVersion::Exact)
            .ok_or_else(|| ApiError::bad_request("expected_version must be a whole number >= 0")),
        Some(_) => Err(ApiError::bad_request(
            "expected_version must be a string mode or a version number",
        )),
    }
}

/// An event as a client gave it, checked: its type and id are storable names (an id
/// is made up when none is given); data and metadata are stored as JSON text.
pub(super) fn proposed(e: EventBody) -> ApiResult<ProposedEvent> {
    if let Some(problem) = name_problem("type", &e.event_type) {
        return Err(ApiError::bad_request(problem));
    }
    let event_id = match e.event_id {
        Some(id) => {
            if let Some(problem) = name_problem("event_id", &id) {
                return Err(ApiError::bad_request(problem));
            }
            id
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    Ok(ProposedEvent {
        event_id,
        event_type: e.event_type,
        payload: e.data.to_string(),
        metadata: Value::Object(e.metadata.unwrap_or_default()).to_string(),
    })
}

pub(super) fn check_stream(stream: &str) -> ApiResult<()> {
    if is_valid_stream_id(stream) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid stream id {stream:?}: printable ASCII without '/', at most 200 bytes"
        )))
    }
}

/// Append events to a stream.
#[utoipa::path(post, path = "/t/{tenant}/streams/{stream}", tag = "streams", operation_id = "append",
    params(StreamParams), request_body = AppendBody,
    responses(
        (status = 200, description = "Appended (or the same append retried: its original positions)", body = AppendView),
        (status = 400, description = "`bad_request`: an invalid stream id, event type or event id, no events or more than 1,000, an event id twice, an unknown `expected_version`"),
        (status = 409, description = "`wrong_expected_version` (with `current_version`): `expected_version` does not hold\n\
            `idempotency_conflict`: some of these event ids were already appended, but not as this same append"),
        (status = 507, description = "`quota_exceeded`: past the tenant's `max_stored_bytes`"),
    ))]
pub async fn append(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, stream)): Path<(String, String)>,
    JsonBody(body): JsonBody<AppendBody>,
) -> ApiResult<Json<Value>> {
    check_stream(&stream)?;
    let expected = parse_expected(body.expected_version)?;
    if body.events.is_empty() || body.events.len() > MAX_EVENTS_PER_APPEND {
        return Err(ApiError::bad_request(format!(
            "an append carries 1 to {MAX_EVENTS_PER_APPEND} events"
        )));
    }
    let ids_from_writer = body.events.iter().any(|e| e.event_id.is_some());
    let mut seen = HashSet::new();
    let mut events = Vec::with_capacity(body.events.len());
    for e in body.events {
        let event = proposed(e)?;
        if !seen.insert(event.event_id.clone()) {
            return Err(ApiError::bad_request(format!(
                "event id {} appears twice in this append",
                event.event_id
            )));
        }
        events.push(event);
    }
    let request = AppendRequest {
        tenant: access.tenant.clone(),
        stream_id: stream,
        expected,
        events,
        ids_from_writer,
        command_id: None,
        command_fingerprint: None,
        atomic_group: None,
    };
    let outcome = access
        .gate
        .append_within_quota(&app.store, &app.appender, request)
        .await??;
    let (first, last) = (outcome.events.first(), outcome.events.last());
    Ok(views::body(AppendView {
        first_version: first.map(|e| e.version),
        last_version: last.map(|e| e.version),
        first_position: first.map(|e| e.position),
        last_position: last.map(|e| e.position),
    }))
}

/// Most streams one multi-stream append may write.
const MAX_STREAMS_PER_APPEND: usize = 100;

/// Appends to several streams, all or nothing.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiAppendBody {
    /// 1 to 100 streams' appends, at most 1,000 events in all.
    #[schema(min_items = 1, max_items = 100)]
    appends: Vec<StreamAppend>,
}

/// One stream's part of a multi-stream append.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamAppend {
    /// The stream id: 1 to 200 printable ASCII characters other than `/`.
    #[schema(pattern = "^[!-.0-~]{1,200}$")]
    stream: String,
    #[serde(default)]
    #[schema(value_type = Option<ExpectedVersionSchema>)]
    expected_version: Option<Value>,
    /// At least one event.
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<EventBody>,
}

/// Append to several streams, all or nothing.
///
/// Each append has its own expected version; all commit in one transaction, positions
/// in the order of `appends`, or nothing is written.
#[utoipa::path(post, path = "/t/{tenant}/streams", tag = "streams", operation_id = "append_many",
    params(TenantParams), request_body = MultiAppendBody,
    responses(
        (status = 200, description = "Every append committed, in one transaction", body = MultiAppendView),
        (status = 400, description = "`bad_request` (with `append`, its index, when one append is at fault): no appends or more than 100, an append without events, more than 1,000 events, an invalid stream id, event type or event id, an event id twice, an unknown `expected_version`"),
        (status = 409, description = "The first refusal, with `append` (its index) and `stream`; nothing was written:\n\
            `wrong_expected_version` (with `current_version`)\n\
            `idempotency_conflict`: some of these event ids were already appended, but not as this same append"),
        (status = 507, description = "`quota_exceeded`: past the tenant's `max_stored_bytes`"),
    ))]
pub async fn append_many(
    access: TenantAccess,
    State(app): State<AppState>,
    JsonBody(body): JsonBody<MultiAppendBody>,
) -> ApiResult<Json<Value>> {
    if body.appends.is_empty() || body.appends.len() > MAX_STREAMS_PER_APPEND {
        return Err(ApiError::bad_request(format!(
            "`appends` holds 1 to {MAX_STREAMS_PER_APPEND} streams' appends"
        )));
    }
    let total: usize = body.appends.iter().map(|a| a.events.len()).sum();
    if body.appends.iter().any(|a| a.events.is_empty()) || total > MAX_EVENTS_PER_APPEND {
        return Err(ApiError::bad_request(format!(
            "each append carries at least one event, and all together at most \
             {MAX_EVENTS_PER_APPEND}"
        )));
    }
    let mut requests = Vec::with_capacity(body.appends.len());
    let mut seen = HashSet::new();
    for (index, append) in body.appends.into_iter().enumerate() {
        let at = |e: ApiError| e.with("append", index);
        check_stream(&append.stream).map_err(at)?;
        let expected = parse_expected(append.expected_version).map_err(at)?;
        let ids_from_writer = append.events.iter().any(|e| e.event_id.is_some());
        let mut events = Vec::with_capacity(append.events.len());
        for e in append.events {
            let event = proposed(e).map_err(at)?;
            if !seen.insert(event.event_id.clone()) {
                return Err(at(ApiError::bad_request(format!(
                    "event id {} appears twice in this request",
                    event.event_id
                ))));
            }
            events.push(event);
        }
        requests.push(AppendRequest {
            tenant: access.tenant.clone(),
            stream_id: append.stream,
            expected,
            events,
            ids_from_writer,
            command_id: None,
            command_fingerprint: None,
            atomic_group: None,
        });
    }
    let bytes = requests
        .iter()
        .flat_map(|r| &r.events)
        .map(|e| (e.payload.len() + e.metadata.len()) as u64)
        .sum();
    access
        .gate
        .reserve_storage(&app.store, &access.tenant, Stored::Events(bytes))
        .await?;
    let streams: Vec<String> = requests.iter().map(|r| r.stream_id.clone()).collect();
    let results = app.appender.append_atomically(requests).await;
    let mut answers = Vec::with_capacity(results.len());
    let mut refused = None;
    let mut written = false;
    for (index, (result, stream)) in results.into_iter().zip(streams).enumerate() {
        match result {
            Ok(outcome) => {
                written |= !outcome.replayed;
                let (first, last) = (outcome.events.first(), outcome.events.last());
                answers.push(StreamAppendView {
                    stream,
                    first_version: first.map(|e| e.version),
                    last_version: last.map(|e| e.version),
                    first_position: first.map(|e| e.position),
                    last_position: last.map(|e| e.position),
                });
            }
            Err(crate::store::AppendError::GroupRefused) => {}
            Err(error) if refused.is_none() => {
                refused = Some(
                    ApiError::from(error)
                        .with("append", index)
                        .with("stream", stream),
                );
            }
            Err(_) => {}
        }
    }
    if !written {
        access.gate.release_storage(Stored::Events(bytes)).await;
    }
    match refused {
        Some(error) => Err(error),
        None => Ok(views::body(MultiAppendView { appends: answers })),
    }
}

/// Which page of a stream to read.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// The first version to read (default: 1 forward, the last backward).
    from: Option<u64>,
    /// Most events in the page (default 100, at most 1,000; more is read as 1,000).
    #[param(minimum = 1)]
    limit: Option<u32>,
    /// `forward` (the default) or `backward`.
    #[param(inline)]
    direction: Option<Direction>,
    /// Show the events through the tenant's active upcasters (stored bytes never change).
    upcast: Option<bool>,
}

fn page_size(limit: Option<u32>) -> ApiResult<u32> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        0 => Err(ApiError::bad_request("limit must be at least 1")),
        n => Ok(n.min(MAX_PAGE)),
    }
}

/// Read a stream, a page at a time.
#[utoipa::path(get, path = "/t/{tenant}/streams/{stream}", tag = "streams", operation_id = "read_stream",
    params(StreamParams, ReadQuery),
    responses(
        (status = 200, description = "A page of the stream", body = StreamPage),
        (status = 400, description = "`bad_request`: an invalid stream id, `limit=0`"),
        (status = 404, description = "`not_found`: the stream has no events"),
        (status = 422, description = "`plugin_failed` (with `reason`): an upcaster failed (`upcast=true`)"),
    ))]
pub async fn read(
    access: TenantAccess,
    State(app): State<AppState>,
    Path((_, stream)): Path<(String, String)>,
    Query(query): Query<ReadQuery>,
) -> ApiResult<Json<Value>> {
    check_stream(&stream)?;
    let direction = query.direction.unwrap_or(Direction::Forward);
    let limit = page_size(query.limit)?;
    let from = query.from.unwrap_or(match direction {
        Direction::Forward => 1,
        Direction::Backward => u64::MAX,
    });
    // One more than asked tells whether there is a next page.
    let mut events = app
        .store
        .read_stream(&access.tenant, &stream, from, limit + 1, direction)
        .await?;
    if events.is_empty() && app.store.stream_version(&access.tenant, &stream).await? == 0 {
        return Err(ApiError::not_found(format!(
            "stream {stream} has no events"
        )));
    }
    let next = (events.len() > limit as usize).then(|| events[limit as usize].version);
    events.truncate(limit as usize);
    if query.upcast == Some(true) {
        events = app
            .plugins
            .upcast_current(&access.tenant, &access.gate, events)
            .await?;
    }
    Ok(views::body(StreamPage {
        events: views::events(&events),
        next,
    }))
}

/// Which page of the tenant's log to read.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Read the events after this position (default 0: from the first).
    after: Option<u64>,
    /// Most events in the page (default 100, at most 1,000; more is read as 1,000).
    #[param(minimum = 1)]
    limit: Option<u32>,
    /// Filters on the stored types (before upcasting): comma-separated, e.g. `A,B`.
    types: Option<String>,
    /// Show the events through the tenant's active upcasters (stored bytes never change).
    upcast: Option<bool>,
}

pub(super) fn parse_types(types: Option<&str>) -> Vec<String> {
    types
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Read the tenant's log in position order, a page at a time.
#[utoipa::path(get, path = "/t/{tenant}/events", tag = "log", operation_id = "read_log",
    params(TenantParams, LogQuery),
    responses(
        (status = 200, description = "A page of the log", body = LogPage),
        (status = 400, description = "`bad_request`: `limit=0`"),
        (status = 422, description = "`plugin_failed` (with `reason`): an upcaster failed (`upcast=true`)"),
    ))]
pub async fn log(
    access: TenantAccess,
    State(app): State<AppState>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Json<Value>> {
    let limit = page_size(query.limit)?;
    stored_query_text("types", query.types.as_deref())?;
    let types = parse_types(query.types.as_deref());
    let mut events = app
        .store
        .read_log(&access.tenant, query.after.unwrap_or(0), limit, &types)
        .await?;
    if query.upcast == Some(true) {
        events = app
            .plugins
            .upcast_current(&access.tenant, &access.gate, events)
            .await?;
    }
    // The head after the events: every event listed is at or below the head reported.
    let head = app.store.head(&access.tenant).await?;
    // A full page may have more behind it: `next` is the `after` of the next page. A
    // short page reached the head (`null`); a follower goes on from `head`.
    let next = (events.len() >= limit as usize)
        .then(|| events.last().map(|e| e.position))
        .flatten();
    Ok(views::body(LogPage {
        events: views::events(&events),
        head,
        next,
    }))
}
