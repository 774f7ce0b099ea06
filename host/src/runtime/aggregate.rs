//! Calls into the `aggregate` world: initial-state, evolve (in batches) and decide.
//!
//! Two versions of the world are served: the current contract (`wit/cairn.wit`) and
//! components built against 0.1.0 (`wit/v0.1.0`), whose `decide` refuses with a plain
//! rejection. Everything else about them is the same, so one instance type drives
//! both and `decide`'s answer is translated into the current form.

use wasmtime::Store;

use super::sandbox::{
    CallLimits, CallState, FailureReason, PluginFailure, classify, new_store, within_wall,
};
use crate::store::RecordedEvent;

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "aggregate",
        exports: { default: async },
    });
}

/// The 0.1.0 world. Its types are the current ones (they did not change; component
/// types are checked by shape), so only `decide`'s error differs.
pub mod bindings_0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "aggregate",
        exports: { default: async },
        with: { "cairn:plugin/types": super::bindings::cairn::plugin::types },
    });
}

pub use bindings::cairn::plugin::types::{Command, DecideError, NewEvent, Rejection};

/// What `decide` answered for a 0.1.0 component that could not read its command.
const INVALID_COMMAND_0_1: &str = "invalid_command";

/// A linked aggregate component, of either version of the world.
#[derive(Clone)]
pub enum AggregatePre {
    Current(bindings::AggregatePre<CallState>),
    V0_1(bindings_0_1::AggregatePre<CallState>),
}

/// An instantiated aggregate, of either version of the world.
enum Aggregate {
    Current(bindings::Aggregate),
    V0_1(bindings_0_1::Aggregate),
}

impl AggregatePre {
    fn engine(&self) -> &wasmtime::Engine {
        match self {
            AggregatePre::Current(pre) => pre.engine(),
            AggregatePre::V0_1(pre) => pre.engine(),
        }
    }

