//! Folding streams for verification: a `Folder` keeps one version's instance from
//! stream to stream, `fold_stream` folds one stream with every version being compared
//! (each page of events read once), `pinpoint` names the event a failing batch broke
//! on, `keep_snapshot` stores the candidate's state of a long stream.

use tokio::sync::OwnedSemaphorePermit;

use super::report::Failure;
use super::{Plugins, ServingAggregate};
use crate::runtime::{AggregateInstance, PluginFailure};
use crate::store::retry::retry;
use crate::store::{Direction, RecordedEvent, TenantId};
use crate::tenancy::gate::TenantGate;

/// Folds streams with one version, keeping its instance from stream to stream: a
/// fresh instance per stream costs a pool slot's set-up and tear-down (page-table work
/// that every thread of the process feels), which dominated verification. A trap
/// poisons an instance, so a failure drops it; it is also renewed every
/// `CALLS_PER_INSTANCE` calls so that garbage a guest leaves does not accumulate.
pub(super) struct Folder<'s> {
    /// The version folding.
    serving: &'s ServingAggregate,
    /// The instance kept across streams, with its instance slot.
    live: Option<(AggregateInstance, OwnedSemaphorePermit)>,
    /// Calls made on the live instance.
    uses: u32,
}

/// Calls one instance serves before it is renewed.
const CALLS_PER_INSTANCE: u32 = 1024;

/// Events read per page while folding a stream.
pub(super) const PAGE: u32 = 2000;
/// Events per `evolve` call during verification; each call has the whole time limit.
const FOLD_BATCH: usize = 512;

/// Streams at least this long get a snapshot of the candidate's state when it has been
/// folded; shorter ones fold quickly enough from their first event.
pub(super) const SNAPSHOT_FROM_VERSION: u64 = 100;

