//! Per-tenant admission and accounting: the tenant's limits, its share of concurrent
//! plugin calls, its command rate, its usage counters and its plugins' last log lines.
//!
//! One `TenantGate` per tenant, shared by every request of that tenant; this is what
//! keeps one tenant from starving its neighbours.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::log::appender::Appender;
use crate::metrics::Histogram;
use crate::runtime::{CallLimits, FailureReason, PluginFailure};
use crate::store::{AppendError, AppendOutcome, AppendRequest, EventStore, StoredUsage, TenantId};
use crate::tenancy::limits::Limits;

/// Log lines kept per plugin.
const LOG_LINES: usize = 200;

/// CPU turns per tenant: the host's cores times the tenant's `cpu_weight`, so one
/// tenant can use the whole machine when it is alone, and under contention the OS
/// shares the cores between the threads holding turns: a tenant of weight 2 gets twice
/// the share of a tenant of weight 1.
fn cpu_turns(weight: u32) -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * weight as usize
}

pub struct TenantGate {
    pub limits: Limits,
    /// Plugin calls of this tenant running at once.
    calls: Arc<Semaphore>,
    /// The tenant's turns on a CPU: a running plugin call of this tenant holds one
    /// between two epoch ticks and queues for the next (see `sandbox::new_store`), so
    /// however many calls a tenant has in flight, at most this many burn CPU at once
    /// and its neighbours' calls keep their share.
    cpu_turns: Arc<Semaphore>,
    /// Bytes the tenant stores, as this host counts them (see [`Counted`]). A tokio
    /// `Mutex`: the first count awaits the store while holding it, so writes wait for
    /// it rather than race it. Shared with the background recounts.
    stored: Arc<tokio::sync::Mutex<Option<Counted>>>,
    /// Token bucket for `commands_per_second`; `None` when unlimited. A std `Mutex`:
    /// held for a few arithmetic operations.
    rate: Option<Mutex<Bucket>>,
    /// One compile of this tenant's uploads at a time. The host compiles two
    /// components at once for everyone; a tenant's second upload waits here, behind
    /// its own first, instead of in the host's queue ahead of its neighbours'.
    compiles: Arc<Semaphore>,
    /// Shared with the gate that replaces this one when the limits change.
    pub usage: Arc<Usage>,
    pub logs: Arc<PluginLogs>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// How long the count of documents, snapshots and plugins is trusted before it is
/// read again (in the background: writes never wait for a recount).
const STORAGE_RECOUNT: std::time::Duration = std::time::Duration::from_secs(10);

/// The tenant's stored bytes. Events only grow, so their bytes are read once and then
/// counted as this host appends them (other hosts' appends are seen when the gate is
/// next made). Documents and snapshots are overwritten and deleted, so what this host
/// writes of them is counted up and the total is read again every `STORAGE_RECOUNT`,
/// which also sees the space overwrites and deleted builds gave back.
#[derive(Clone, Copy)]
struct Counted {
    event_bytes: u64,
    /// Documents, snapshots and plugins by kind, as last read plus what was written
    /// since (its `events` and `event_bytes` unused).
    others: StoredUsage,
    read_at: Instant,
    /// A recount is under way.
    recounting: bool,
}

impl Counted {
    fn total(&self) -> u64 {
        self.event_bytes + self.others.total()
    }
}

/// One plugin's latency histograms, by call (`decide`, `evolve`, `handle`).
type CallLatencies = Vec<(&'static str, Arc<Histogram>)>;

/// Counters of what a tenant used since this host started.
#[derive(Default)]
pub struct Usage {
    pub commands: AtomicU64,
    pub plugin_calls: AtomicU64,
    pub plugin_micros: AtomicU64,
    pub traps: AtomicU64,
    pub deadline_hits: AtomicU64,
    pub memory_hits: AtomicU64,
    pub rate_limited: AtomicU64,
    /// Writes refused by the storage quota (`max_stored_bytes`, `max_plugin_versions`).
    pub quota_refused: AtomicU64,
    /// Uploads refused as unusable (`invalid_plugin`: shape, compile, link, world).
    pub uploads_refused: AtomicU64,
    /// Compile CPU of the tenant's uploads, and its hourly budget (`compile_budget.rs`).
    pub compile: crate::tenancy::compile_budget::CompileBudget,
    /// The tenant's requests in flight and its request rate (`admission.rs`): here,
    /// not in the gate, so that they outlive a gate made again.
    pub admission: crate::tenancy::admission::Admission,
    /// Requests made with the tenant's token, refused ones included (`admission.rs`).
    pub requests: AtomicU64,
    /// Requests refused past `requests_per_second`.
    pub requests_rate_limited: AtomicU64,
    /// Requests refused past `max_concurrent_requests` or `max_concurrent_imports`.
    pub requests_busy: AtomicU64,
    /// Command latency, from admission to the answer (`/metrics`).
    pub command_latency: Histogram,
    /// Plugin call latency by plugin name and call (`decide`, `evolve`, `handle`). A
    /// std `Mutex`: held for a map lookup; the histogram itself is atomics.
    plugin_latency: Mutex<HashMap<String, CallLatencies>>,
}

/// What a tenant has used since the server started (counters) and stores now (bytes).
#[derive(Serialize, utoipa::ToSchema)]
pub struct UsageView {
    pub events_stored: u64,
    /// Every byte the tenant stores: what `max_stored_bytes` limits.
    pub bytes_stored: u64,
    /// The same by kind.
    pub stored: StoredUsage,
    pub commands: u64,
    pub plugin_calls: u64,
    pub plugin_time_ms: f64,
    pub traps: u64,
    pub deadline_hits: u64,
    pub memory_hits: u64,
    pub rate_limited: u64,
    /// Writes refused by the storage quota since the server started.
    pub quota_refused: u64,
    /// Uploads refused as unusable since the server started.
    pub uploads_refused: u64,
    /// CPU time of compiling the tenant's uploads since the server started.
    pub compile_cpu_ms: u64,
    /// Uploads refused because `compile_cpu_ms_per_hour` was spent.
    pub compiles_refused: u64,
    /// Requests made with the tenant's token since the server started.
    pub requests: u64,
    /// Of them, refused past `requests_per_second`.
    pub requests_rate_limited: u64,
    /// Of them, refused past `max_concurrent_requests` or `max_concurrent_imports`.
    pub requests_busy: u64,
}

impl Usage {
    /// The counters request admission bumps (`admission.rs`).
    pub fn request_counters(&self) -> crate::tenancy::admission::RequestCounters<'_> {
        crate::tenancy::admission::RequestCounters {
            requests: &self.requests,
            requests_rate_limited: &self.requests_rate_limited,
            requests_busy: &self.requests_busy,
        }
    }
}

impl Usage {
    /// Records one plugin call's latency.
    pub fn plugin_call(&self, plugin: &str, call: &'static str, took: std::time::Duration) {
        let histogram = {
            let mut map = self.plugin_latency.lock().expect("plugin latency lock");
            let calls = match map.get_mut(plugin) {
                Some(calls) => calls,
                None => map.entry(plugin.to_owned()).or_default(),
            };
            match calls.iter().find(|(c, _)| *c == call) {
                Some((_, h)) => h.clone(),
                None => {
                    let h = Arc::new(Histogram::default());
                    calls.push((call, h.clone()));
                    h
                }
            }
        };
        histogram.observe(took);
    }

