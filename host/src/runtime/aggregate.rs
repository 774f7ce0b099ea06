//! Calls into the `aggregate` world: initial-state, evolve (in batches) and decide.

use wasmtime::Store;

use super::sandbox::{CallLimits, CallState, PluginFailure, classify, new_store, within_wall};
use crate::store::RecordedEvent;

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "aggregate",
        exports: { default: async },
    });
}

pub use bindings::cairn::plugin::types::{Command, NewEvent, Rejection};
use bindings::{Aggregate, AggregatePre};

/// Events per `evolve` call: large enough that the boundary crossing is amortised,
/// small enough that one call stays far inside its time budget.
const EVOLVE_BATCH: usize = 512;

/// One live instance of an aggregate component, used for one command (or one read)
/// and then dropped.
pub struct AggregateInstance {
    store: Store<CallState>,
    bindings: Aggregate,
}

impl AggregateInstance {
    pub(super) async fn new(
        pre: &AggregatePre<CallState>,
        limits: CallLimits,
    ) -> Result<AggregateInstance, PluginFailure> {
        let mut store = new_store(pre.engine(), limits);
        let (wall, turn) = store.data().call_bounds();
        match within_wall(wall, &turn, pre.instantiate_async(&mut store)).await? {
            Ok(bindings) => Ok(AggregateInstance { store, bindings }),
            Err(error) => {
                let mut failure = classify(error, &store);
                if failure.reason == super::FailureReason::Trap {
                    failure.reason = super::FailureReason::Instantiate;
                }
                Err(failure)
            }
        }
    }

    pub async fn initial_state(&mut self) -> Result<Vec<u8>, PluginFailure> {
        self.store.data().sources.set(0, &[b"initial-state"]);
        let (wall, turn) = self.store.data().call_bounds();
        let result = within_wall(
            wall,
            &turn,
            self.bindings.call_initial_state(&mut self.store),
        )
        .await?;
        result.map_err(|e| classify(e, &self.store))
    }

    /// Folds `events` (in stream order) into `state`.
    pub async fn evolve(
        &mut self,
        mut state: Vec<u8>,
        events: &[RecordedEvent],
    ) -> Result<Vec<u8>, PluginFailure> {
        for chunk in events.chunks(EVOLVE_BATCH) {
            let first = &chunk[0];
            self.store.data().sources.set(
                first.recorded_at.max(0) as u64,
                &[
                    b"evolve",
                    first.stream_id.as_bytes(),
                    &first.version.to_le_bytes(),
                ],
            );
            let records: Vec<_> = chunk.iter().map(to_wit_event).collect();
            let (wall, turn) = self.store.data().call_bounds();
            let call = self.bindings.call_evolve(&mut self.store, &state, &records);
            let result = within_wall(wall, &turn, call).await?;
            state = result.map_err(|e| classify(e, &self.store))?;
        }
        Ok(state)
    }

    /// Decides `command` against `state`. `seed` names the call for the random
    /// generator: the command id when the client gave one, else the stream and the
    /// version the state is at, so a replay of the same command draws the same bytes.
    pub async fn decide(
        &mut self,
        state: &[u8],
        command: &Command,
        seed: &str,
    ) -> Result<Result<Vec<NewEvent>, Rejection>, PluginFailure> {
        self.store
            .data()
            .sources
            .set(command.issued_at, &[b"decide", seed.as_bytes()]);
        let (wall, turn) = self.store.data().call_bounds();
        let call = self.bindings.call_decide(&mut self.store, state, command);
        let result = within_wall(wall, &turn, call).await?;
        result.map_err(|e| classify(e, &self.store))
    }

    /// Restores a whole time budget for the next call (see `CallState::refill_budget`).
    pub fn refill_budget(&mut self) {
        self.store.data_mut().refill_budget();
    }

    /// What the guest printed during this instance's calls.
    pub fn output(&self) -> String {
        self.store.data().output.tail(4096)
    }
}

pub(super) fn to_wit_event(e: &RecordedEvent) -> bindings::cairn::plugin::types::RecordedEvent {
    bindings::cairn::plugin::types::RecordedEvent {
        event_id: e.event_id.clone(),
        stream_id: e.stream_id.clone(),
        version: e.version,
        position: e.position,
        event_type: e.event_type.clone(),
        payload: e.payload.as_bytes().to_vec(),
        metadata: e.metadata.as_bytes().to_vec(),
        recorded_at: e.recorded_at.max(0) as u64,
    }
}

pub(super) fn new_pre(
    linker: &wasmtime::component::Linker<CallState>,
    component: &wasmtime::component::Component,
) -> wasmtime::Result<AggregatePre<CallState>> {
    AggregatePre::new(linker.instantiate_pre(component)?)
}
