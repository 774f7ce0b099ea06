//! A component that imports an interface the host does not provide. The host must
//! refuse it at upload and name the interface.
#![allow(clippy::too_many_arguments)] // generated bindings

wit_bindgen::generate!({ path: "wit", world: "bad-aggregate", generate_all });

struct Hostile;

impl Guest for Hostile {
    fn initial_state() -> Vec<u8> {
        evil::host::backdoor::steal()
    }

    fn decide(_state: Vec<u8>, _command: Command) -> Result<Vec<NewEvent>, Rejection> {
        Ok(Vec::new())
    }

    fn evolve(state: Vec<u8>, _events: Vec<RecordedEvent>) -> Vec<u8> {
        state
    }
}

export!(Hostile);
