//! The `Projection` trait and the glue between it and the `projection` world.

use std::sync::OnceLock;

use serde::Serialize;
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
    /// Correlation and causation ids and the writer's own keys (a JSON object; reads
    /// as a `serde_json::Value`).
    pub metadata: Metadata,
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
            metadata: Metadata::from(serde_json::Value::Null),
            data,
        }
    }
}

/// An event's metadata, decoded the first time it is read: most projections never
/// look at it, and decoding it costs about as much as decoding the payload.
#[derive(Clone)]
pub struct Metadata {
    /// The JSON the host gave; empty once `decoded` is set from a value.
    raw: Vec<u8>,
    decoded: OnceLock<serde_json::Value>,
}

impl Metadata {
    pub(crate) fn decoded_on_use(raw: Vec<u8>) -> Metadata {
        Metadata {
            raw,
            decoded: OnceLock::new(),
        }
    }
}

impl From<serde_json::Value> for Metadata {
    fn from(value: serde_json::Value) -> Metadata {
        Metadata {
            raw: Vec::new(),
            decoded: OnceLock::from(value),
        }
    }
}

impl std::ops::Deref for Metadata {
    type Target = serde_json::Value;

    /// Metadata that is not JSON reads as `null`.
    fn deref(&self) -> &serde_json::Value {
        self.decoded
            .get_or_init(|| serde_json::from_slice(&self.raw).unwrap_or(serde_json::Value::Null))
    }
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Metadata) -> bool {
        **self == **other
    }
}

impl Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
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
        handle_with::<P>(events, &mut Documents::host());
    }

    /// `handle` over any documents, so that the glue is testable natively.
    pub(crate) fn handle_with<P: Projection>(
        events: Vec<wit::RecordedEvent>,
        docs: &mut Documents,
    ) {
        let filtered = !P::event_types().is_empty();
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
                metadata: Metadata::decoded_on_use(e.metadata),
                data,
            };
            P::handle(event, docs);
        }
        docs.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection_bindings::cairn::plugin::types as wit;
    use serde::Deserialize;

    #[derive(Deserialize)]
    enum CounterEvent {
        Added { by: i64 },
    }

    /// Sums every `Added` per stream; `FILTERED` says whether it names its event types.
    struct Sums<const FILTERED: bool>;

    impl<const FILTERED: bool> Projection for Sums<FILTERED> {
        type Event = CounterEvent;

        fn event_types() -> Vec<&'static str> {
            if FILTERED { vec!["Added"] } else { Vec::new() }
        }

        fn handle(event: Event<CounterEvent>, docs: &mut Documents) {
            let CounterEvent::Added { by } = event.data;
            let sum: i64 = docs.get(&event.stream_id).unwrap_or(0);
            docs.put(&event.stream_id, &(sum + by));
            docs.put("last", &(event.position, event.recorded_at, event.metadata));
        }
    }

    fn recorded(position: u64, event_type: &str, payload: &str) -> wit::RecordedEvent {
        wit::RecordedEvent {
            event_id: format!("e{position}"),
            stream_id: "counter-1".into(),
            version: position,
            position,
            event_type: event_type.into(),
            payload: payload.as_bytes().to_vec(),
            metadata: br#"{"correlation-id":"c"}"#.to_vec(),
            recorded_at: 1_000 + position,
        }
    }

    #[test]
    fn a_batch_is_handled_in_order_with_the_hosts_facts() {
        let mut docs = Documents::in_memory();
        glue::handle_with::<Sums<true>>(
            vec![
                recorded(1, "Added", r#"{"by":2}"#),
                recorded(2, "Added", r#"{"by":3}"#),
            ],
            &mut docs,
        );
        assert_eq!(docs.get::<i64>("counter-1"), Some(5));
        let last: (u64, u64, serde_json::Value) = docs.get("last").unwrap();
        assert_eq!(last, (2, 1_002, serde_json::json!({"correlation-id": "c"})));
    }

    #[test]
    fn unfiltered_projections_skip_events_they_do_not_know() {
        let mut docs = Documents::in_memory();
        glue::handle_with::<Sums<false>>(
            vec![
                recorded(1, "Renamed", "{}"),
                recorded(2, "Added", r#"{"by":3}"#),
            ],
            &mut docs,
        );
        assert_eq!(docs.get::<i64>("counter-1"), Some(3));
    }

    #[test]
    #[should_panic(expected = "event Added of counter-1 (position 1) does not decode")]
    fn filtered_projections_trap_on_events_that_do_not_decode() {
        glue::handle_with::<Sums<true>>(
            vec![recorded(1, "Added", "{}")],
            &mut Documents::in_memory(),
        );
    }
}
