//! The `Aggregate` trait and the glue between it and the `aggregate` world.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope;

/// A domain refusal: the host answers it as 422 `rejected` with `domain_code` = `code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Machine-readable, snake_case (`insufficient_funds`).
    pub code: String,
    /// For a person.
    pub message: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}

impl Rejection {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Rejection {
        Rejection {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// What `decide` knows besides the state and the command. The time comes from the
/// host: `decide` must not read a clock of its own, so that it stays deterministic.
#[derive(Clone, Debug, Default)]
pub struct CommandContext {
    pub stream_id: String,
    /// Unix milliseconds, from the host clock.
    pub issued_at: u64,
}

/// A state machine over one stream. The host keeps the state (serialised as JSON),
/// folds events into it with `evolve`, and asks `decide` what a command does.
pub trait Aggregate: Default + Serialize + DeserializeOwned {
    /// Commands, as a serde enum in its default form: the variant name is the command type.
    type Command: DeserializeOwned;
    /// Events, as a serde enum in its default form: the variant name is the event type.
    type Event: Serialize + DeserializeOwned;

    /// Decides which events a command causes, or refuses it. Must be pure.
    fn decide(
        &self,
        command: Self::Command,
        context: &CommandContext,
    ) -> Result<Vec<Self::Event>, Rejection>;

    /// Applies one event to the state.
    fn evolve(&mut self, event: Self::Event);
}

/// Folds stored events, given as `(type, JSON data)`, into `state` as the host would,
/// for native tests: through the same decoding (as versions 1, 2, … of stream
/// `test-1`), so an event that does not decode panics here as it would trap there.
pub fn evolve_json<A, I, T>(state: &A, events: I) -> A
where
    A: Aggregate,
    I: IntoIterator<Item = (T, serde_json::Value)>,
    T: AsRef<str>,
{
    use crate::aggregate_bindings::cairn::plugin::types::RecordedEvent;
    let events = events
        .into_iter()
        .zip(1..)
        .map(|((event_type, data), version)| RecordedEvent {
            event_id: format!("test-1-{version}"),
            stream_id: "test-1".into(),
            version,
            position: version,
            event_type: event_type.as_ref().to_owned(),
            payload: serde_json::to_vec(&data).expect("a JSON value serialises"),
            metadata: b"{}".to_vec(),
            recorded_at: 0,
        })
        .collect();
    let state = glue::evolve::<A>(
        serde_json::to_vec(state).expect("the state serialises"),
        events,
    );
    serde_json::from_slice(&state).expect("the folded state decodes")
}

/// Implementations behind `export_aggregate!`.
pub mod glue {
    use super::*;
    use crate::aggregate_bindings::cairn::plugin::types as wit;

    fn load<A: Aggregate>(state: &[u8]) -> A {
        serde_json::from_slice(state).unwrap_or_else(|e| {
            panic!("the state given by the host does not decode as this aggregate's state: {e}")
        })
    }

    fn save<A: Aggregate>(state: &A) -> Vec<u8> {
        serde_json::to_vec(state).unwrap_or_else(|e| panic!("the state does not serialise: {e}"))
    }

    pub fn initial_state<A: Aggregate>() -> Vec<u8> {
        save(&A::default())
    }

    pub fn decide<A: Aggregate>(
        state: Vec<u8>,
        command: wit::Command,
    ) -> Result<Vec<wit::NewEvent>, wit::DecideError> {
        let state: A = load(&state);
        let decoded: A::Command = envelope::decode(&command.command_type, &command.payload)
            .map_err(wit::DecideError::InvalidCommand)?;
        let context = CommandContext {
            stream_id: command.stream_id,
            issued_at: command.issued_at,
        };
        match state.decide(decoded, &context) {
            Ok(events) => Ok(events
                .iter()
                .map(|event| {
                    let (event_type, payload) = envelope::encode(event)
                        .unwrap_or_else(|e| panic!("an event does not serialise: {e}"));
                    wit::NewEvent {
                        event_type,
                        payload,
                    }
                })
                .collect()),
            Err(rejection) => Err(wit::DecideError::Rejected(wit::Rejection {
                code: rejection.code,
                message: rejection.message,
            })),
        }
    }

    pub fn evolve<A: Aggregate>(state: Vec<u8>, events: Vec<wit::RecordedEvent>) -> Vec<u8> {
        let mut state: A = load(&state);
        for e in events {
            let event: A::Event =
                envelope::decode(&e.event_type, &e.payload).unwrap_or_else(|error| {
                    panic!(
                        "event {} of {} (version {}) does not decode: {error}",
                        e.event_type, e.stream_id, e.version
                    )
                });
            state.evolve(event);
        }
        save(&state)
    }
}

#[cfg(test)]
mod tests {
    use super::glue;
    use super::*;
    use crate::aggregate_bindings::cairn::plugin::types as wit;
    use serde::Deserialize;

    #[derive(Default, Serialize, Deserialize)]
    struct Counter {
        total: i64,
    }

    #[derive(Deserialize)]
    enum CounterCommand {
        Add { by: i64 },
        Reset,
    }

    #[derive(Serialize, Deserialize)]
    enum CounterEvent {
        Added { by: i64 },
        WasReset,
    }

    impl Aggregate for Counter {
        type Command = CounterCommand;
        type Event = CounterEvent;

        fn decide(
            &self,
            command: CounterCommand,
            context: &CommandContext,
        ) -> Result<Vec<CounterEvent>, Rejection> {
            match command {
                CounterCommand::Add { by } if by <= 0 => Err(Rejection::new(
                    "invalid_amount",
                    format!("{} at {}", context.stream_id, context.issued_at),
                )),
                CounterCommand::Add { by } => Ok(vec![CounterEvent::Added { by }]),
                CounterCommand::Reset => Ok(vec![CounterEvent::WasReset]),
            }
        }

        fn evolve(&mut self, event: CounterEvent) {
            match event {
                CounterEvent::Added { by } => self.total += by,
                CounterEvent::WasReset => self.total = 0,
            }
        }
    }

    fn command(command_type: &str, payload: &str) -> wit::Command {
        wit::Command {
            stream_id: "counter-1".into(),
            command_type: command_type.into(),
            payload: payload.as_bytes().to_vec(),
            issued_at: 42,
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
            recorded_at: 0,
        }
    }

    #[test]
    fn commands_become_typed_events() {
        let state = glue::initial_state::<Counter>();
        assert_eq!(state, br#"{"total":0}"#);
        let events = glue::decide::<Counter>(state.clone(), command("Add", r#"{"by":2}"#))
            .unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(events[0].event_type, "Added");
        assert_eq!(events[0].payload, br#"{"by":2}"#);
        let events = glue::decide::<Counter>(state, command("Reset", "null"))
            .unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(
            (events[0].event_type.as_str(), events[0].payload.as_slice()),
            ("WasReset", b"{}".as_slice())
        );
    }

    #[test]
    fn the_context_comes_from_the_command() {
        let state = glue::initial_state::<Counter>();
        let wit::DecideError::Rejected(rejection) =
            glue::decide::<Counter>(state, command("Add", r#"{"by":0}"#)).unwrap_err()
        else {
            panic!("a domain rejection expected");
        };
        assert_eq!(
            (rejection.code.as_str(), rejection.message.as_str()),
            ("invalid_amount", "counter-1 at 42")
        );
    }

    #[test]
    fn undecodable_commands_are_invalid_not_rejected() {
        let state = glue::initial_state::<Counter>();
        for (command_type, payload) in [("Add", "{}"), ("Explode", "{}"), ("Add", "not json")] {
            let error =
                glue::decide::<Counter>(state.clone(), command(command_type, payload)).unwrap_err();
            assert!(
                matches!(error, wit::DecideError::InvalidCommand(_)),
                "{command_type} {payload}: {error:?}"
            );
        }
    }

    #[test]
    fn evolve_folds_a_batch() {
        let state = glue::evolve::<Counter>(
            glue::initial_state::<Counter>(),
            vec![
                recorded(1, "Added", r#"{"by":5}"#),
                recorded(2, "WasReset", "{}"),
                recorded(3, "Added", r#"{"by":7}"#),
            ],
        );
        assert_eq!(state, br#"{"total":7}"#);
    }

    #[test]
    fn evolve_json_folds_stored_json() {
        let state = evolve_json(
            &Counter { total: 1 },
            [
                ("Added", serde_json::json!({ "by": 5 })),
                ("Added", serde_json::json!({ "by": 2 })),
            ],
        );
        assert_eq!(state.total, 8);
    }

    #[test]
    #[should_panic(expected = "event Added of test-1 (version 2) does not decode")]
    fn evolve_json_panics_on_undecodable_events() {
        evolve_json(
            &Counter::default(),
            [
                ("WasReset", serde_json::Value::Null),
                ("Added", serde_json::json!({ "amount": 5 })),
            ],
        );
    }

    #[test]
    #[should_panic(expected = "event Exploded of counter-1 (version 1) does not decode")]
    fn undecodable_events_trap() {
        glue::evolve::<Counter>(
            glue::initial_state::<Counter>(),
            vec![recorded(1, "Exploded", "{}")],
        );
    }
}
