//! `POST /t/{tenant}/import`: long histories written fast. The body is NDJSON, one
//! event per line (`{"stream", "type", "data", "metadata"?, "event_id"?}`), read as it
//! arrives; each stream's events are appended at its end in line order.
//!
//! Consecutive lines of one stream become one append (up to 1,000 events), and up to
//! `GROUP_EVENTS` events' appends are queued to the group-commit writer together, so an
//! import commits thousands of events per transaction instead of one append per round
//! trip. Afterwards the snapshots of the aggregate streams it touched are built in the
//! background (`commands::warm`), so their first command does not fold from event 1.
//!
//! A line that is not a valid event stops the import with 400 before anything of its
//! group is written; `imported_lines` in the error says how many lines before it are
//! committed. Events with `event_id`s make a re-run of the same file safe: appends
//! already stored are recognised and skipped (`replayed_events`). A body that stops
//! arriving (no bytes for `--body-read-timeout`, or dripped too slowly: `serve/body.rs`
//! counts only the time spent waiting for the client, not the time spent writing what
//! it sent) stops the import the same way, with 408 `body_timeout`.

use std::collections::HashSet;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::auth::TenantAccess;
use super::extract::unreadable_body;
use super::schemas::TenantParams;
use super::streams::{EventBody, check_stream, proposed};
use super::views::{self, ImportView};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::store::{AppendRequest, ExpectedVersion, ProposedEvent};
use crate::tenancy::gate::Stored;

/// Most events one append (one stream's run of lines) carries, as for raw appends.
const APPEND_EVENTS: usize = 1000;
/// What one import queues to the writer together before waiting for their commits:
/// events, appends (one per run of a stream) and bytes. Whichever is reached first
/// flushes. Small enough that an import holds little memory (a few MiB, whatever its
/// lines' sizes) and takes a share of the writer's commits, not all of them: the
/// writer commits whatever is queued, and a neighbour's append queued behind a whole
/// group waits for it.
const GROUP_EVENTS: usize = 5_000;
const GROUP_APPENDS: usize = 128;
const GROUP_BYTES: usize = 8 << 20;

/// One line of an import: an event and its stream.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportLine {
    /// The stream id: 1 to 200 printable ASCII characters other than `/`.
    #[schema(pattern = "^[!-.0-~]{1,200}$")]
    stream: String,
    /// The writer's id for the event; with ids on every line, a file can be sent again.
    #[schema(min_length = 1, max_length = 200)]
    event_id: Option<String>,
    /// The event's type: 1 to 200 printable characters.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 200)]
    event_type: String,
    /// The payload: any JSON.
    data: Value,
    /// The writer's metadata.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
}

/// The import so far: appends queued, what is committed, and what to answer.
struct Import {
    /// Appends not yet sent, each with the last line it holds.
    group: Vec<(AppendRequest, u64)>,
    group_events: usize,
    /// Payload and metadata bytes in `group`.
    group_bytes: usize,
    /// Every line through this one is committed.
    committed_lines: u64,
    events: u64,
    replayed_events: u64,
    streams: HashSet<String>,
    first_position: Option<u64>,
    last_position: Option<u64>,
}