impl<'s> Folder<'s> {
    pub(super) fn new(serving: &'s ServingAggregate) -> Folder<'s> {
        Folder {
            serving,
            live: None,
            uses: 0,
        }
    }

    /// The live instance for the next call, made when there is none.
    async fn instance(
        &mut self,
        runtime: &crate::runtime::Runtime,
        limits: crate::runtime::CallLimits,
    ) -> Result<&mut AggregateInstance, PluginFailure> {
        if self.live.is_none() || self.uses >= CALLS_PER_INSTANCE {
            self.live = None;
            self.live = Some(runtime.aggregate(&self.serving.component, limits).await?);
            self.uses = 0;
        }
        self.uses += 1;
        Ok(&mut self.live.as_mut().expect("just made").0)
    }

    fn poisoned(&mut self) {
        self.live = None;
    }
}

/// How one stream's fold went.
pub(super) enum Folded {
    State {
        state: Vec<u8>,
        version: u64,
        events: u64,
    },
    Failed(Failure),
}

impl Plugins {
    /// Folds one whole stream with each version in `folders` (the candidate, and the
    /// active version to compare with), reading each page of events once. Every
    /// `evolve` call runs under the tenant's per-call limits; a failing batch is
    /// replayed event by event to name the event. A version that fails stops; the
    /// others go on.
    pub(super) async fn fold_stream(
        &self,
        folders: &mut [Folder<'_>],
        gate: &TenantGate,
        tenant: &TenantId,
        stream_id: &str,
    ) -> anyhow::Result<Vec<Folded>> {
        // Without the tenant's CPU turns: this thread already runs only when nothing
        // else wants the CPU, and a turn held by a starved thread would be one less
        // for the tenant's own commands.
        let limits = gate.limits.call_limits();
        let _tenant_slot = gate.call_slot().await;
        let failed = |event: Option<&RecordedEvent>, failure: PluginFailure| {
            Folded::Failed(Failure::at(stream_id, event, failure))
        };
        // Per folder: its state so far, or how it failed.
        let mut progress: Vec<Result<Vec<u8>, Folded>> = Vec::with_capacity(folders.len());
        for folder in folders.iter_mut() {
            progress.push(match folder.instance(&self.runtime, limits.clone()).await {
                Err(failure) => Err(failed(None, failure)),
                Ok(instance) => match instance.initial_state().await {
                    Ok(state) => Ok(state),
                    Err(failure) => {
                        folder.poisoned();
                        Err(failed(None, failure))
                    }
                },
            });
        }
        let (mut after, mut folded) = (0, 0);
        while progress.iter().any(Result::is_ok) {
            let page = retry("reading a stream to verify", || {
                self.store
                    .read_stream(tenant, stream_id, after + 1, PAGE, Direction::Forward)
            })
            .await?;
            let Some(last) = page.last() else { break };
            let (last_version, full) = (last.version, page.len() == PAGE as usize);
            folded += page.len() as u64;
            for (folder, outcome) in folders.iter_mut().zip(progress.iter_mut()) {
                let Ok(state) = outcome else { continue };
                let upcast = folder
                    .serving
                    .upcasters
                    .apply(&self.runtime, limits.clone(), page.clone())
                    .await;
                let events = match upcast {
                    Ok(events) => events,
                    Err(e) => {
                        let mut failure = e.failure;
                        failure.message = format!("upcaster {}: {}", e.upcaster, failure.message);
                        *outcome = Err(failed(Some(&page[0]), failure));
                        continue;
                    }
                };
                for chunk in events.chunks(FOLD_BATCH) {
                    let instance = match folder.instance(&self.runtime, limits.clone()).await {
                        Ok(instance) => instance,
                        Err(failure) => {
                            *outcome = Err(failed(Some(&chunk[0]), failure));
                            break;
                        }
                    };
                    instance.refill_budget();
                    match instance.evolve(state.clone(), chunk).await {
                        Ok(next) => *state = next,
                        Err(failure) => {
                            folder.poisoned();
                            let before = std::mem::take(state);
                            let (event, failure) = self
                                .pinpoint(folder.serving, limits.clone(), before, chunk, failure)
                                .await;
                            *outcome = Err(failed(Some(event), failure));
                            break;
                        }
                    }
                }
            }
            after = last_version;
            if !full {
                break;
            }
        }
        Ok(progress
            .into_iter()
            .map(|outcome| match outcome {
                Ok(state) => Folded::State {
                    state,
                    version: after,
                    events: folded,
                },
                Err(failed) => failed,
            })
            .collect())
    }

    /// Stores the candidate's state of a stream as a snapshot, within the tenant's
    /// storage quota (past it, the candidate folds from the first event when it serves).
    pub(super) async fn keep_snapshot(
        &self,
        gate: &TenantGate,
        tenant: &TenantId,
        stream_id: &str,
        state_key: &str,
        version: u64,
        state: &[u8],
    ) {
        let bytes = crate::tenancy::gate::Stored::Snapshot(state.len() as u64);
        if gate
            .reserve_storage(&self.store, tenant, bytes)
            .await
            .is_err()
        {
            return;
        }
        let snapshot = crate::store::Snapshot {
            version,
            state: state.to_vec(),
        };
        if let Err(error) = self
            .store
            .put_snapshot(tenant, stream_id, state_key, &snapshot)
            .await
        {
            tracing::warn!(%tenant, %stream_id, "verification could not keep a snapshot: {error:#}");
        }
    }

    /// The first event of `chunk` that fails when folded one at a time from `state`.
    async fn pinpoint<'e>(
        &self,
        serving: &ServingAggregate,
        limits: crate::runtime::CallLimits,
        mut state: Vec<u8>,
        chunk: &'e [RecordedEvent],
        batch_failure: PluginFailure,
    ) -> (&'e RecordedEvent, PluginFailure) {
        // A trap poisons the instance that made it: start afresh.
        if let Ok((mut instance, _slot)) = self.runtime.aggregate(&serving.component, limits).await
        {
            for event in chunk {
                instance.refill_budget();
                match instance
                    .evolve(state.clone(), std::slice::from_ref(event))
                    .await
                {
                    Ok(next) => state = next,
                    Err(failure) => return (event, failure),
                }
            }
        }
        (&chunk[0], batch_failure)
    }
}
