//! JSON shapes of recorded events, state and plugins, as the API contract names them.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::store::{PinnedPlugin, PluginKind, PluginVersion, RecordedEvent, Verification};

/// Unix milliseconds as RFC 3339 with milliseconds, in UTC.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A recorded event. Payload and metadata are stored as JSON text and passed through
/// untouched rather than parsed and printed again.
#[derive(Serialize)]
pub struct EventView<'a> {
    pub event_id: &'a str,
    pub stream_id: &'a str,
    pub version: u64,
    pub position: u64,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub data: &'a RawValue,
    pub metadata: &'a RawValue,
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

#[derive(Serialize)]
pub struct PluginView {
    pub name: String,
    pub kind: &'static str,
    /// The version that serves; `null` while none does (the first is verifying or
    /// was staged). For projections, the newest version (builds are shown under
    /// `/projections`).
    pub active_version: Option<u64>,
    pub versions: Vec<PluginVersionView>,
}

#[derive(Serialize)]
pub struct PluginVersionView {
    pub version: u64,
    pub digest: String,
    pub uploaded_at: String,
    /// `verifying`, `active`, `staged` (verified, not serving), or `rejected`.
    pub status: &'static str,
    /// The upcasters this version reads history through.
    pub upcasters: Vec<PinnedPlugin>,
    /// Progress, failures and state differences; absent for projections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<serde_json::Value>,
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