/// Import a long history.
///
/// NDJSON, one event per line (the `ImportLine` schema); each stream's events are
/// appended at its end in line order, thousands of events per transaction.
#[utoipa::path(post, path = "/t/{tenant}/import", tag = "streams", operation_id = "import",
    params(TenantParams),
    request_body(content = String, content_type = "application/x-ndjson",
        description = "NDJSON: one `ImportLine` object per line, each at most the tenant's `max_body_bytes`",
        example = json!("{\"stream\": \"account-42\", \"type\": \"Deposited\", \"data\": {\"amount\": 5}}\n")),
    responses(
        (status = 200, description = "Imported", body = ImportView),
        (status = 400, description = "Stopped at a line (with `line`, `imported_lines` and `imported_events`; every line before it is committed):\n\
            `invalid_body`: a line that is not an event (malformed JSON, an unknown field), or a body that broke off\n\
            `bad_request`: an invalid stream id, event type or event id, an event id twice in a row of a stream, or no events at all"),
        (status = 408, description = "`body_timeout` (with `imported_lines`, `imported_events`): the body stopped arriving; the connection is closed"),
        (status = 409, description = "`idempotency_conflict` (with `imported_lines`, `imported_events`): some event ids were already appended, but not as this same append"),
        (status = 413, description = "`too_large` (with `line`, `imported_lines`, `imported_events`): a line longer than the tenant's `max_body_bytes`"),
        (status = 507, description = "`quota_exceeded` (with `imported_lines`, `imported_events`): past the tenant's `max_stored_bytes`"),
    ))]
pub async fn import(
    access: TenantAccess,
    State(app): State<AppState>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let max_line = access.gate.limits.max_body_bytes as usize;
    let mut import = Import {
        group: Vec::new(),
        group_events: 0,
        group_bytes: 0,
        committed_lines: 0,
        events: 0,
        replayed_events: 0,
        streams: HashSet::new(),
        first_position: None,
        last_position: None,
    };
    let mut chunks = body.into_data_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut line_number = 0u64;
    let mut finished = false;
    while !finished {
        match chunks.next().await {
            Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
            Some(Err(error)) => {
                // Lines complete before the break (or the wait) are kept, as for a
                // bad line: the import can be sent again from `imported_lines` on.
                import.flush(&app, &access).await?;
                return Err(import.stopped(unreadable_body(&error)));
            }
            None => finished = true,
        }
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            line_number += 1;
            let line = &pending[start..start + end];
            start += end + 1;
            import.line(&app, &access, line_number, line).await?;
        }
        pending.drain(..start);
        if finished && !pending.is_empty() {
            line_number += 1;
            let line = std::mem::take(&mut pending);
            import.line(&app, &access, line_number, &line).await?;
        }
        if pending.len() > max_line {
            import.flush(&app, &access).await?;
            return Err(import.stopped(
                ApiError::too_large(format!(
                    "line {} is longer than this tenant's max_body_bytes ({max_line})",
                    line_number + 1
                ))
                .with("line", line_number + 1),
            ));
        }
    }
    import.flush(&app, &access).await?;
    if import.events == 0 && import.replayed_events == 0 {
        return Err(ApiError::bad_request(
            "the import holds no events: send NDJSON, one event per line",
        ));
    }
    let streams = import.streams.len();
    crate::commands::warm::spawn_for_streams(
        app.warmer.clone(),
        access.tenant.clone(),
        std::mem::take(&mut import.streams),
    );
    Ok(views::body(ImportView {
        imported_lines: import.committed_lines,
        events: import.events,
        replayed_events: import.replayed_events,
        streams: streams as u64,
        first_position: import.first_position,
        last_position: import.last_position,
    }))
}

