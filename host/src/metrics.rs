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

/// One tenant's series, as its owner reported them: `api/ops.rs` gathers them from
/// the tenant's gate, so this module reads no service's state.
pub struct TenantSample<'a> {
    /// The `tenant` label.
    pub tenant: String,
    /// `cairn_tenant_stored_bytes`.
    pub stored_bytes: u64,
    /// `cairn_tenant_max_stored_bytes`: the quota.
    pub max_stored_bytes: u64,
    /// The counters, in the order of `TenantCounters`' fields.
    pub counters: TenantCounters,
    /// `cairn_command_duration_seconds`.
    pub command_latency: &'a Histogram,
    /// `cairn_plugin_call_duration_seconds`, per (plugin, call), sorted.
    pub plugin_latencies: Vec<((String, &'static str), std::sync::Arc<Histogram>)>,
}

/// A tenant's counters at the moment they were read (each a `…_total` series).
pub struct TenantCounters {
    /// Commands run.
    pub commands: u64,
    /// Plugin calls made.
    pub plugin_calls: u64,
    /// Plugin time, in microseconds.
    pub plugin_micros: u64,
    /// Plugin traps.
    pub traps: u64,
    /// Deadline and memory limit hits, together.
    pub limit_hits: u64,
    /// Commands refused by the rate limit.
    pub rate_limited: u64,
    /// Writes refused by the storage quota.
    pub quota_refused: u64,
    /// Uploads refused as unusable.
    pub uploads_refused: u64,
    /// CPU time of compiling the tenant's uploads, in milliseconds.
    pub compile_cpu_ms: u64,
    /// Uploads refused past the tenant's compile budget.
    pub compiles_refused: u64,
    /// Requests made with the tenant's token.
    pub requests: u64,
    /// Requests refused past its request rate.
    pub requests_rate_limited: u64,
    /// Requests refused past its concurrent requests or imports.
    pub requests_busy: u64,
}

/// A per-tenant series: name, help text, and how to read it from a sample.
type UsageSeries = (&'static str, &'static str, fn(&TenantCounters) -> u64);

/// Per-tenant usage counters and storage, labelled by tenant.
pub fn render_usage(gates: &[TenantSample<'_>]) -> String {
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
        for TenantSample {
            tenant,
            stored_bytes,
            max_stored_bytes,
            ..
        } in gates
        {
            let value = if name.ends_with("max_stored_bytes") {
                *max_stored_bytes
            } else {
                *stored_bytes
            };
            let _ = writeln!(out, "{name}{{tenant=\"{tenant}\"}} {value}");
        }
    }
    let series: [UsageSeries; 13] = [
        ("cairn_tenant_commands_total", "Commands per tenant.", |u| {
            u.commands
        }),
        (
            "cairn_tenant_plugin_calls_total",
            "Plugin calls per tenant.",
            |u| u.plugin_calls,
        ),
        (
            "cairn_tenant_plugin_micros_total",
            "Plugin time per tenant, in microseconds.",
            |u| u.plugin_micros,
        ),
        (
            "cairn_tenant_traps_total",
            "Plugin traps per tenant.",
            |u| u.traps,
        ),
        (
            "cairn_tenant_limit_hits_total",
            "Plugin deadline and memory limit hits per tenant.",
            |u| u.limit_hits,
        ),
        (
            "cairn_tenant_rate_limited_total",
            "Commands refused by the rate limit per tenant.",
            |u| u.rate_limited,
        ),
        (
            "cairn_tenant_quota_refused_total",
            "Writes refused by the storage quota per tenant.",
            |u| u.quota_refused,
        ),
        (
            "cairn_tenant_uploads_refused_total",
            "Uploads refused as unusable (invalid_plugin) per tenant.",
            |u| u.uploads_refused,
        ),
        (
            "cairn_tenant_compile_cpu_ms_total",
            "CPU time of compiling a tenant's uploads, in milliseconds.",
            |u| u.compile_cpu_ms,
        ),
        (
            "cairn_tenant_compiles_refused_total",
            "Uploads refused past the tenant's compile_cpu_ms_per_hour.",
            |u| u.compiles_refused,
        ),
        (
            "cairn_tenant_requests_total",
            "Requests made with a tenant's token, refused ones included.",
            |u| u.requests,
        ),
        (
            "cairn_tenant_requests_rate_limited_total",
            "Requests refused past the tenant's requests_per_second.",
            |u| u.requests_rate_limited,
        ),
        (
            "cairn_tenant_requests_busy_total",
            "Requests refused past the tenant's max_concurrent_requests or max_concurrent_imports.",
            |u| u.requests_busy,
        ),
    ];
    for (name, help, read) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for sample in gates {
            let tenant = &sample.tenant;
            let _ = writeln!(
                out,
                "{name}{{tenant=\"{tenant}\"}} {}",
                read(&sample.counters)
            );
        }
    }
    let name = "cairn_command_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Command latency per tenant, from admission to answer.\n# TYPE {name} histogram"
    );
    for sample in gates {
        sample
            .command_latency
            .render(&mut out, name, &format!("tenant=\"{}\"", sample.tenant));
    }
    let name = "cairn_plugin_call_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Plugin call latency per tenant, plugin and call (decide, evolve, handle).\n\
         # TYPE {name} histogram"
    );
    for sample in gates {
        let tenant = &sample.tenant;
        for ((plugin, call), histogram) in &sample.plugin_latencies {
            let labels = format!(
                "tenant=\"{tenant}\",plugin=\"{}\",call=\"{call}\"",
                label(plugin)
            );
            histogram.render(&mut out, name, &labels);
        }
    }
    out
}

/// One projection build's series, as `api/ops.rs` gathered it from the projections'
/// status: this module reads no service's state.
pub struct BuildSample {
    /// The `tenant` label.
    pub tenant: String,
    /// The `projection` label.
    pub projection: String,
    /// The `version` label: the plugin version the build runs.
    pub version: u64,
    /// The `build` label.
    pub build: u64,
    /// `cairn_projection_position`.
    pub position: u64,
    /// `cairn_projection_lag`.
    pub lag: u64,
    /// `cairn_projection_events_per_second`.
    pub events_per_second: f64,
    /// The `status` label of `cairn_projection_status`.
    pub status: &'static str,
}

/// Per-projection gauges: position, lag, events per second, and status (one series
/// per build, valued 1, with the status as a label).
pub fn render_projections(builds: &[BuildSample]) -> String {
    let mut out = String::new();
    type Read = fn(&BuildSample) -> f64;
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
        for build in builds {
            let _ = writeln!(
                out,
                "{name}{{tenant=\"{}\",projection=\"{}\",version=\"{}\",build=\"{}\"}} {}",
                build.tenant,
                build.projection,
                build.version,
                build.build,
                read(build)
            );
        }
    }
    let name = "cairn_projection_status";
    let _ = writeln!(
        out,
        "# HELP {name} A projection build's status (building, active, retired, failed) as a label.\n\
         # TYPE {name} gauge"
    );
    for build in builds {
        let _ = writeln!(
            out,
            "{name}{{tenant=\"{}\",projection=\"{}\",version=\"{}\",build=\"{}\",status=\"{}\"}} 1",
            build.tenant, build.projection, build.version, build.build, build.status
        );
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
