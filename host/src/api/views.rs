//! JSON shapes of the API's answers, as the contract names them. Each derives
//! `ToSchema`, so `/openapi.json` describes the type the handler answers with.
//!
//! Every body is written through [`body`]: a `serde_json::Value` prints its keys in
//! sorted order, which is the order the API has always answered in, whatever the
//! order of a view's fields.

use axum::Json;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::plugins::report::Report;
use crate::store::{PinnedPlugin, PluginKind, PluginVersion, RecordedEvent, Verification};
use crate::tenancy::gate::UsageView;
use crate::tenancy::limits::Limits;

/// A view as the body of an answer, keys in sorted order.
pub fn body(view: impl Serialize) -> Json<Value> {
    Json(serde_json::json!(view))
}

/// Unix milliseconds as RFC 3339 with milliseconds, in UTC.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A recorded event. Payload and metadata are stored as JSON text and passed through
/// untouched rather than parsed and printed again.
#[derive(Serialize, ToSchema)]
#[schema(as = Event)]
pub struct EventView<'a> {
    pub event_id: &'a str,
    pub stream_id: &'a str,
    /// Its place in its stream, from 1.
    pub version: u64,
    /// Its place in the tenant's log, from 1, without gaps.
    pub position: u64,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    /// The payload, as the writer gave it (any JSON).
    #[schema(value_type = Value)]
    pub data: &'a RawValue,
    /// The writer's metadata (an object).
    #[schema(value_type = Object)]
    pub metadata: &'a RawValue,
    /// When it was committed, RFC 3339 in UTC with milliseconds.
    #[schema(format = DateTime)]
    pub recorded_at: String,
}

fn raw(json: &str) -> &RawValue {
    serde_json::from_str(json).unwrap_or_else(|_| {
        // Only JSON is ever stored; this keeps a corrupted row visible instead of failing.
        serde_json::from_str("null").expect("null is JSON")
    })
}

pub fn event(e: &RecordedEvent) -> EventView<'_> {
    EventView {
        event_id: &e.event_id,
        stream_id: &e.stream_id,
        version: e.version,
        position: e.position,
        event_type: &e.event_type,
        data: raw(&e.payload),
        metadata: raw(&e.metadata),
        recorded_at: rfc3339(e.recorded_at),
    }
}

pub fn events(list: &[RecordedEvent]) -> Vec<EventView<'_>> {
    list.iter().map(event).collect()
}

/// A plugin and every version of it.
#[derive(Serialize, ToSchema)]
pub struct PluginView {
    pub name: String,
    #[schema(value_type = PluginKind)]
    pub kind: &'static str,
    /// The version that serves; `null` while none does (the first is verifying or
    /// was staged). For projections, the newest version (builds are shown under
    /// `/projections`).
    #[schema(required = true)]
    pub active_version: Option<u64>,
    pub versions: Vec<PluginVersionView>,
}

/// One version of a plugin.
#[derive(Serialize, ToSchema)]
pub struct PluginVersionView {
    pub version: u64,
    /// `sha256:` and the hex digest of the component's bytes.
    pub digest: String,
    #[schema(format = DateTime)]
    pub uploaded_at: String,
    #[schema(value_type = VersionStatus)]
    pub status: &'static str,
    /// The upcasters this version reads history through.
    pub upcasters: Vec<PinnedPlugin>,
    /// Progress, failures and state differences; absent for projections.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Report>)]
    pub verification: Option<serde_json::Value>,
}

/// A version's status: `verifying` (checked against the recorded history), `active`
/// (serving), `staged` (verified, not serving), or `rejected`.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum VersionStatus {
    Verifying,
    Active,
    Staged,
    Rejected,
}

/// A version's status as the API names it.
pub fn version_status(v: &PluginVersion) -> &'static str {
    match (v.active, v.verification) {
        (true, _) => "active",
        (false, Verification::Verifying) => "verifying",
        (false, Verification::Rejected) => "rejected",
        (false, Verification::Verified) if v.kind == PluginKind::Projection => "active",
        (false, Verification::Verified) => "staged",
    }
}

pub fn plugin_version(v: &PluginVersion) -> PluginVersionView {
    PluginVersionView {
        version: v.version,
        digest: v.digest.clone(),
        uploaded_at: rfc3339(v.uploaded_at),
        status: version_status(v),
        upcasters: v.upcasters.clone(),
        verification: v.report.clone(),
    }
}

/// Groups a tenant's versions (ordered by name, then version) into one view per plugin.
pub fn plugins(versions: &[PluginVersion]) -> Vec<PluginView> {
    let mut views: Vec<PluginView> = Vec::new();
    for v in versions {
        let projection = v.kind == PluginKind::Projection;
        let serves = v.active || projection;
        match views.last_mut() {
            Some(view) if view.name == v.name => {
                if serves {
                    view.active_version = Some(v.version);
                }
                view.versions.push(plugin_version(v));
            }
            _ => views.push(PluginView {
                name: v.name.clone(),
                kind: v.kind.as_str(),
                active_version: serves.then_some(v.version),
                versions: vec![plugin_version(v)],
            }),
        }
    }
    views
}