impl Import {
    /// Takes one line: checks it and adds it to the group, sending the group when full.
    async fn line(
        &mut self,
        app: &AppState,
        access: &TenantAccess,
        number: u64,
        line: &[u8],
    ) -> ApiResult<()> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let (stream, event) = match self.parse(line) {
            Ok(parsed) => parsed,
            Err(error) => {
                // Every line before the bad one is committed, so a corrected file
                // can be sent again from this line on.
                self.flush(app, access).await?;
                let message = format!("line {number}: {}", error.message);
                return Err(self.stopped(
                    ApiError::new(error.status, error.code, message).with("line", number),
                ));
            }
        };
        self.group_bytes += event.0.payload.len() + event.0.metadata.len();
        let continues = self.group.last().is_some_and(|(request, _)| {
            request.stream_id == stream && request.events.len() < APPEND_EVENTS
        });
        let from_writer = event.1;
        if continues {
            let (request, last) = self.group.last_mut().expect("checked above");
            request.events.push(event.0);
            request.ids_from_writer |= from_writer;
            *last = number;
        } else {
            self.group.push((
                AppendRequest {
                    tenant: access.tenant.clone(),
                    stream_id: stream,
                    expected: ExpectedVersion::Any,
                    events: vec![event.0],
                    ids_from_writer: from_writer,
                    command_id: None,
                    command_fingerprint: None,
                    atomic_group: None,
                },
                number,
            ));
        }
        self.group_events += 1;
        if self.group_events >= GROUP_EVENTS
            || self.group.len() >= GROUP_APPENDS
            || self.group_bytes >= GROUP_BYTES
        {
            self.flush(app, access).await?;
        }
        Ok(())
    }

    /// The line as an event of a stream, and whether its id came from the writer.
    fn parse(&self, line: &[u8]) -> ApiResult<(String, (ProposedEvent, bool))> {
        let parsed: ImportLine = serde_json::from_slice(line).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("not an event: {e}"),
            )
        })?;
        check_stream(&parsed.stream)?;
        let from_writer = parsed.event_id.is_some();
        let event = proposed(EventBody {
            event_id: parsed.event_id,
            event_type: parsed.event_type,
            data: parsed.data,
            metadata: parsed.metadata,
        })?;
        if from_writer
            && let Some((request, _)) = self.group.last()
            && request.stream_id == parsed.stream
            && request.events.iter().any(|e| e.event_id == event.event_id)
        {
            return Err(ApiError::bad_request(format!(
                "event id {} appears twice in a row of the same stream",
                event.event_id
            )));
        }
        Ok((parsed.stream, (event, from_writer)))
    }

    /// Sends the group to the writer and waits for its commits.
    async fn flush(&mut self, app: &AppState, access: &TenantAccess) -> ApiResult<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        let group = std::mem::take(&mut self.group);
        self.group_events = 0;
        self.group_bytes = 0;
        let bytes = group
            .iter()
            .flat_map(|(r, _)| &r.events)
            .map(|e| (e.payload.len() + e.metadata.len()) as u64)
            .sum();
        access
            .gate
            .reserve_storage(&app.store, &access.tenant, Stored::Events(bytes))
            .await
            .map_err(|e| self.stopped(e))?;
        let (requests, last_lines): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let sent: Vec<(String, u64)> = requests
            .iter()
            .map(|r| {
                let bytes = r
                    .events
                    .iter()
                    .map(|e| (e.payload.len() + e.metadata.len()) as u64);
                (r.stream_id.clone(), bytes.sum())
            })
            .collect();
        let results = app.appender.append_all(requests).await;
        // What was reserved and not written (replays, failures) is given back.
        let mut released = 0u64;
        let mut failure = None;
        for ((result, last_line), (stream, bytes)) in results.into_iter().zip(last_lines).zip(sent)
        {
            match result {
                Ok(outcome) if outcome.replayed => {
                    released += bytes;
                    self.replayed_events += outcome.events.len() as u64;
                }
                Ok(outcome) => {
                    self.events += outcome.events.len() as u64;
                    if let (Some(first), Some(last)) =
                        (outcome.events.first(), outcome.events.last())
                    {
                        self.first_position.get_or_insert(first.position);
                        self.last_position = Some(last.position);
                    }
                    self.streams.insert(stream);
                }
                Err(error) => {
                    released += bytes;
                    failure.get_or_insert(ApiError::from(error));
                }
            }
            if failure.is_none() {
                self.committed_lines = last_line;
            }
        }
        if released > 0 {
            access.gate.release_storage(Stored::Events(released)).await;
        }
        match failure {
            Some(error) => Err(self.stopped(error)),
            None => Ok(()),
        }
    }

    /// An error that stopped the import, with how far it got.
    fn stopped(&self, error: ApiError) -> ApiError {
        error
            .with("imported_lines", self.committed_lines)
            .with("imported_events", self.events)
    }
}
