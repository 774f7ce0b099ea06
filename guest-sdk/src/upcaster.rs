//! The `Upcaster` trait and the glue between it and the `upcaster` world.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope;
use crate::projection::Event;

/// Rewrites stored events into the shape current readers expect. The stored bytes
/// never change: the host runs the upcaster whenever an aggregate, a projection or a
/// read that asks for it meets an event of one of [`Upcaster::event_types`].
pub trait Upcaster {
    /// The stored events it reads, as a serde enum in its default form (the variant
    /// name is the event type). To take a payload as raw JSON, give the variant a
    /// `serde_json::Value`: `enum Stored { Deposited(serde_json::Value) }`.
    type Event: DeserializeOwned;

    /// The event types it rewrites. Events of other types are never given to
    /// [`Upcaster::upcast`]; they pass untouched.
    fn event_types() -> Vec<&'static str>;

    /// What one stored event becomes: `vec![Upcast::keep()]` leaves it as it is, an
    /// empty list drops it, several entries split it. An event that does not decode as
    /// `Self::Event` is a trap, so the version that would read it is not activated.
    fn upcast(event: Event<Self::Event>) -> Vec<Upcast>;
}

/// One event an upcaster gives back for a stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upcast(Output);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Output {
    Keep,
    New {
        event_type: String,
        payload: Vec<u8>,
    },
}

impl Upcast {
    /// The stored event, unchanged (same type, same bytes).
    pub fn keep() -> Upcast {
        Upcast(Output::Keep)
    }

    /// An event of type `event_type` with `payload` serialised as its JSON data.
    pub fn to(event_type: impl Into<String>, payload: &impl Serialize) -> Upcast {
        let event_type = event_type.into();
        let payload = serde_json::to_vec(payload).unwrap_or_else(|e| {
            panic!("the payload of the upcasted {event_type} does not serialise: {e}")
        });
        Upcast(Output::New {
            event_type,
            payload,
        })
    }

    /// An event given as a serde enum in its default form, like an aggregate's events:
    /// `Upcast::event(&Current::Deposited { cents: 5 })` is type `Deposited`, data
    /// `{"cents":5}`.
    pub fn event(event: &impl Serialize) -> Upcast {
        let (event_type, payload) = envelope::encode(event)
            .unwrap_or_else(|e| panic!("an upcasted event does not serialise: {e}"));
        Upcast(Output::New {
            event_type,
            payload,
        })
    }

    /// Whether this is [`Upcast::keep`].
    pub fn is_keep(&self) -> bool {
        matches!(self.0, Output::Keep)
    }

    /// The new event's type (`None` for [`Upcast::keep`]).
    pub fn event_type(&self) -> Option<&str> {
        match &self.0 {
            Output::Keep => None,
            Output::New { event_type, .. } => Some(event_type),
        }
    }

    /// The new event's JSON data (`None` for [`Upcast::keep`]).
    pub fn payload(&self) -> Option<serde_json::Value> {
        match &self.0 {
            Output::Keep => None,
            Output::New { payload, .. } => {
                Some(serde_json::from_slice(payload).expect("upcasted payloads are JSON"))
            }
        }
    }
}

/// Runs `U` on one stored event as the host would, for native tests: the event of
/// type `event_type` with JSON data `payload` (of stream `test-1`, version 1) and
/// the `(type, data)` pairs it becomes. A kept event comes back as it was; an event
/// of a type `U` does not list comes back untouched; one that does not decode panics.
pub fn upcast_json<U: Upcaster>(
    event_type: &str,
    payload: serde_json::Value,
) -> Vec<(String, serde_json::Value)> {
    let event = crate::upcaster_bindings::cairn::plugin::types::RecordedEvent {
        event_id: "test-1-1".into(),
        stream_id: "test-1".into(),
        version: 1,
        position: 1,
        event_type: event_type.to_owned(),
        payload: serde_json::to_vec(&payload).expect("a JSON value serialises"),
        metadata: b"{}".to_vec(),
        recorded_at: 0,
    };
    let mut outputs = glue::upcast::<U>(vec![event]);
    assert_eq!(outputs.len(), 1, "one output list per input event");
    outputs
        .remove(0)
        .into_iter()
        .map(|e| {
            let data = serde_json::from_slice(&e.payload).expect("upcasted payloads are JSON");
            (e.event_type, data)
        })
        .collect()
}

/// Implementations behind `export_upcaster!`.
pub mod glue {
    use super::*;
    use crate::upcaster_bindings::cairn::plugin::types as wit;

    pub fn event_types<U: Upcaster>() -> Vec<String> {
        U::event_types().into_iter().map(str::to_owned).collect()
    }

