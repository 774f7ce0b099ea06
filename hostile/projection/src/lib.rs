//! A hostile projection: `handle` loops forever on a `Poison` event.
#![allow(clippy::too_many_arguments)] // generated bindings

wit_bindgen::generate!({ path: "../../wit", world: "projection" });

use cairn::plugin::documents;

struct Hostile;

impl Guest for Hostile {
    fn event_types() -> Vec<String> {
        Vec::new()
    }

    fn handle(events: Vec<RecordedEvent>) {
        for e in events {
            if e.event_type == "Poison" {
                loop {
                    std::hint::black_box(());
                }
            }
            documents::put(&e.stream_id, br#"{"seen":true}"#);
        }
    }
}

export!(Hostile);
