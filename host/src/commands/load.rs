//! Loading aggregate state for a command or a read: the state cache, else the nearest
//! snapshot of the same component plus the events after it, folded by `evolve`.
//!
//! A stream may hold any number of events. Each `evolve` call has the time budget of
//! one plugin call (the instance halves its batches when one runs out), and a whole
//! load has its own, larger budget (`load_timeout_ms`). A long fold writes snapshots as
//! it goes, so a load that runs out of its budget has saved its progress and the next
//! try continues from there instead of from the first event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Commands, LOAD_PAGE};
use crate::commands::state_cache::CachedState;
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::plugins::ServingAggregate;
use crate::runtime::AggregateInstance;
use crate::store::{Direction, RecordedEvent, Snapshot, TenantId};
use crate::tenancy::gate::{Stored, TenantGate};

/// What one load may still spend, and what it tells the client when it runs out.
pub(super) struct LoadBudget {
    started: Instant,
    limit: Duration,
}

impl LoadBudget {
    pub(super) fn of(gate: &TenantGate) -> LoadBudget {
        LoadBudget {
            started: Instant::now(),
            limit: Duration::from_millis(gate.limits.load_timeout_ms),
        }
    }

    fn spent(&self) -> bool {
        self.started.elapsed() >= self.limit
    }

    /// 503 `load_incomplete` when the budget is spent, naming how far the fold got.
    fn check(&self, stream_id: &str, folded_to: u64, saved: u64) -> ApiResult<()> {
        if !self.spent() {
            return Ok(());
        }
        Err(self.incomplete(stream_id, folded_to, saved))
    }

    fn incomplete(&self, stream_id: &str, folded_to: u64, saved: u64) -> ApiError {
        ApiError::unavailable(
            "load_incomplete",
            format!(
                "loading {stream_id} took longer than this tenant's load_timeout_ms of {} ms; \
                 it was folded to version {folded_to} and a snapshot at version {saved} is \
                 saved, so a retry continues from there",
                self.limit.as_millis()
            ),
        )
        .with("folded_version", folded_to)
        .with("snapshot_version", saved)
    }
}

/// During a long fold, a snapshot every this many events (besides the one at its end
/// and the one when its budget runs out): enough to bound the work a crash loses,
/// without a write per page.
const FOLD_SNAPSHOT_EVERY: u64 = 50_000;

impl Commands {
    /// The current state: cached state plus whatever was appended since (by a raw
    /// append or another host), else snapshot plus tail, else a full fold.
    pub(super) async fn load_latest(
        &self,
        instance: &mut AggregateInstance,
        gate: &TenantGate,
        tenant: &TenantId,
        stream_id: &str,
        serving: &ServingAggregate,
    ) -> ApiResult<CachedState> {
        let started = Instant::now();
        let budget = LoadBudget::of(gate);
        let base = match self.cache.get(tenant, stream_id, &serving.state_key) {
            Some(cached) => {
                Metrics::add(&self.metrics.state_cache_hits, 1);
                self.fold_pending(instance, gate, tenant, stream_id, serving, cached)
                    .await?
            }
            None => {
                Metrics::add(&self.metrics.state_cache_misses, 1);
                self.base_state(instance, gate, tenant, stream_id, serving, u64::MAX)
                    .await?
            }
        };
        let mut loaded = base.clone();
        let mut state = Arc::unwrap_or_clone(base.state);
        loop {
            if budget.spent() {
                // Out of time: what was folded is saved, so the retry goes on from here.
                if loaded.version > loaded.snapshot_version {
                    self.snapshot(gate, tenant, stream_id, serving, loaded.version, &state)
                        .await;
                    loaded.snapshot_version = loaded.version;
                }
                return Err(budget.incomplete(stream_id, loaded.version, loaded.snapshot_version));
            }
            let tail = self
                .store
                .read_stream(
                    tenant,
                    stream_id,
                    loaded.version + 1,
                    LOAD_PAGE,
                    Direction::Forward,
                )
                .await?;
            let Some(last) = tail.last() else { break };
            let (last_version, last_position) = (last.version, last.position);
            let full_page = tail.len() >= LOAD_PAGE as usize;
            let tail = self.upcast(serving, gate, tail).await?;
            state = self.evolve(instance, gate, serving, state, &tail).await?;
            loaded.version = last_version;
            loaded.last_position = last_position;
            // Snapshots as a long fold goes, not only at its end: one every
            // FOLD_SNAPSHOT_EVERY events, so little is lost if the host dies mid-fold.
            if loaded.version
                >= loaded.snapshot_version + self.snapshot_every.max(FOLD_SNAPSHOT_EVERY)
            {
                self.snapshot(gate, tenant, stream_id, serving, loaded.version, &state)
                    .await;
                loaded.snapshot_version = loaded.version;
            }
            if !full_page {
                break;
            }
        }
        if loaded.version >= loaded.snapshot_version + self.snapshot_every {
            self.snapshot(gate, tenant, stream_id, serving, loaded.version, &state)
                .await;
            loaded.snapshot_version = loaded.version;
        }
        loaded.state = Arc::new(state);
        if loaded.version != base.version || base.last_position == 0 {
            self.cache.put(tenant, stream_id, loaded.clone());
        }
        Metrics::add(
            &self.metrics.aggregate_load_micros,
            started.elapsed().as_micros() as u64,
        );
        Metrics::add(&self.metrics.aggregate_loads, 1);
        Ok(loaded)
    }

