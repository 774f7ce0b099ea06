//! JSON shapes of recorded events, state and plugins, as the API contract names them.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::store::{PluginVersion, RecordedEvent};

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
    pub active_version: u64,
    pub versions: Vec<PluginVersionView>,
}

#[derive(Serialize)]
pub struct PluginVersionView {
    pub version: u64,
    pub digest: String,
    pub uploaded_at: String,
}

/// Groups a tenant's versions (ordered by name, then version) into one view per plugin.
pub fn plugins(versions: &[PluginVersion]) -> Vec<PluginView> {
    let mut views: Vec<PluginView> = Vec::new();
    for v in versions {
        let version = PluginVersionView {
            version: v.version,
            digest: v.digest.clone(),
            uploaded_at: rfc3339(v.uploaded_at),
        };
        match views.last_mut() {
            Some(view) if view.name == v.name => {
                view.active_version = v.version;
                view.versions.push(version);
            }
            _ => views.push(PluginView {
                name: v.name.clone(),
                kind: v.kind.as_str(),
                active_version: v.version,
                versions: vec![version],
            }),
        }
    }
    views
}
