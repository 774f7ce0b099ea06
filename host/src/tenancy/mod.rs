//! Tenancy: who is calling and what they may spend. `tenant.rs` owns tenants, their
//! tokens and the operator token; `limits.rs` a tenant's limits, their defaults and
//! validation; `gate.rs` each tenant's admission and accounting (call slots, CPU
//! turns, command rate, the storage quota every append passes through, usage, plugin
//! log lines). Services ask here before they spend a tenant's resources.

pub mod admission;
pub mod compile_budget;
pub mod gate;
pub mod limits;
pub mod tenant;
