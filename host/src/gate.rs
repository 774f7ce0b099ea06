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

use crate::appender::Appender;
use crate::error::ApiError;
use crate::limits::Limits;
use crate::runtime::{CallLimits, FailureReason, PluginFailure};
use crate::store::{AppendError, AppendOutcome, AppendRequest, EventStore, TenantId};

/// Log lines kept per plugin.
const LOG_LINES: usize = 200;

/// CPU turns per tenant: the host's cores, so one tenant can use the whole machine
/// when it is alone, and shares it with anyone else who runs.
fn cpu_turns() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
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
    /// Event bytes the tenant stores, read from the store on first use and counted up
    /// by this host's appends since (other hosts' appends are seen when the gate is
    /// next made). A tokio `Mutex`: the first use awaits the store while holding it.
    stored_bytes: tokio::sync::Mutex<Option<u64>>,
    /// Token bucket for `commands_per_second`; `None` when unlimited. A std `Mutex`:
    /// held for a few arithmetic operations.
    rate: Option<Mutex<Bucket>>,
    /// Shared with the gate that replaces this one when the limits change.
    pub usage: Arc<Usage>,
    pub logs: Arc<PluginLogs>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

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
}

#[derive(Serialize)]
pub struct UsageView {
    pub events_stored: u64,
    pub bytes_stored: u64,
    pub commands: u64,
    pub plugin_calls: u64,
    pub plugin_time_ms: f64,
    pub traps: u64,
    pub deadline_hits: u64,
    pub memory_hits: u64,
    pub rate_limited: u64,
}

impl Usage {
    pub fn view(&self, events_stored: u64, bytes_stored: u64) -> UsageView {
        UsageView {
            events_stored,
            bytes_stored,
            commands: self.commands.load(Relaxed),
            plugin_calls: self.plugin_calls.load(Relaxed),
            plugin_time_ms: self.plugin_micros.load(Relaxed) as f64 / 1000.0,
            traps: self.traps.load(Relaxed),
            deadline_hits: self.deadline_hits.load(Relaxed),
            memory_hits: self.memory_hits.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
        }
    }

    /// Counts a plugin failure by its reason.
    pub fn failure(&self, failure: &PluginFailure) {
        let counter = match failure.reason {
            FailureReason::Deadline => &self.deadline_hits,
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
            cpu_turns: Arc::new(Semaphore::new(cpu_turns())),
            stored_bytes: tokio::sync::Mutex::new(None),
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
        store: &dyn EventStore,
        appender: &Appender,
        request: AppendRequest,
    ) -> Result<Result<AppendOutcome, AppendError>, ApiError> {
        let bytes = request
            .events
            .iter()
            .map(|e| (e.payload.len() + e.metadata.len()) as u64)
            .sum();
        self.reserve_storage(store, &request.tenant, bytes).await?;
        let appended = appender.append(request).await;
        if !matches!(&appended, Ok(outcome) if !outcome.replayed) {
            self.release_storage(bytes).await;
        }
        Ok(appended)
    }

    /// Counts `adding` bytes as stored, or refuses them past `max_stored_bytes`.
    async fn reserve_storage(
        &self,
        store: &dyn EventStore,
        tenant: &TenantId,
        adding: u64,
    ) -> Result<(), ApiError> {
        let mut stored = self.stored_bytes.lock().await;
        let now = match *stored {
            Some(bytes) => bytes,
            None => store.stored_usage(tenant).await?.1,
        };
        let max = self.limits.max_stored_bytes;
        if now + adding > max {
            *stored = Some(now);
            return Err(ApiError::new(
                axum::http::StatusCode::INSUFFICIENT_STORAGE,
                "quota_exceeded",
                format!(
                    "this tenant stores {now} bytes of events; {adding} more would pass its \
                     max_stored_bytes of {max}"
                ),
            )
            .with("stored_bytes", now)
            .with("max_stored_bytes", max));
        }
        *stored = Some(now + adding);
        Ok(())
    }

    /// Gives back bytes reserved for an append that was not written.
    async fn release_storage(&self, bytes: u64) {
        if let Some(stored) = self.stored_bytes.lock().await.as_mut() {
            *stored = stored.saturating_sub(bytes);
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
