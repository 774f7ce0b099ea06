//! An upcaster that multiplies what it reads: each stored `Boom { copies, bytes }`
//! becomes `copies` events `Shard { i, pad }` with `bytes` of padding each, so one page
//! of the log can ask a reader for hundreds of megabytes. Used by `tests/containment.rs`
//! to show that an upcaster's output is bounded per stored event and per page.

use cairn_guest::{Event, Upcast, Upcaster};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
pub struct Boom {
    copies: u32,
    #[serde(default)]
    bytes: u32,
}

#[derive(Debug, Deserialize)]
pub enum StoredEvent {
    Boom(Boom),
}

pub struct Multiplier;

impl Upcaster for Multiplier {
    type Event = StoredEvent;

    fn event_types() -> Vec<&'static str> {
        vec!["Boom"]
    }

    fn upcast(event: Event<StoredEvent>) -> Vec<Upcast> {
        let StoredEvent::Boom(boom) = event.data;
        let pad = "x".repeat(boom.bytes as usize);
        (0..boom.copies)
            .map(|i| Upcast::to("Shard", &json!({ "i": i, "pad": pad })))
            .collect()
    }
}

cairn_guest::export_upcaster!(Multiplier);