    pub fn upcast<U: Upcaster>(events: Vec<wit::RecordedEvent>) -> Vec<Vec<wit::NewEvent>> {
        let types = U::event_types();
        events
            .into_iter()
            .map(|e| {
                if !types.contains(&e.event_type.as_str()) {
                    return vec![unchanged(e)];
                }
                let data: U::Event =
                    envelope::decode(&e.event_type, &e.payload).unwrap_or_else(|error| {
                        panic!(
                            "event {} of {} (version {}) does not decode: {error}",
                            e.event_type, e.stream_id, e.version
                        )
                    });
                let (event_type, payload) = (e.event_type.clone(), e.payload.clone());
                let event = Event {
                    event_id: e.event_id,
                    stream_id: e.stream_id,
                    version: e.version,
                    position: e.position,
                    recorded_at: e.recorded_at,
                    event_type: e.event_type,
                    metadata: crate::projection::Metadata::decoded_on_use(e.metadata),
                    data,
                };
                U::upcast(event)
                    .into_iter()
                    .map(|out| match out.0 {
                        Output::Keep => wit::NewEvent {
                            event_type: event_type.clone(),
                            payload: payload.clone(),
                        },
                        Output::New {
                            event_type,
                            payload,
                        } => wit::NewEvent {
                            event_type,
                            payload,
                        },
                    })
                    .collect()
            })
            .collect()
    }

    fn unchanged(e: wit::RecordedEvent) -> wit::NewEvent {
        wit::NewEvent {
            event_type: e.event_type,
            payload: e.payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upcaster_bindings::cairn::plugin::types as wit;
    use serde::Deserialize;
    use serde_json::json;

    /// `Added` was first stored as `{"by": n}`, now as `{"amount": n}`; `Reset` was
    /// split into `Cleared` and `Restarted`; `Noise` is dropped.
    #[derive(Deserialize)]
    enum Stored {
        Added(serde_json::Value),
        Reset,
        Noise,
    }

    #[derive(Serialize)]
    enum Current {
        Cleared,
    }

    struct Upgrade;

    impl Upcaster for Upgrade {
        type Event = Stored;

        fn event_types() -> Vec<&'static str> {
            vec!["Added", "Reset", "Noise"]
        }

        fn upcast(event: Event<Stored>) -> Vec<Upcast> {
            match event.data {
                Stored::Added(data) => match data.get("by") {
                    Some(by) => vec![Upcast::to("Added", &json!({ "amount": by }))],
                    None => vec![Upcast::keep()],
                },
                Stored::Reset => vec![
                    Upcast::event(&Current::Cleared),
                    Upcast::to("Restarted", &json!({ "at": event.recorded_at })),
                ],
                Stored::Noise => Vec::new(),
            }
        }
    }

    fn recorded(version: u64, event_type: &str, payload: &str) -> wit::RecordedEvent {
        wit::RecordedEvent {
            event_id: format!("e{version}"),
            stream_id: "counter-1".into(),
            version,
            position: version,
            event_type: event_type.into(),
            payload: payload.as_bytes().to_vec(),
            metadata: b"{}".to_vec(),
            recorded_at: 1_000 + version,
        }
    }

    fn pairs(events: &[wit::NewEvent]) -> Vec<(&str, &str)> {
        events
            .iter()
            .map(|e| {
                (
                    e.event_type.as_str(),
                    std::str::from_utf8(&e.payload).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn event_types_are_listed() {
        assert_eq!(glue::event_types::<Upgrade>(), ["Added", "Reset", "Noise"]);
    }

    #[test]
    fn one_output_list_per_input_event_in_order() {
        let out = glue::upcast::<Upgrade>(vec![
            recorded(1, "Added", r#"{"by":2}"#),
            recorded(2, "Reset", "{}"),
            recorded(3, "Noise", "{}"),
            recorded(4, "Added", r#"{ "amount" : 3 }"#),
            recorded(5, "Renamed", "not even JSON"),
        ]);
        assert_eq!(out.len(), 5);
        assert_eq!(pairs(&out[0]), [("Added", r#"{"amount":2}"#)]);
        assert_eq!(
            pairs(&out[1]),
            [("Cleared", "{}"), ("Restarted", r#"{"at":1002}"#)]
        );
        assert!(out[2].is_empty());
        // Kept and unlisted events come back byte for byte.
        assert_eq!(pairs(&out[3]), [("Added", r#"{ "amount" : 3 }"#)]);
        assert_eq!(pairs(&out[4]), [("Renamed", "not even JSON")]);
    }

    #[test]
    fn an_empty_batch_gives_nothing() {
        assert!(glue::upcast::<Upgrade>(Vec::new()).is_empty());
    }

    #[test]
    #[should_panic(expected = "event Reset of counter-1 (version 7) does not decode")]
    fn undecodable_events_trap() {
        glue::upcast::<Upgrade>(vec![recorded(7, "Reset", r#"{"why":"because"}"#)]);
    }

    #[test]
    fn upcast_json_runs_the_glue() {
        assert_eq!(
            upcast_json::<Upgrade>("Added", json!({ "by": 5 })),
            [("Added".to_owned(), json!({ "amount": 5 }))]
        );
        assert_eq!(
            upcast_json::<Upgrade>("Other", json!({ "x": 1 })),
            [("Other".to_owned(), json!({ "x": 1 }))]
        );
    }

    #[test]
    fn upcasts_can_be_inspected() {
        let kept = Upcast::keep();
        assert!(kept.is_keep());
        assert_eq!((kept.event_type(), kept.payload()), (None, None));
        let new = Upcast::to("Added", &json!({ "amount": 1 }));
        assert!(!new.is_keep());
        assert_eq!(new.event_type(), Some("Added"));
        assert_eq!(new.payload(), Some(json!({ "amount": 1 })));
        assert_eq!(
            Upcast::event(&Current::Cleared),
            Upcast::to("Cleared", &json!({}))
        );
    }
}
