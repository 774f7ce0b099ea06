//! Process-wide counters, rendered as Prometheus text at `/metrics`.
//!
//! Plain atomics: a counter bump must cost nothing on the command path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Metrics {
    pub commands: AtomicU64,
    pub commands_rejected: AtomicU64,
    pub command_conflict_retries: AtomicU64,
    pub plugin_failures: AtomicU64,
    pub events_appended: AtomicU64,
    pub snapshots_written: AtomicU64,
    /// Streams whose snapshots the background warmer built (`commands::warm`).
    pub streams_warmed: AtomicU64,
    pub state_cache_hits: AtomicU64,
    pub state_cache_misses: AtomicU64,
    /// Sum and count of aggregate state loads (cache or snapshot + tail + evolve).
    pub aggregate_load_micros: AtomicU64,
    pub aggregate_loads: AtomicU64,
}

/// A per-tenant series: name, help text, and how to read it from the usage counters.
type UsageSeries = (&'static str, &'static str, fn(&crate::gate::Usage) -> u64);

/// Per-tenant usage counters and storage, labelled by tenant. `gates` pairs each
/// tenant's gate with the bytes it stores.
pub fn render_usage(
    gates: &[(
        crate::store::TenantId,
        std::sync::Arc<crate::gate::TenantGate>,
        u64,
    )],
) -> String {
    let mut out = String::new();
    for (name, help) in [
        (
            "cairn_tenant_stored_bytes",
            "Bytes a tenant stores: events, documents, snapshots, plugins and artifacts.",
        ),
        (
            "cairn_tenant_max_stored_bytes",
            "A tenant's storage quota (max_stored_bytes).",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (tenant, gate, stored) in gates {
            let value = if name.ends_with("max_stored_bytes") {
                gate.limits.max_stored_bytes
            } else {
                *stored
            };
            let _ = writeln!(out, "{name}{{tenant=\"{tenant}\"}} {value}");
        }
    }
    let series: [UsageSeries; 6] = [
        ("cairn_tenant_commands_total", "Commands per tenant.", |u| {
            u.commands.load(Relaxed)
        }),
        (
            "cairn_tenant_plugin_calls_total",
            "Plugin calls per tenant.",
            |u| u.plugin_calls.load(Relaxed),
        ),
        (
            "cairn_tenant_plugin_micros_total",
            "Plugin time per tenant, in microseconds.",
            |u| u.plugin_micros.load(Relaxed),
        ),
        (
            "cairn_tenant_traps_total",
            "Plugin traps per tenant.",
            |u| u.traps.load(Relaxed),
        ),
        (
            "cairn_tenant_limit_hits_total",
            "Plugin deadline and memory limit hits per tenant.",
            |u| u.deadline_hits.load(Relaxed) + u.memory_hits.load(Relaxed),
        ),
        (
            "cairn_tenant_rate_limited_total",
            "Commands refused by the rate limit per tenant.",
            |u| u.rate_limited.load(Relaxed),
        ),
    ];
    for (name, help, read) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (tenant, gate, _) in gates {
            let _ = writeln!(out, "{name}{{tenant=\"{tenant}\"}} {}", read(&gate.usage));
        }
    }
    out
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "cairn_commands_total",
            "Commands handled.",
            self.commands.load(Relaxed),
        );
        counter(
            "cairn_commands_rejected_total",
            "Commands rejected by the domain.",
            self.commands_rejected.load(Relaxed),
        );
        counter(
            "cairn_command_conflict_retries_total",
            "Commands retried after a concurrent append.",
            self.command_conflict_retries.load(Relaxed),
        );
        counter(
            "cairn_plugin_failures_total",
            "Plugin calls that trapped, ran out of time or memory.",
            self.plugin_failures.load(Relaxed),
        );
        counter(
            "cairn_events_appended_total",
            "Events appended.",
            self.events_appended.load(Relaxed),
        );
        counter(
            "cairn_snapshots_written_total",
            "Aggregate snapshots written.",
            self.snapshots_written.load(Relaxed),
        );
        counter(
            "cairn_streams_warmed_total",
            "Streams whose snapshots were built in the background after an activation or an import.",
            self.streams_warmed.load(Relaxed),
        );
        counter(
            "cairn_state_cache_hits_total",
            "Aggregate state loads served from the cache.",
            self.state_cache_hits.load(Relaxed),
        );
        counter(
            "cairn_state_cache_misses_total",
            "Aggregate state loads that read a snapshot or the stream.",
            self.state_cache_misses.load(Relaxed),
        );
        let micros = self.aggregate_load_micros.load(Relaxed);
        let loads = self.aggregate_loads.load(Relaxed);
        let _ = write!(
            out,
            "# HELP cairn_aggregate_load_seconds Time to load aggregate state.\n\
             # TYPE cairn_aggregate_load_seconds summary\n\
             cairn_aggregate_load_seconds_sum {}\ncairn_aggregate_load_seconds_count {loads}\n",
            micros as f64 / 1e6
        );
        out
    }
}
