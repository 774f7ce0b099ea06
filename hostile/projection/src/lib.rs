//! A hostile projection: `handle` loops forever on a `Poison` event, sleeps 5 s
//! (blocked in a WASI clock pollable) on a `Sleep` event, and writes a document of
//! 900 KiB on a `Big` event (to fill the tenant's storage), and spins about a
//! millisecond per `Heavy` event, recording each batch's size in a document
//! `batch-{first position}`, so a test can see how the host sized its batches.
#![allow(clippy::too_many_arguments)] // generated bindings

wit_bindgen::generate!({ path: "../../wit", world: "projection" });

use cairn::plugin::documents;

struct Hostile;

impl Guest for Hostile {
    fn event_types() -> Vec<String> {
        Vec::new()
    }

    fn handle(events: Vec<RecordedEvent>) {
        if events.iter().any(|e| e.event_type == "Heavy") {
            let doc = format!("{{\"size\":{}}}", events.len());
            documents::put(&format!("batch-{}", events[0].position), doc.as_bytes());
        }
        for e in events {
            if e.event_type == "Heavy" {
                let mut spin = 0u64;
                for i in 0..1_000_000u64 {
                    spin = std::hint::black_box(spin.wrapping_add(i));
                }
                continue;
            }
            if e.event_type == "Poison" {
                loop {
                    std::hint::black_box(());
                }
            }
            if e.event_type == "Sleep" {
                std::thread::sleep(std::time::Duration::from_secs(5));
            }
            if e.event_type == "Big" {
                let big = format!("\"{}\"", "x".repeat(900 << 10));
                documents::put(&format!("big-{}", e.position), big.as_bytes());
                continue;
            }
            documents::put(&e.stream_id, br#"{"seen":true}"#);
        }
    }
}

export!(Hostile);
