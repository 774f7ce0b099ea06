//! A counter built against the frozen 0.1.0 contract (`wit/v0.1.0`), without the SDK,
//! the way a component uploaded before 0.2.0 was made: `decide` refuses with a plain
//! rejection, and the reserved code `invalid_command` says the command could not be
//! read. `tests/compat.rs` checks that the host still serves it, and answers those two
//! refusals as 422 `rejected` and 400 `invalid_command`.
#![allow(clippy::too_many_arguments)] // generated bindings

wit_bindgen::generate!({ path: "../../wit/v0.1.0", world: "aggregate" });

use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Counter {
    total: i64,
}

#[derive(Deserialize)]
struct Add {
    by: i64,
}

fn state_of(bytes: &[u8]) -> Counter {
    serde_json::from_slice(bytes).expect("the host gives back the state it was given")
}

fn rejection(code: &str, message: String) -> Rejection {
    Rejection {
        code: code.to_owned(),
        message,
    }
}

struct Component;

impl Guest for Component {
    fn initial_state() -> Vec<u8> {
        serde_json::to_vec(&Counter::default()).expect("serialises")
    }

    fn decide(_state: Vec<u8>, command: Command) -> Result<Vec<NewEvent>, Rejection> {
        if command.command_type != "Add" {
            return Err(rejection(
                "invalid_command",
                format!("unknown command type {:?}", command.command_type),
            ));
        }
        let add: Add = serde_json::from_slice(&command.payload)
            .map_err(|e| rejection("invalid_command", format!("Add does not decode: {e}")))?;
        if add.by <= 0 {
            return Err(rejection(
                "invalid_amount",
                format!("add a positive number, not {}", add.by),
            ));
        }
        Ok(vec![NewEvent {
            event_type: "Added".to_owned(),
            payload: command.payload,
        }])
    }

    fn evolve(state: Vec<u8>, events: Vec<RecordedEvent>) -> Vec<u8> {
        let mut counter = state_of(&state);
        for event in events {
            if event.event_type == "Added" {
                let add: Add = serde_json::from_slice(&event.payload).expect("Added decodes");
                counter.total += add.by;
            }
        }
        serde_json::to_vec(&counter).expect("serialises")
    }
}

export!(Component);
