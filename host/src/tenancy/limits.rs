//! Per-tenant limits: the defaults, the overrides a tenant is created with, and their
//! validation. The runtime and the API read them; nothing here enforces anything.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::runtime::CallLimits;

/// The most `max_concurrent_calls` a tenant may be given. Each call slot holds at most
/// two of the runtime's 240 instance slots, so no tenant can hold more than 96 of
/// them: however a tenant's calls block, at least 144 are left to everyone else.
pub const MAX_CONCURRENT_CALLS: u32 = 48;

/// The default `requests_per_second`: far above what one tenant's commands reach on
/// the machines measured (BENCHMARKS.md), so only a flood meets it.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 10_000;

/// A tenant's limits. Every field has a default; a tenant is created with, and a
/// `PATCH` changes, only the fields given. The ranges are checked (400 `bad_request`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest plugin upload, in bytes, not counting its data segments (the initial
    /// contents of its memories, which must fit `memory_bytes`): the body may be up to
    /// `memory_bytes` larger.
    #[schema(minimum = 1024, maximum = 268435456)]
    pub max_plugin_bytes: u64,
    /// Largest JSON request body, in bytes.
    #[schema(minimum = 1024, maximum = 67108864)]
    pub max_body_bytes: u64,
    /// Linear memory one plugin instance may use, in bytes (all its memories together).
    #[schema(minimum = 1048576, maximum = 1073741824)]
    pub memory_bytes: u64,
    /// CPU time one plugin call may take, in milliseconds (epoch deadline). A call's
    /// wall time, blocked WASI calls included, is bounded at ten times this (at least
    /// one second).
    #[schema(minimum = 10, maximum = 60000)]
    pub call_timeout_ms: u64,
    /// Plugin calls of this tenant running at once; more wait their turn.
    #[schema(minimum = 1, maximum = 48)]
    pub max_concurrent_calls: u32,
    /// Commands per second; `null` (the default) means unlimited. Excess is a 429.
    #[schema(minimum = 1)]
    pub commands_per_second: Option<u32>,
    /// Most events one verification of a new aggregate or upcaster version replays;
    /// beyond it a deterministic sample of streams is checked, and the report says so.
    #[schema(minimum = 1, maximum = 1000000000)]
    pub verify_max_events: u64,
    /// CPU time a plugin upload may take to compile, in milliseconds; past it (or past
    /// ten times as much wall time, at least a second, as the compiler runs at idle
    /// priority) the compiler is killed and the upload refused.
    #[schema(minimum = 1, maximum = 600000)]
    pub compile_timeout_ms: u64,
    /// Most bytes the tenant may store: event payloads and metadata, projection
    /// documents, snapshots, plugin uploads and their compiled artifacts. Appends and
    /// uploads past it answer 507 `quota_exceeded`; a projection build that would pass
    /// it fails with that message; snapshots are skipped.
    #[schema(minimum = 1048576, maximum = 1099511627776u64)]
    pub max_stored_bytes: u64,
    /// Most plugin versions (of every name together) the tenant may upload.
    #[schema(minimum = 1, maximum = 100000)]
    pub max_plugin_versions: u64,
    /// Longest one aggregate state load may take, in milliseconds: every `evolve`
    /// call has `call_timeout_ms`, and a long history takes as many calls as it needs
    /// within this. Past it the command answers 503 `load_incomplete`, with its
    /// progress saved as a snapshot for the retry.
    #[schema(minimum = 100, maximum = 600000)]
    pub load_timeout_ms: u64,
    /// The tenant's share of plugin CPU under contention, relative to other tenants:
    /// it holds `cores × cpu_weight` CPU turns (see `gate.rs`).
    #[schema(minimum = 1, maximum = 8)]
    pub cpu_weight: u32,
    /// Live subscribers (`/events/live`) of this tenant at once; more answer 429. Each
    /// holds a connection and a place in the tenant's fan-out.
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_subscribers: u32,
    /// Requests per second made with this tenant's token, on every route (unknown
    /// routes and errors included), with a second's worth of burst; past it 429
    /// `over_limit` with `Retry-After`.
    #[schema(minimum = 1, maximum = 1000000)]
    pub requests_per_second: u32,
    /// Requests of this tenant in flight at once (live subscriptions apart, which
    /// `max_subscribers` bounds): its share of the host's connections. One more is
    /// refused at once with 429 `over_limit`, never queued.
    #[schema(minimum = 1, maximum = 4096)]
    pub max_concurrent_requests: u32,
    /// Bulk imports (`POST …/import`) of this tenant in flight at once; one more is
    /// refused at once with 429 `over_limit`.
    #[schema(minimum = 1, maximum = 64)]
    pub max_concurrent_imports: u32,
    /// CPU time the tenant's uploads may spend compiling in any hour, in
    /// milliseconds; while the last hour's compiles reach it, uploads answer 429
    /// `over_limit` with `Retry-After` before compiling.
    #[schema(minimum = 1, maximum = 36000000)]
    pub compile_cpu_ms_per_hour: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_plugin_bytes: 16 << 20,
            max_body_bytes: 1 << 20,
            memory_bytes: 64 << 20,
            call_timeout_ms: 100,
            max_concurrent_calls: 16,
            commands_per_second: None,
            verify_max_events: 1_000_000,
            compile_timeout_ms: 60_000,
            max_stored_bytes: 10 << 30,
            max_plugin_versions: 1_000,
            load_timeout_ms: 30_000,
            cpu_weight: 1,
            max_subscribers: 1000,
            requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
            max_concurrent_requests: 128,
            max_concurrent_imports: 2,
            compile_cpu_ms_per_hour: 600_000,
        }
    }
}

