//! Cairn host: an event store, a command pipeline and projections, running each
//! tenant's domain logic as sandboxed WebAssembly components.
//!
//! See ARCHITECTURE.md at the repository root for the code map and invariants.

pub mod api;
pub mod app;
pub mod commands;
pub mod error;
pub mod fleet;
pub mod log;
pub mod metrics;
pub mod plugins;
pub mod projection;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod strict_json;
pub mod tenancy;
pub mod vocab;
