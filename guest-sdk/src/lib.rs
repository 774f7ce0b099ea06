//! # cairn-guest: write Cairn plugins in plain Rust
//!
//! A Cairn plugin is a WebAssembly component (`wasm32-wasip2`) that implements one of
//! the two worlds of `cairn:plugin@0.1.0` (see `wit/cairn.wit`). This crate hides the
//! bindings: implement [`Aggregate`] or [`Projection`] on your type and call one macro.
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
//! Build with `cargo build --target wasm32-wasip2 --release` and upload
//! `target/wasm32-wasip2/release/<crate>.wasm`.

mod aggregate;
mod documents;
mod envelope;
mod projection;

pub use aggregate::{Aggregate, CommandContext, Rejection};
pub use documents::Documents;
pub use projection::{Event, Projection};

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

/// What the export macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::aggregate::glue as aggregate;
    pub use crate::projection::glue as projection;
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
                $crate::aggregate_bindings::cairn::plugin::types::Rejection,
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
