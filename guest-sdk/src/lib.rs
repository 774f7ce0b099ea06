//! # cairn-guest: write Cairn plugins in plain Rust
//!
//! A Cairn plugin is a WebAssembly component (`wasm32-wasip2`) that implements one of
//! the three worlds of `cairn:plugin@0.2.0` (see `wit/cairn.wit`): an aggregate, a
//! projection or an upcaster. This crate hides the bindings: implement [`Aggregate`],
//! [`Projection`] or [`Upcaster`] on your type and call one macro.
//!
//! Commands and events are ordinary serde enums in serde's default (externally
//! tagged) form, so no serde attribute is needed: the variant name is the command or
//! event type, its fields are the JSON payload. State is serialised as JSON, so the
//! host can show it.
//!
//! ## An aggregate
//!
//! ```
//! use cairn_guest::{Aggregate, CommandContext, Rejection};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! pub struct Counter {
//!     total: i64,
//! }
//!
//! #[derive(Deserialize)]
//! pub enum CounterCommand {
//!     Add { by: i64 },
//!     Reset,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! pub enum CounterEvent {
//!     Added { by: i64 },
//!     WasReset,
//! }
//!
//! impl Aggregate for Counter {
//!     type Command = CounterCommand;
//!     type Event = CounterEvent;
//!
//!     fn decide(&self, command: CounterCommand, _: &CommandContext) -> Result<Vec<CounterEvent>, Rejection> {
//!         match command {
//!             CounterCommand::Add { by } if by <= 0 => {
//!                 Err(Rejection::new("invalid_amount", "add a positive number"))
//!             }
//!             CounterCommand::Add { by } => Ok(vec![CounterEvent::Added { by }]),
//!             CounterCommand::Reset => Ok(vec![CounterEvent::WasReset]),
//!         }
//!     }
//!
//!     fn evolve(&mut self, event: CounterEvent) {
//!         match event {
//!             CounterEvent::Added { by } => self.total += by,
//!             CounterEvent::WasReset => self.total = 0,
//!         }
//!     }
//! }
//!
//! cairn_guest::export_aggregate!(Counter);
//!
//! // Plugins test natively, without the host:
//! let counter = Counter::default();
//! let events = counter.decide(CounterCommand::Add { by: 2 }, &CommandContext::default()).unwrap();
//! assert!(matches!(events[0], CounterEvent::Added { by: 2 }));
//! ```
//!
//! The host sends `{"type": "Add", "payload": {"by": 2}}` as command type `Add` with
//! payload `{"by": 2}`; the event `CounterEvent::Added { by: 2 }` is stored as type
//! `Added` with data `{"by": 2}`.
//!
//! ## A projection
//!
//! ```
//! use cairn_guest::{Documents, Event, Projection};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! pub enum CounterEvent {
//!     Added { by: i64 },
//!     WasReset,
//! }
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Total {
//!     total: i64,
//! }
//!
//! pub struct Totals;
//!
//! impl Projection for Totals {
//!     type Event = CounterEvent;
//!
//!     fn event_types() -> Vec<&'static str> {
//!         vec!["Added", "WasReset"]
//!     }
//!
//!     fn handle(event: Event<CounterEvent>, docs: &mut Documents) {
//!         let mut doc: Total = docs.get(&event.stream_id).unwrap_or_default();
//!         match event.data {
//!             CounterEvent::Added { by } => doc.total += by,
//!             CounterEvent::WasReset => doc.total = 0,
//!         }
//!         docs.put(&event.stream_id, &doc);
//!     }
//! }
//!
//! cairn_guest::export_projection!(Totals);
//!
//! let mut docs = Documents::in_memory();
//! Totals::handle(Event::for_test("counter-1", 1, CounterEvent::Added { by: 5 }), &mut docs);
//! assert_eq!(docs.get::<Total>("counter-1").unwrap().total, 5);
//! ```
//!
//! ## An upcaster
//!
//! When an event's shape changes, the stored events keep the old one. An upcaster
//! rewrites them on the way out, so the new code reads only the new shape. Here
//! `Added` was first stored as `{"by": 2}` and is now `{"amount": 2}`:
//!
//! ```
//! use cairn_guest::{Event, Upcast, Upcaster};
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! /// `Added` as it has been stored, in either shape.
//! #[derive(Deserialize)]
//! #[serde(untagged)]
//! pub enum StoredAdded {
//!     Amount { amount: i64 },
//!     By { by: i64 },
//! }
//!
//! #[derive(Deserialize)]
//! pub enum Stored {
//!     Added(StoredAdded),
//! }
//!
//! pub struct AddedAsAmount;
//!
//! impl Upcaster for AddedAsAmount {
//!     type Event = Stored;
//!
//!     fn event_types() -> Vec<&'static str> {
//!         vec!["Added"]
//!     }
//!
//!     fn upcast(event: Event<Stored>) -> Vec<Upcast> {
//!         match event.data {
//!             Stored::Added(StoredAdded::By { by }) => {
//!                 vec![Upcast::to("Added", &json!({ "amount": by }))]
//!             }
//!             Stored::Added(StoredAdded::Amount { .. }) => vec![Upcast::keep()],
//!         }
//!     }
//! }
//!
//! cairn_guest::export_upcaster!(AddedAsAmount);
//!
//! // Test with stored JSON, as the host would run it:
//! let upcasted = cairn_guest::upcast_json::<AddedAsAmount>("Added", json!({ "by": 2 }));
//! assert_eq!(upcasted, [("Added".to_owned(), json!({ "amount": 2 }))]);
//! ```
//!
//! Each stored event becomes zero or more events: `vec![Upcast::keep()]` leaves it as
//! it is, `Upcast::to(type, &payload)` (or [`Upcast::event`] with a serde enum) makes a
//! new one, an empty list drops it. An event of a listed type that does not decode as
//! `Upcaster::Event` traps, with the decoding error as the message: the host then
//! refuses the version whose verification met it.
//!
//! ## Determinism
//!
//! `decide`, `evolve` and `upcast` must be pure: the host replays history through a
//! new version to verify it, and folds it again for reads in the past. So in aggregate
//! and upcaster calls the host answers WASI's clocks and random itself, and
//! `SystemTime::now()`, `Instant::now()` and random bytes give:
//!
//! - the wall clock: in `decide`, the command's `issued_at`; in `evolve` and `upcast`,
//!   the `recorded_at` of the first event of the batch;
//! - the monotonic clock: starts at zero and advances one microsecond per reading;
//! - random bytes (secure and insecure alike): from a generator seeded by the command
//!   id (or, without one, the stream and its version) in `decide`, and by the stream
//!   and the first event's version in `evolve` and `upcast`.
//!
//! Projections get the same, with the wall clock at the batch's last `recorded_at`.
//! Never derive state from these in `evolve`: how events are batched is the host's
//! choice, so the same history could fold to different states. Take times from
//! [`CommandContext::issued_at`] in `decide` and put them in the events.
//!
//! Build with `cargo build --target wasm32-wasip2 --release` and upload
//! `target/wasm32-wasip2/release/<crate>.wasm`.

mod aggregate;
mod documents;
mod envelope;
mod projection;
mod upcaster;

pub use aggregate::{Aggregate, CommandContext, Rejection, evolve_json};
pub use documents::Documents;
pub use projection::{Event, Metadata, Projection};
pub use upcaster::{Upcast, Upcaster, upcast_json};

/// Bindings of the `aggregate` world (generated; used by [`export_aggregate!`]).
#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated code
pub mod aggregate_bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "aggregate",
        pub_export_macro: true,
        export_macro_name: "__cairn_export_aggregate_world",
        default_bindings_module: "cairn_guest::aggregate_bindings",
    });
}