    async fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Aggregate> {
        Ok(match self {
            AggregatePre::Current(pre) => Aggregate::Current(pre.instantiate_async(store).await?),
            AggregatePre::V0_1(pre) => Aggregate::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

/// Events per `evolve` call to begin with: large enough that the boundary crossing is
/// amortised, small enough that one call of a Rust component stays far inside its time
/// budget. A slower component (another language, heavier logic) gets smaller batches:
/// see [`AggregateInstance::evolve`].
const EVOLVE_BATCH: usize = 512;

/// One live instance of an aggregate component, used for one command (or one read)
/// and then dropped.
pub struct AggregateInstance {
    store: Store<CallState>,
    bindings: Aggregate,
    /// Kept to make a fresh instance when a batch runs out of time (a trap leaves the
    /// old one unusable); cheap clones of `Arc`s.
    pre: AggregatePre,
    limits: CallLimits,
    /// Events per `evolve` call, halved each time a batch runs past the call's time
    /// budget so that a long history always folds, only in more calls.
    batch: usize,
}

impl AggregateInstance {
    pub(super) async fn new(
        pre: &AggregatePre,
        limits: CallLimits,
    ) -> Result<AggregateInstance, PluginFailure> {
        let mut store = new_store(pre.engine(), limits.clone());
        let bounds = store.data().call_bounds();
        match within_wall(bounds, pre.instantiate(&mut store)).await? {
            Ok(bindings) => Ok(AggregateInstance {
                store,
                bindings,
                pre: pre.clone(),
                limits,
                batch: EVOLVE_BATCH,
            }),
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
        let bounds = self.store.data().call_bounds();
        let store = &mut self.store;
        let result = match &self.bindings {
            Aggregate::Current(b) => within_wall(bounds, b.call_initial_state(store)).await?,
            Aggregate::V0_1(b) => within_wall(bounds, b.call_initial_state(store)).await?,
        };
        result.map_err(|e| classify(e, &self.store))
    }

    /// Folds `events` (in stream order) into `state`, in as many `evolve` calls as it
    /// takes. Every call has the whole time budget of one plugin call: the limit is per
    /// call, not per history, so a valid stream of any length folds. A batch that runs
    /// past the budget is retried in halves on a fresh instance (the timed-out one is
    /// unusable), down to one event; only an event that alone exceeds the budget fails.
    pub async fn evolve(
        &mut self,
        mut state: Vec<u8>,
        events: &[RecordedEvent],
    ) -> Result<Vec<u8>, PluginFailure> {
        let mut done = 0;
        while done < events.len() {
            let chunk = &events[done..events.len().min(done + self.batch)];
            match self.evolve_once(&state, chunk).await {
                Ok(next) => {
                    state = next;
                    done += chunk.len();
                }
                Err(failure) if failure.reason == FailureReason::Deadline && chunk.len() > 1 => {
                    self.batch = chunk.len() / 2;
                    tracing::debug!(
                        batch = self.batch,
                        "an evolve batch ran out of time; halving"
                    );
                    *self = AggregateInstance {
                        batch: self.batch,
                        ..AggregateInstance::new(&self.pre, self.limits.clone()).await?
                    };
                }
                Err(failure) => return Err(failure),
            }
        }
        Ok(state)
    }

    /// One `evolve` call, with a whole time budget of its own.
    async fn evolve_once(
        &mut self,
        state: &[u8],
        chunk: &[RecordedEvent],
    ) -> Result<Vec<u8>, PluginFailure> {
        let first = &chunk[0];
        self.store.data().sources.set(
            first.recorded_at.max(0) as u64,
            &[
                b"evolve",
                first.stream_id.as_bytes(),
                &first.version.to_le_bytes(),
            ],
        );
        self.store.data_mut().refill_budget();
        let records: Vec<_> = chunk.iter().map(to_wit_event).collect();
        let bounds = self.store.data().call_bounds();
        let store = &mut self.store;
        let result = match &self.bindings {
            Aggregate::Current(b) => {
                within_wall(bounds, b.call_evolve(store, state, &records)).await?
            }
            Aggregate::V0_1(b) => {
                within_wall(bounds, b.call_evolve(store, state, &records)).await?
            }
        };
        result.map_err(|e| classify(e, &self.store))
    }

    /// Decides `command` against `state`. `seed` names the call for the random
    /// generator: the command id when the client gave one, else the stream and the
    /// version the state is at, so a replay of the same command draws the same bytes.
    pub async fn decide(
        &mut self,
        state: &[u8],
        command: &Command,
        seed: &str,
    ) -> Result<Result<Vec<NewEvent>, DecideError>, PluginFailure> {
        self.store
            .data()
            .sources
            .set(command.issued_at, &[b"decide", seed.as_bytes()]);
        // `decide` is a call of its own, with its own budget, however long the load
        // before it took.
        self.store.data_mut().refill_budget();
        let bounds = self.store.data().call_bounds();
        let store = &mut self.store;
        let result = match &self.bindings {
            Aggregate::Current(b) => {
                within_wall(bounds, b.call_decide(store, state, command)).await?
            }
            Aggregate::V0_1(b) => within_wall(bounds, b.call_decide(store, state, command))
                .await?
                .map(|answer| answer.map_err(decide_error_0_1)),
        };
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

/// [`to_wit_event`] without copying: the event's strings become the record's.
pub(super) fn into_wit_event(e: RecordedEvent) -> bindings::cairn::plugin::types::RecordedEvent {
    bindings::cairn::plugin::types::RecordedEvent {
        event_id: e.event_id,
        stream_id: e.stream_id,
        version: e.version,
        position: e.position,
        event_type: e.event_type,
        payload: e.payload.into_bytes(),
        metadata: e.metadata.into_bytes(),
        recorded_at: e.recorded_at.max(0) as u64,
    }
}

/// A 0.1.0 refusal in the current form: the reserved code was its way of saying the
/// command could not be read.
fn decide_error_0_1(rejection: Rejection) -> DecideError {
    if rejection.code == INVALID_COMMAND_0_1 {
        DecideError::InvalidCommand(rejection.message)
    } else {
        DecideError::Rejected(rejection)
    }
}

/// Links a component of the current world, else of the 0.1.0 world; the error is the
/// current world's (what a plugin author should build against).
pub(super) fn new_pre(
    linker: &wasmtime::component::Linker<CallState>,
    component: &wasmtime::component::Component,
) -> wasmtime::Result<AggregatePre> {
    let pre = linker.instantiate_pre(component)?;
    match bindings::AggregatePre::new(pre.clone()) {
        Ok(current) => Ok(AggregatePre::Current(current)),
        Err(error) => match bindings_0_1::AggregatePre::new(pre) {
            Ok(old) => Ok(AggregatePre::V0_1(old)),
            Err(_) => Err(error),
        },
    }
}
