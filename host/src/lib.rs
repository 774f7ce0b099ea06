//! Cairn host: an event store, a command pipeline and projections, running each
//! tenant's domain logic as sandboxed WebAssembly components.
//!
//! See ARCHITECTURE.md at the repository root for the code map and invariants.

pub mod admission;
pub mod api;
pub mod app;
pub mod appender;
pub mod commands;
pub mod compile_budget;
pub mod error;
pub mod fair_batch;
pub mod fleet;
pub mod gate;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod plugins;
pub mod projection;
pub mod runtime;
pub mod serve;
pub mod state_cache;
pub mod store;
pub mod strict_json;
pub mod tenant;