    /// The cached state of a stream for this component, if any, without reading the
    /// store (its pending events folded with `instance`): only for a command, whose
    /// append checks that nothing came after it.
    pub(super) async fn cached(
        &self,
        instance: &mut AggregateInstance,
        gate: &TenantGate,
        tenant: &TenantId,
        stream_id: &str,
        serving: &ServingAggregate,
    ) -> ApiResult<Option<CachedState>> {
        let Some(cached) = self.cache.get(tenant, stream_id, &serving.state_key) else {
            return Ok(None);
        };
        // A state never stored at a known position (a stream's initial state) has not
        // been checked against the store.
        if cached.last_position == 0 {
            return Ok(None);
        }
        Metrics::add(&self.metrics.state_cache_hits, 1);
        self.fold_pending(instance, gate, tenant, stream_id, serving, cached)
            .await
            .map(Some)
    }

    /// Remembers a command's just-committed events with the state it was decided on,
    /// for the stream's next user to fold (`fold_pending`): the command that wrote
    /// them then needs no instance after its commit.
    pub(super) fn remember_committed(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        decided_on: CachedState,
        events: &[RecordedEvent],
    ) {
        if events.first().map(|e| e.version) != Some(decided_on.head_version() + 1)
            || !decided_on.pending.is_empty()
        {
            return;
        }
        self.cache.put(
            tenant,
            stream_id,
            CachedState {
                pending: Arc::new(events.to_vec()),
                ..decided_on
            },
        );
    }

    /// Folds a cached state's pending events (see `remember_committed`) and caches the
    /// result. A failure is the stream's (its history does not fold: the same error a
    /// load from the store gives) and drops the entry, so the next request loads from
    /// the store with a fresh budget.
    pub(super) async fn fold_pending(
        &self,
        instance: &mut AggregateInstance,
        gate: &TenantGate,
        tenant: &TenantId,
        stream_id: &str,
        serving: &ServingAggregate,
        mut cached: CachedState,
    ) -> ApiResult<CachedState> {
        let pending = std::mem::take(&mut cached.pending);
        let Some(last) = pending.last() else {
            return Ok(cached);
        };
        let (last_version, last_position) = (last.version, last.position);
        let folded = async {
            let seen = self.upcast(serving, gate, pending.to_vec()).await?;
            self.evolve(instance, gate, serving, (*cached.state).clone(), &seen)
                .await
        };
        let state = match folded.await {
            Ok(state) => state,
            Err(error) => {
                self.cache.forget(tenant, stream_id);
                return Err(error);
            }
        };
        cached.version = last_version;
        cached.last_position = last_position;
        if cached.version >= cached.snapshot_version + self.snapshot_every {
            self.snapshot(gate, tenant, stream_id, serving, cached.version, &state)
                .await;
            cached.snapshot_version = cached.version;
        }
        cached.state = Arc::new(state);
        self.cache.put(tenant, stream_id, cached.clone());
        Ok(cached)
    }

    /// Builds this component's snapshots of one stream up to its head, without the
    /// stream's lock and without touching the state cache: background work for a
    /// new active version or an import, which a command on the stream never waits
    /// for (it folds on its own if it comes first; both write the same states).
    /// Returns the version folded to, or `None` when the newest snapshot was already
    /// within `snapshot_every` of the head.
    pub(super) async fn warm_stream(
        &self,
        instance: &mut AggregateInstance,
        gate: &TenantGate,
        tenant: &TenantId,
        stream_id: &str,
        serving: &ServingAggregate,
        head: u64,
    ) -> ApiResult<Option<u64>> {
        let base = self
            .base_state(instance, gate, tenant, stream_id, serving, u64::MAX)
            .await?;
        if base.version + self.snapshot_every > head {
            return Ok(None);
        }
        let (mut at, mut saved) = (base.version, base.version);
        let mut state = Arc::unwrap_or_clone(base.state);
        loop {
            let page = self
                .store
                .read_stream(tenant, stream_id, at + 1, LOAD_PAGE, Direction::Forward)
                .await?;
            let Some(last) = page.last() else { break };
            let last_version = last.version;
            let full_page = page.len() >= LOAD_PAGE as usize;
            let page = self.upcast(serving, gate, page).await?;
            state = self.evolve(instance, gate, serving, state, &page).await?;
            at = last_version;
            if at >= saved + self.snapshot_every.max(FOLD_SNAPSHOT_EVERY) || !full_page {
                self.snapshot(gate, tenant, stream_id, serving, at, &state)
                    .await;
                saved = at;
            }
            if !full_page {
                break;
            }
        }
        Ok(Some(at))
    }