    /// Every plugin call histogram, sorted by plugin and call.
    pub fn plugin_latencies(&self) -> Vec<((String, &'static str), Arc<Histogram>)> {
        let map = self.plugin_latency.lock().expect("plugin latency lock");
        let mut all: Vec<_> = map
            .iter()
            .flat_map(|(plugin, calls)| {
                calls
                    .iter()
                    .map(|(call, h)| ((plugin.clone(), *call), h.clone()))
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub fn view(&self, stored: StoredUsage) -> UsageView {
        UsageView {
            events_stored: stored.events,
            bytes_stored: stored.total(),
            stored,
            commands: self.commands.load(Relaxed),
            plugin_calls: self.plugin_calls.load(Relaxed),
            plugin_time_ms: self.plugin_micros.load(Relaxed) as f64 / 1000.0,
            traps: self.traps.load(Relaxed),
            deadline_hits: self.deadline_hits.load(Relaxed),
            memory_hits: self.memory_hits.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
            quota_refused: self.quota_refused.load(Relaxed),
            uploads_refused: self.uploads_refused.load(Relaxed),
            compile_cpu_ms: self.compile.cpu_ms.load(Relaxed),
            compiles_refused: self.compile.refused.load(Relaxed),
            requests: self.requests.load(Relaxed),
            requests_rate_limited: self.requests_rate_limited.load(Relaxed),
            requests_busy: self.requests_busy.load(Relaxed),
        }
    }

    /// Counts a plugin failure by its reason.
    pub fn failure(&self, failure: &PluginFailure) {
        let counter = match failure.reason {
            FailureReason::Deadline | FailureReason::WallTime => &self.deadline_hits,
            FailureReason::Memory => &self.memory_hits,
            _ => &self.traps,
        };
        counter.fetch_add(1, Relaxed);
    }
}

/// The last lines each plugin printed, per plugin name.
#[derive(Default)]
pub struct PluginLogs {
    lines: Mutex<HashMap<String, VecDeque<String>>>,
}

impl PluginLogs {
    /// Records a call's output: into `tracing`, labelled, and into the ring.
    pub fn record(&self, tenant: &str, plugin: &str, output: &str) {
        if output.is_empty() {
            return;
        }
        let mut lines = self.lines.lock().expect("plugin logs lock");
        let ring = lines.entry(plugin.to_owned()).or_default();
        for line in output.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "cairn::plugin", tenant, plugin, "{line}");
            if ring.len() == LOG_LINES {
                ring.pop_front();
            }
            ring.push_back(line.to_owned());
        }
    }

    pub fn last(&self, plugin: &str) -> Vec<String> {
        let lines = self.lines.lock().expect("plugin logs lock");
        lines
            .get(plugin)
            .map(|ring| ring.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl TenantGate {
    pub fn new(limits: Limits, usage: Arc<Usage>, logs: Arc<PluginLogs>) -> TenantGate {
        TenantGate {
            calls: Arc::new(Semaphore::new(limits.max_concurrent_calls as usize)),
            cpu_turns: Arc::new(Semaphore::new(cpu_turns(limits.cpu_weight))),
            compiles: Arc::new(Semaphore::new(1)),
            stored: Arc::new(tokio::sync::Mutex::new(None)),
            rate: limits.commands_per_second.map(|rate| {
                Mutex::new(Bucket {
                    tokens: rate as f64,
                    refilled: Instant::now(),
                })
            }),
            limits,
            usage,
            logs,
        }
    }

    /// Admits one request made with this tenant's token (see `admission.rs`).
    pub fn admit_request(
        &self,
        kind: crate::tenancy::admission::RequestKind,
    ) -> Result<crate::tenancy::admission::Admitted, crate::tenancy::admission::Refused> {
        self.usage
            .admission
            .admit(kind, &self.limits, self.usage.request_counters())
    }

    /// This tenant's turn to compile an upload (see `compiles`).
    pub async fn compile_turn(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.compiles
            .clone()
            .acquire_owned()
            .await
            .expect("never closed")
    }

    /// Admits one command or answers 429 `over_limit`.
    pub fn admit_command(&self) -> Result<(), ApiError> {
        self.usage.commands.fetch_add(1, Relaxed);
        let (Some(bucket), Some(rate)) = (&self.rate, self.limits.commands_per_second) else {
            return Ok(());
        };
        let mut bucket = bucket.lock().expect("rate lock");
        let now = Instant::now();
        let rate = rate as f64;
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.refilled).as_secs_f64() * rate).min(rate);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            self.usage.rate_limited.fetch_add(1, Relaxed);
            Err(ApiError::over_limit(format!(
                "this tenant is limited to {rate} commands per second"
            )))
        }
    }

    /// Appends through `appender` within the tenant's `max_stored_bytes`: the outer
    /// error is 507 `quota_exceeded` (nothing sent), the inner result the append's own.
    /// Every append path (raw appends, commands) goes through here.
    pub async fn append_within_quota(
        &self,
        store: &Arc<dyn EventStore>,
        appender: &Appender,
        request: AppendRequest,
    ) -> Result<Result<AppendOutcome, AppendError>, ApiError> {
        let bytes = request
            .events
            .iter()
            .map(|e| (e.payload.len() + e.metadata.len()) as u64)
            .sum();
        self.reserve_storage(store, &request.tenant, Stored::Events(bytes))
            .await?;
        let appended = appender.append(request).await;
        if !matches!(&appended, Ok(outcome) if !outcome.replayed) {
            self.release_storage(Stored::Events(bytes)).await;
        }
        Ok(appended)
    }

    /// Counts `adding` as stored, or refuses it with 507 `quota_exceeded` past
    /// `max_stored_bytes`. A caller whose write then fails gives it back with
    /// `release_storage`.
    pub async fn reserve_storage(
        &self,
        store: &Arc<dyn EventStore>,
        tenant: &TenantId,
        adding: Stored,
    ) -> Result<(), ApiError> {
        let mut counted = self.stored.lock().await;
        let mut now = self.count(&mut counted, store, tenant).await?;
        let max = self.limits.max_stored_bytes;
        let (bytes, what) = adding.parts();
        if now.total() + bytes > max {
            *counted = Some(now);
            self.usage.quota_refused.fetch_add(1, Relaxed);
            return Err(ApiError::new(
                axum::http::StatusCode::INSUFFICIENT_STORAGE,
                "quota_exceeded",
                format!(
                    "this tenant stores {} bytes (events, documents, snapshots and \
                     plugins); {bytes} more bytes of {what} would pass its \
                     max_stored_bytes of {max}",
                    now.total()
                ),
            )
            .with("stored_bytes", now.total())
            .with("max_stored_bytes", max));
        }
        match adding {
            Stored::Events(_) => now.event_bytes += bytes,
            Stored::Documents(_) => now.others.document_bytes += bytes,
            Stored::Snapshot(_) => now.others.snapshot_bytes += bytes,
            Stored::Plugin(_) => now.others.plugin_bytes += bytes,
        }
        *counted = Some(now);
        Ok(())
    }

    /// The count, read from the store the first time and recounted in the background
    /// when it is old.
    async fn count(
        &self,
        counted: &mut Option<Counted>,
        store: &Arc<dyn EventStore>,
        tenant: &TenantId,
    ) -> Result<Counted, ApiError> {
        let mut now = match *counted {
            Some(counted) => counted,
            None => {
                let usage = store.stored_usage(tenant).await?;
                Counted {
                    event_bytes: usage.event_bytes,
                    others: StoredUsage {
                        events: 0,
                        event_bytes: 0,
                        ..usage
                    },
                    read_at: Instant::now(),
                    recounting: false,
                }
            }
        };
        if now.read_at.elapsed() >= STORAGE_RECOUNT && !now.recounting {
            now.recounting = true;
            self.recount_in_background(store.clone(), tenant.clone());
        }
        *counted = Some(now);
        Ok(now)
    }

    /// The bytes the tenant stores as this host counts them (what the quota sees).
    pub async fn stored_bytes(
        &self,
        store: &Arc<dyn EventStore>,
        tenant: &TenantId,
    ) -> Result<u64, ApiError> {
        let mut counted = self.stored.lock().await;
        Ok(self.count(&mut counted, store, tenant).await?.total())
    }

    /// What the tenant stores, by kind, from the counts the quota keeps (no scan of the
    /// log): the events are its log's head (positions are gap-free), their bytes as
    /// counted on append; the rest as last recounted plus what was written since.
    pub async fn stored_usage(
        &self,
        store: &Arc<dyn EventStore>,
        tenant: &TenantId,
    ) -> Result<StoredUsage, ApiError> {
        let now = {
            let mut counted = self.stored.lock().await;
            self.count(&mut counted, store, tenant).await?
        };
        Ok(StoredUsage {
            events: store.head(tenant).await?,
            event_bytes: now.event_bytes,
            ..now.others
        })
    }

    /// Reads the documents, snapshots and plugins again, off the caller's path.
    fn recount_in_background(&self, store: Arc<dyn EventStore>, tenant: TenantId) {
        let stored = self.stored.clone();
        tokio::spawn(async move {
            let read = store.stored_besides_events(&tenant).await;
            let mut counted = stored.lock().await;
            let Some(counted) = counted.as_mut() else {
                return;
            };
            counted.recounting = false;
            match read {
                Ok(usage) => {
                    counted.others = usage;
                    counted.read_at = Instant::now();
                }
                Err(error) => tracing::warn!(%tenant, "could not count stored bytes: {error:#}"),
            }
        });
    }

    /// Gives back what was reserved for a write that did not happen.
    pub async fn release_storage(&self, released: Stored) {
        if let Some(counted) = self.stored.lock().await.as_mut() {
            match released {
                Stored::Events(bytes) => {
                    counted.event_bytes = counted.event_bytes.saturating_sub(bytes)
                }
                Stored::Documents(bytes) => {
                    counted.others.document_bytes =
                        counted.others.document_bytes.saturating_sub(bytes)
                }
                Stored::Snapshot(bytes) => {
                    counted.others.snapshot_bytes =
                        counted.others.snapshot_bytes.saturating_sub(bytes)
                }
                Stored::Plugin(bytes) => {
                    counted.others.plugin_bytes = counted.others.plugin_bytes.saturating_sub(bytes)
                }
            }
        }
    }

    /// The limits of one plugin call of this tenant, its CPU turns included.
    pub fn call_limits(&self) -> CallLimits {
        let mut limits = self.limits.call_limits();
        limits.turns = Some(self.cpu_turns.clone());
        limits
    }

    /// Waits for one of the tenant's plugin call slots.
    pub async fn call_slot(&self) -> CallSlot {
        let permit = self
            .calls
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        self.usage.plugin_calls.fetch_add(1, Relaxed);
        CallSlot {
            _permit: permit,
            started: Instant::now(),
            usage: self.usage.clone(),
        }
    }
}

/// Bytes about to be stored, by kind (for the count and the quota's message).
#[derive(Clone, Copy, Debug)]
pub enum Stored {
    Events(u64),
    Documents(u64),
    Snapshot(u64),
    Plugin(u64),
}

impl Stored {
    fn parts(self) -> (u64, &'static str) {
        match self {
            Stored::Events(bytes) => (bytes, "events"),
            Stored::Documents(bytes) => (bytes, "projection documents"),
            Stored::Snapshot(bytes) => (bytes, "snapshot"),
            Stored::Plugin(bytes) => (bytes, "plugin and its compiled artifact"),
        }
    }
}

/// Held while a tenant's plugin runs; adds the time to the tenant's usage when dropped.
pub struct CallSlot {
    _permit: OwnedSemaphorePermit,
    started: Instant,
    usage: Arc<Usage>,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.usage
            .plugin_micros
            .fetch_add(self.started.elapsed().as_micros() as u64, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_holds_cores_times_its_weight_in_cpu_turns() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        for weight in [1, 3] {
            let limits = Limits {
                cpu_weight: weight,
                ..Limits::default()
            };
            let gate = TenantGate::new(limits, Default::default(), Default::default());
            let turns = gate.call_limits().turns.expect("commands take turns");
            assert_eq!(turns.available_permits(), cores * weight as usize);
        }
    }
}