/// Bindings of the `projection` world (generated; used by [`export_projection!`]).
#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated code
pub mod projection_bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "projection",
        pub_export_macro: true,
        export_macro_name: "__cairn_export_projection_world",
        default_bindings_module: "cairn_guest::projection_bindings",
    });
}

/// Bindings of the `upcaster` world (generated; used by [`export_upcaster!`]).
#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated code
pub mod upcaster_bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "upcaster",
        pub_export_macro: true,
        export_macro_name: "__cairn_export_upcaster_world",
        default_bindings_module: "cairn_guest::upcaster_bindings",
    });
}

/// What the export macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::aggregate::glue as aggregate;
    pub use crate::projection::glue as projection;
    pub use crate::upcaster::glue as upcaster;
}

/// Exports a type implementing [`Aggregate`] as the plugin's `aggregate` world.
/// Call it once per plugin crate.
#[macro_export]
macro_rules! export_aggregate {
    ($aggregate:ty) => {
        #[doc(hidden)]
        pub struct __CairnAggregateExport;

        impl $crate::aggregate_bindings::Guest for __CairnAggregateExport {
            fn initial_state() -> ::std::vec::Vec<u8> {
                $crate::__private::aggregate::initial_state::<$aggregate>()
            }

            fn decide(
                state: ::std::vec::Vec<u8>,
                command: $crate::aggregate_bindings::cairn::plugin::types::Command,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::aggregate_bindings::cairn::plugin::types::NewEvent>,
                $crate::aggregate_bindings::cairn::plugin::types::DecideError,
            > {
                $crate::__private::aggregate::decide::<$aggregate>(state, command)
            }

            fn evolve(
                state: ::std::vec::Vec<u8>,
                events: ::std::vec::Vec<
                    $crate::aggregate_bindings::cairn::plugin::types::RecordedEvent,
                >,
            ) -> ::std::vec::Vec<u8> {
                $crate::__private::aggregate::evolve::<$aggregate>(state, events)
            }
        }

        $crate::aggregate_bindings::__cairn_export_aggregate_world!(
            __CairnAggregateExport with_types_in $crate::aggregate_bindings
        );
    };
}

/// Exports a type implementing [`Projection`] as the plugin's `projection` world.
/// Call it once per plugin crate.
#[macro_export]
macro_rules! export_projection {
    ($projection:ty) => {
        #[doc(hidden)]
        pub struct __CairnProjectionExport;

        impl $crate::projection_bindings::Guest for __CairnProjectionExport {
            fn event_types() -> ::std::vec::Vec<::std::string::String> {
                $crate::__private::projection::event_types::<$projection>()
            }

            fn handle(
                events: ::std::vec::Vec<
                    $crate::projection_bindings::cairn::plugin::types::RecordedEvent,
                >,
            ) {
                $crate::__private::projection::handle::<$projection>(events)
            }
        }

        $crate::projection_bindings::__cairn_export_projection_world!(
            __CairnProjectionExport with_types_in $crate::projection_bindings
        );
    };
}

/// Exports a type implementing [`Upcaster`] as the plugin's `upcaster` world.
/// Call it once per plugin crate.
#[macro_export]
macro_rules! export_upcaster {
    ($upcaster:ty) => {
        #[doc(hidden)]
        pub struct __CairnUpcasterExport;

        impl $crate::upcaster_bindings::Guest for __CairnUpcasterExport {
            fn event_types() -> ::std::vec::Vec<::std::string::String> {
                $crate::__private::upcaster::event_types::<$upcaster>()
            }

            fn upcast(
                events: ::std::vec::Vec<
                    $crate::upcaster_bindings::cairn::plugin::types::RecordedEvent,
                >,
            ) -> ::std::vec::Vec<
                ::std::vec::Vec<$crate::upcaster_bindings::cairn::plugin::types::NewEvent>,
            > {
                $crate::__private::upcaster::upcast::<$upcaster>(events)
            }
        }

        $crate::upcaster_bindings::__cairn_export_upcaster_world!(
            __CairnUpcasterExport with_types_in $crate::upcaster_bindings
        );
    };
}
