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
    ) -> Result<Vec<wit::NewEvent>, wit::Rejection> {
        let state: A = load(&state);
        let decoded: A::Command = envelope::decode(&command.command_type, &command.payload)
            .map_err(|message| wit::Rejection {
                code: "invalid_command".into(),
                message,
            })?;
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
            Err(rejection) => Err(wit::Rejection {
                code: rejection.code,
                message: rejection.message,
            }),
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