/// `{"status": "ok"}` (alive) or `{"status": "ready"}` (store reachable).
#[derive(Serialize, ToSchema)]
pub struct StatusView {
    pub status: &'static str,
}

/// A tenant with its limits and usage.
#[derive(Serialize, ToSchema)]
pub struct TenantView {
    #[schema(value_type = String)]
    pub id: crate::store::TenantId,
    pub limits: Limits,
    pub usage: UsageView,
}

/// A new tenant: its token is shown once, here.
#[derive(Serialize, ToSchema)]
pub struct CreatedTenant {
    #[schema(value_type = String)]
    pub id: crate::store::TenantId,
    /// The tenant's bearer token for `/t/{tenant}/…`.
    pub token: String,
    pub limits: Limits,
}

/// A tenant's new token; the old one no longer works.
#[derive(Serialize, ToSchema)]
pub struct TokenView {
    #[schema(value_type = String)]
    pub id: crate::store::TenantId,
    pub token: String,
}

/// An uploaded version.
#[derive(Serialize, ToSchema)]
pub struct UploadView {
    pub name: String,
    pub version: u64,
    #[schema(value_type = PluginKind)]
    pub kind: &'static str,
    pub digest: String,
    #[schema(value_type = VersionStatus)]
    pub status: &'static str,
    /// Where to follow its verification: `GET` it.
    pub status_url: String,
    /// The verification report, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Report>)]
    pub verification: Option<Value>,
}

/// A version being verified again before it serves.
#[derive(Serialize, ToSchema)]
pub struct VerifyingView {
    #[serde(flatten)]
    pub version: PluginVersionView,
    /// Where to follow its verification: `GET` it.
    pub status_url: String,
}

/// What a plugin printed (stdout and stderr) in this host, oldest first.
#[derive(Serialize, ToSchema)]
pub struct LogsView {
    pub name: String,
    pub lines: Vec<String>,
}

/// A command's outcome: the events it appended.
#[derive(Serialize, ToSchema)]
pub struct CommandView<'a> {
    /// The aggregate's stream, `{category}-{id}`.
    pub stream_id: String,
    /// The stream's version after the command.
    pub version: u64,
    /// The log position of its last event (the `min_position` to read it back).
    pub position: u64,
    /// The events appended (none when `decide` decided nothing).
    pub events: Vec<EventView<'a>>,
}

/// An aggregate's state.
#[derive(Serialize, ToSchema)]
pub struct StateView {
    pub stream_id: String,
    /// The version the state was folded to.
    pub version: u64,
    /// The state the aggregate encodes (JSON when it encodes JSON; otherwise
    /// `{"opaque_bytes": n}`).
    pub state: Value,
}

/// Where an append's events landed; all `null` when nothing was written.
#[derive(Serialize, ToSchema)]
pub struct AppendView {
    #[schema(required = true)]
    pub first_version: Option<u64>,
    #[schema(required = true)]
    pub last_version: Option<u64>,
    #[schema(required = true)]
    pub first_position: Option<u64>,
    #[schema(required = true)]
    pub last_position: Option<u64>,
}

/// Where one stream's events of a multi-stream append landed.
#[derive(Serialize, ToSchema)]
pub struct StreamAppendView {
    pub stream: String,
    #[schema(required = true)]
    pub first_version: Option<u64>,
    #[schema(required = true)]
    pub last_version: Option<u64>,
    #[schema(required = true)]
    pub first_position: Option<u64>,
    #[schema(required = true)]
    pub last_position: Option<u64>,
}

/// A multi-stream append's outcome, one entry per append in request order.
#[derive(Serialize, ToSchema)]
pub struct MultiAppendView {
    pub appends: Vec<StreamAppendView>,
}

/// A page of a stream.
#[derive(Serialize, ToSchema)]
pub struct StreamPage<'a> {
    pub events: Vec<EventView<'a>>,
    /// The `from` of the next page; `null` at the end.
    #[schema(required = true)]
    pub next: Option<u64>,
}

/// A page of the tenant's log.
#[derive(Serialize, ToSchema)]
pub struct LogPage<'a> {
    pub events: Vec<EventView<'a>>,
    /// The log's last position when the page was read.
    pub head: u64,
    /// The `after` of the next page when this one was full; `null` when it reached
    /// the head.
    #[schema(required = true)]
    pub next: Option<u64>,
}

/// What an import wrote.
#[derive(Serialize, ToSchema)]
pub struct ImportView {
    /// Lines read and committed (blank lines included).
    pub imported_lines: u64,
    /// Events written.
    pub events: u64,
    /// Events already stored (same ids at the same place), not written again.
    pub replayed_events: u64,
    /// Streams written to.
    pub streams: u64,
    #[schema(required = true)]
    pub first_position: Option<u64>,
    #[schema(required = true)]
    pub last_position: Option<u64>,
}

/// A page of a projection's documents, in key order.
#[derive(Serialize, ToSchema)]
pub struct DocumentPage {
    pub docs: Vec<DocumentEntry>,
    /// The `after` of the next page; `null` at the end.
    #[schema(required = true)]
    pub next: Option<String>,
}

/// One document and its key.
#[derive(Serialize, ToSchema)]
pub struct DocumentEntry {
    pub key: String,
    /// The document, as the projection wrote it.
    pub doc: Value,
}
