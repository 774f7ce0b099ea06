//! Process-wide counters, rendered as Prometheus text at `/metrics`.
//!
//! Plain atomics: a counter bump must cost nothing on the command path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (Prometheus `le`).
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram: plain atomics, so an observation costs a few relaxed adds.
#[derive(Default)]
pub struct Histogram {
    /// Observations per bucket (the last one is past every bound); cumulated when
    /// rendered.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(took.as_micros() as u64, Relaxed);
    }

    /// The series of one histogram; `labels` is `key="value",…` (already escaped).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulated = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulated += count.load(Relaxed);
            let bound = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulated}");
        }
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulated}");
    }
}

/// A label value as Prometheus text needs it (names and ids here are already plain,
/// but a stream id may hold a quote or a backslash).
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

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
    /// Group commits: transactions the appender committed, the append requests they
    /// carried, and the time each took (`appender.rs`). Requests over transactions is
    /// the batch size; a small one under load means commands reach the writer slowly.
    pub append_transactions: AtomicU64,
    pub append_requests: AtomicU64,
    pub append_transaction_micros: AtomicU64,
    /// Live fan-out's store reads (`live.rs`): pages read by single subscribers (a
    /// backlog, a lag, a hole), and reads of other hosts' commits made once per host
    /// for all subscribers. The second growing with commits, not subscribers, is the
    /// point of reading remote commits once.
    pub live_subscriber_reads: AtomicU64,
    pub live_remote_reads: AtomicU64,
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
    let series: [UsageSeries; 13] = [
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
        (
            "cairn_tenant_quota_refused_total",
            "Writes refused by the storage quota per tenant.",
            |u| u.quota_refused.load(Relaxed),
        ),
        (
            "cairn_tenant_uploads_refused_total",
            "Uploads refused as unusable (invalid_plugin) per tenant.",
            |u| u.uploads_refused.load(Relaxed),
        ),
        (
            "cairn_tenant_compile_cpu_ms_total",
            "CPU time of compiling a tenant's uploads, in milliseconds.",
            |u| u.compile.cpu_ms.load(Relaxed),
        ),
        (
            "cairn_tenant_compiles_refused_total",
            "Uploads refused past the tenant's compile_cpu_ms_per_hour.",
            |u| u.compile.refused.load(Relaxed),
        ),
        (
            "cairn_tenant_requests_total",
            "Requests made with a tenant's token, refused ones included.",
            |u| u.requests.load(Relaxed),
        ),
        (
            "cairn_tenant_requests_rate_limited_total",
            "Requests refused past the tenant's requests_per_second.",
            |u| u.requests_rate_limited.load(Relaxed),
        ),
        (
            "cairn_tenant_requests_busy_total",
            "Requests refused past the tenant's max_concurrent_requests or max_concurrent_imports.",
            |u| u.requests_busy.load(Relaxed),
        ),
    ];
    for (name, help, read) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (tenant, gate, _) in gates {
            let _ = writeln!(out, "{name}{{tenant=\"{tenant}\"}} {}", read(&gate.usage));
        }
    }
    let name = "cairn_command_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Command latency per tenant, from admission to answer.\n# TYPE {name} histogram"
    );
    for (tenant, gate, _) in gates {
        gate.usage
            .command_latency
            .render(&mut out, name, &format!("tenant=\"{tenant}\""));
    }
    let name = "cairn_plugin_call_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Plugin call latency per tenant, plugin and call (decide, evolve, handle).\n\
         # TYPE {name} histogram"
    );
    for (tenant, gate, _) in gates {
        for ((plugin, call), histogram) in gate.usage.plugin_latencies() {
            let labels = format!(
                "tenant=\"{tenant}\",plugin=\"{}\",call=\"{call}\"",
                label(&plugin)
            );
            histogram.render(&mut out, name, &labels);
        }
    }
    out
}

/// Per-projection gauges: position, lag, events per second, and status (one series
/// per build, valued 1, with the status as a label).
pub fn render_projections(
    tenants: &[(
        crate::store::TenantId,
        Vec<crate::projection::ProjectionView>,
    )],
) -> String {
    let mut out = String::new();
    type Read = fn(&crate::projection::BuildView) -> f64;
    let gauges: [(&str, &str, Read); 3] = [
        (
            "cairn_projection_position",
            "The last log position a projection build has handled.",
            |b| b.position as f64,
        ),
        (
            "cairn_projection_lag",
            "Events between the tenant's head and a projection build's position.",
            |b| b.lag as f64,
        ),
        (
            "cairn_projection_events_per_second",
            "Events a projection build handled per second since it started here.",
            |b| b.events_per_second,
        ),
    ];
    for (name, help, read) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (tenant, views) in tenants {
            for view in views {
                for build in &view.versions {
                    let _ = writeln!(
                        out,
                        "{name}{{tenant=\"{tenant}\",projection=\"{}\",version=\"{}\",build=\"{}\"}} {}",
                        view.name,
                        build.version,
                        build.build,
                        read(build)
                    );
                }
            }
        }
    }
    let name = "cairn_projection_status";
    let _ = writeln!(
        out,
        "# HELP {name} A projection build's status (building, active, retired, failed) as a label.\n\
         # TYPE {name} gauge"
    );
    for (tenant, views) in tenants {
        for view in views {
            for build in &view.versions {
                let _ = writeln!(
                    out,
                    "{name}{{tenant=\"{tenant}\",projection=\"{}\",version=\"{}\",build=\"{}\",status=\"{}\"}} 1",
                    view.name,
                    build.version,
                    build.build,
                    build.status.as_str()
                );
            }
        }
    }
    out
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn render(&self) -> String {
        fn counter_into(out: &mut String, name: &str, help: &str, value: u64) {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
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
        counter_into(
            &mut out,
            "cairn_append_transactions_total",
            "Group commits: transactions the appender committed (or failed).",
            self.append_transactions.load(Relaxed),
        );
        counter_into(
            &mut out,
            "cairn_append_requests_total",
            "Append requests (a command's, a raw append's, an import's runs) the group commits carried.",
            self.append_requests.load(Relaxed),
        );
        counter_into(
            &mut out,
            "cairn_live_subscriber_reads_total",
            "Store pages read by single live subscribers (backlog, lag, holes).",
            self.live_subscriber_reads.load(Relaxed),
        );
        counter_into(
            &mut out,
            "cairn_live_remote_reads_total",
            "Reads of other hosts' commits, made once per host for every live subscriber.",
            self.live_remote_reads.load(Relaxed),
        );
        let seconds = self.append_transaction_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP cairn_append_transaction_seconds_total Time spent in group-commit \
             transactions.\n# TYPE cairn_append_transaction_seconds_total counter\n\
             cairn_append_transaction_seconds_total {seconds}"
        );
        out
    }
}