    /// The state at exactly `version`, from the nearest snapshot at or below it (a
    /// stream keeps a bounded history of them), folded page by page.
    pub(super) async fn fold_until(
        &self,
        instance: &mut AggregateInstance,
        gate: &TenantGate,
        tenant: &TenantId,
        stream_id: &str,
        serving: &ServingAggregate,
        version: u64,
    ) -> ApiResult<Vec<u8>> {
        let budget = LoadBudget::of(gate);
        let base = self
            .base_state(instance, gate, tenant, stream_id, serving, version)
            .await?;
        let (mut at, saved) = (base.version, base.version);
        let mut state = Arc::unwrap_or_clone(base.state);
        while at < version {
            budget.check(stream_id, at, saved)?;
            let until = version.min(at + u64::from(LOAD_PAGE));
            let events = self
                .store
                .read_stream_range(tenant, stream_id, at, until)
                .await?;
            let events = self.upcast(serving, gate, events).await?;
            state = self.evolve(instance, gate, serving, state, &events).await?;
            at = until;
        }
        Ok(state)
    }

    /// The newest snapshot of this component at or below `max_version`, else the
    /// initial state.
    async fn base_state(
        &self,
        instance: &mut AggregateInstance,
        gate: &TenantGate,
        tenant: &TenantId,
        stream_id: &str,
        serving: &ServingAggregate,
        max_version: u64,
    ) -> ApiResult<CachedState> {
        let snapshot = self
            .store
            .snapshot(tenant, stream_id, &serving.state_key, max_version)
            .await?;
        let (version, state) = match snapshot {
            Some(Snapshot { version, state }) => (version, state),
            None => (
                0,
                instance
                    .initial_state()
                    .await
                    .map_err(|f| self.failed(gate, f))?,
            ),
        };
        Ok(CachedState {
            digest: serving.state_key.clone(),
            version,
            last_position: 0,
            state: Arc::new(state),
            snapshot_version: version,
            pending: Default::default(),
        })
    }

    /// Writes a snapshot in the background (a command never waits for the write),
    /// within the tenant's storage quota: past it none is written, and loads fold from
    /// the previous one (slower, never wrong).
    async fn snapshot(
        &self,
        gate: &TenantGate,
        tenant: &TenantId,
        stream_id: &str,
        serving: &ServingAggregate,
        version: u64,
        state: &[u8],
    ) {
        let bytes = Stored::Snapshot(state.len() as u64);
        if gate
            .reserve_storage(&self.store, tenant, bytes)
            .await
            .is_err()
        {
            return;
        }
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let (tenant, stream_id) = (tenant.clone(), stream_id.to_owned());
        let digest = serving.state_key.clone();
        let snapshot = Snapshot {
            version,
            state: state.to_vec(),
        };
        tokio::spawn(async move {
            match store
                .put_snapshot(&tenant, &stream_id, &digest, &snapshot)
                .await
            {
                Ok(()) => Metrics::add(&metrics.snapshots_written, 1),
                Err(error) => tracing::warn!(%tenant, %stream_id, "snapshot failed: {error:#}"),
            }
        });
    }

    /// One `evolve` call, timed for the plugin's latency histogram.
    async fn evolve(
        &self,
        instance: &mut AggregateInstance,
        gate: &TenantGate,
        serving: &ServingAggregate,
        state: Vec<u8>,
        events: &[RecordedEvent],
    ) -> ApiResult<Vec<u8>> {
        let started = Instant::now();
        let evolved = instance.evolve(state, events).await;
        gate.usage
            .plugin_call(&serving.version.name, "evolve", started.elapsed());
        evolved.map_err(|f| self.failed(gate, f))
    }

    /// The events as the serving version reads them (through its upcasters).
    async fn upcast(
        &self,
        serving: &ServingAggregate,
        gate: &TenantGate,
        events: Vec<RecordedEvent>,
    ) -> ApiResult<Vec<RecordedEvent>> {
        if serving.upcasters.is_empty() {
            return Ok(events);
        }
        serving
            .upcasters
            .apply(&self.runtime, gate.call_limits(), events)
            .await
            .map_err(|e| {
                let mut failure = e.failure;
                failure.message = format!("upcaster {}: {}", e.upcaster, failure.message);
                self.failed(gate, failure)
            })
    }
}