impl Limits {
    /// Parses limits given at tenant creation; anything absent takes the default.
    pub fn from_json(value: Option<&serde_json::Value>) -> Result<Limits, ApiError> {
        let limits: Limits = match value {
            None | Some(serde_json::Value::Null) => Limits::default(),
            // serde would read a struct from an array too (`[]` as all defaults).
            Some(value) if !value.is_object() => {
                return Err(ApiError::bad_request(
                    "invalid limits: `limits` must be an object",
                ));
            }
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid limits: {e}")))?,
        };
        limits.validate()?;
        Ok(limits)
    }

    fn validate(&self) -> Result<(), ApiError> {
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(ApiError::bad_request(format!("invalid limits: {what}")))
            }
        };
        check(
            (1024..=256 << 20).contains(&self.max_plugin_bytes),
            "max_plugin_bytes must be between 1 KiB and 256 MiB",
        )?;
        check(
            (1024..=64 << 20).contains(&self.max_body_bytes),
            "max_body_bytes must be between 1 KiB and 64 MiB",
        )?;
        check(
            (1 << 20..=1 << 30).contains(&self.memory_bytes),
            "memory_bytes must be between 1 MiB and 1 GiB",
        )?;
        check(
            (10..=60_000).contains(&self.call_timeout_ms),
            "call_timeout_ms must be between 10 and 60000",
        )?;
        check(
            (1..=MAX_CONCURRENT_CALLS).contains(&self.max_concurrent_calls),
            "max_concurrent_calls must be between 1 and 48",
        )?;
        check(
            self.commands_per_second.is_none_or(|r| r >= 1),
            "commands_per_second must be at least 1",
        )?;
        check(
            (1..=1_000_000_000).contains(&self.verify_max_events),
            "verify_max_events must be between 1 and 1000000000",
        )?;
        check(
            (1..=600_000).contains(&self.compile_timeout_ms),
            "compile_timeout_ms must be between 1 and 600000",
        )?;
        check(
            (1 << 20..=1 << 40).contains(&self.max_stored_bytes),
            "max_stored_bytes must be between 1 MiB and 1 TiB",
        )?;
        check(
            (1..=100_000).contains(&self.max_plugin_versions),
            "max_plugin_versions must be between 1 and 100000",
        )?;
        check(
            (100..=600_000).contains(&self.load_timeout_ms),
            "load_timeout_ms must be between 100 and 600000",
        )?;
        check(
            (1..=8).contains(&self.cpu_weight),
            "cpu_weight must be between 1 and 8",
        )?;
        check(
            (1..=1_000_000).contains(&self.max_subscribers),
            "max_subscribers must be between 1 and 1000000",
        )?;
        check(
            (1..=1_000_000).contains(&self.requests_per_second),
            "requests_per_second must be between 1 and 1000000",
        )?;
        check(
            (1..=4096).contains(&self.max_concurrent_requests),
            "max_concurrent_requests must be between 1 and 4096",
        )?;
        check(
            (1..=64).contains(&self.max_concurrent_imports),
            "max_concurrent_imports must be between 1 and 64",
        )?;
        check(
            (1..=36_000_000).contains(&self.compile_cpu_ms_per_hour),
            "compile_cpu_ms_per_hour must be between 1 and 36000000",
        )
    }

    pub fn call_limits(&self) -> CallLimits {
        CallLimits::new(
            self.memory_bytes as usize,
            std::time::Duration::from_millis(self.call_timeout_ms),
        )
    }
}
