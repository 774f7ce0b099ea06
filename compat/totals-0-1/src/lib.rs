//! A projection built against the frozen 0.1.0 contract (`wit/v0.1.0`), without the
//! SDK: it imports `cairn:plugin/documents@0.1.0`, which the host must still provide.
//! One document per stream, `{"total"}`, the sum of its `Added` events' `by`.
#![allow(clippy::too_many_arguments)] // generated bindings

wit_bindgen::generate!({ path: "../../wit/v0.1.0", world: "projection" });

use cairn::plugin::documents;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Total {
    total: i64,
}

#[derive(Deserialize)]
struct Added {
    by: i64,
}

struct Component;

impl Guest for Component {
    fn event_types() -> Vec<String> {
        vec!["Added".to_owned()]
    }

    fn handle(events: Vec<RecordedEvent>) {
        for event in events {
            let added: Added = serde_json::from_slice(&event.payload).expect("Added decodes");
            let mut doc: Total = documents::get(&event.stream_id)
                .map(|bytes| serde_json::from_slice(&bytes).expect("our own document"))
                .unwrap_or_default();
            doc.total += added.by;
            let bytes = serde_json::to_vec(&doc).expect("serialises");
            documents::put(&event.stream_id, &bytes);
        }
    }
}

export!(Component);
