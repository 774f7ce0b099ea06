//! The `Projection` trait and the glue between it and the `projection` world.

use serde::de::DeserializeOwned;

use crate::documents::Documents;
use crate::envelope;

/// A recorded event as a projection sees it: the host's facts plus the decoded data.
#[derive(Clone, Debug)]
pub struct Event<E> {
    pub event_id: String,
    pub stream_id: String,
    /// 1-based version within its stream.
    pub version: u64,
    /// Position in the tenant's log.
    pub position: u64,
    /// Unix milliseconds, set by the host at commit.
    pub recorded_at: u64,
    pub event_type: String,
    /// Correlation and causation ids and the writer's own keys.
    pub metadata: serde_json::Value,
    pub data: E,
}

impl<E> Event<E> {
    /// An event for unit tests (position = version, recorded at the epoch).
    pub fn for_test(stream_id: &str, version: u64, data: E) -> Event<E> {
        Event {
            event_id: format!("{stream_id}-{version}"),
            stream_id: stream_id.to_owned(),
            version,
            position: version,
            recorded_at: 0,
            event_type: String::new(),
            metadata: serde_json::Value::Null,
            data,
        }
    }
}

/// Turns the tenant's log into documents. The host calls `handle` for each event in
/// log order, in batches; the writes of a batch commit with its checkpoint, so each
/// event's effects happen exactly once.
pub trait Projection {
    /// The events it understands, as a serde enum in its default form.
    type Event: DeserializeOwned;

    /// The event types to receive; empty means all. When it is empty, events whose type
    /// does not decode as `Self::Event` are skipped; when it lists types, such an event
    /// is a bug and stops the projection (it is parked as failed).
    fn event_types() -> Vec<&'static str> {
        Vec::new()
    }

    fn handle(event: Event<Self::Event>, docs: &mut Documents);
}

/// Implementations behind `export_projection!`.
pub mod glue {
    use super::*;
    use crate::projection_bindings::cairn::plugin::types as wit;

    pub fn event_types<P: Projection>() -> Vec<String> {
        P::event_types().into_iter().map(str::to_owned).collect()
    }

    pub fn handle<P: Projection>(events: Vec<wit::RecordedEvent>) {
        let filtered = !P::event_types().is_empty();
        let mut docs = Documents::host();
        for e in events {
            let data: P::Event = match envelope::decode(&e.event_type, &e.payload) {
                Ok(data) => data,
                Err(_) if !filtered => continue,
                Err(error) => panic!(
                    "event {} of {} (position {}) does not decode: {error}",
                    e.event_type, e.stream_id, e.position
                ),
            };
            let event = Event {
                event_id: e.event_id,
                stream_id: e.stream_id,
                version: e.version,
                position: e.position,
                recorded_at: e.recorded_at,
                event_type: e.event_type,
                metadata: serde_json::from_slice(&e.metadata).unwrap_or(serde_json::Value::Null),
                data,
            };
            P::handle(event, &mut docs);
        }
    }
}
