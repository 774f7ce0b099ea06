//! Calls into the `upcaster` world: `event-types` and `upcast`, which maps each
//! stored event to zero or more events in the shape current readers expect.

use wasmtime::Store;

use super::sandbox::{
    CallLimits, CallState, FailureReason, PluginFailure, classify, new_store, within_wall,
};
use crate::store::RecordedEvent;

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "upcaster",
        exports: { default: async },
        with: {
            "cairn:plugin/types": super::super::aggregate::bindings::cairn::plugin::types,
        },
    });
}

use bindings::{Upcaster, UpcasterPre};

/// Events per `upcast` call, as for `evolve`.
const UPCAST_BATCH: usize = 512;

/// The most events one stored event may become. Splitting an event in a few is what
/// upcasters are for; a thousand is a reader's memory spent on the tenant's behalf.
pub const MAX_EVENTS_PER_SOURCE: usize = 100;

/// The most bytes (types, payloads and the metadata each output event keeps) one
/// call's output may hold.
pub const MAX_OUTPUT_BYTES_PER_CALL: usize = 8 << 20;

/// One live instance of an upcaster component.
pub struct UpcasterInstance {
    store: Store<CallState>,
    bindings: Upcaster,
}

impl UpcasterInstance {
    pub(super) async fn new(
        pre: &UpcasterPre<CallState>,
        limits: CallLimits,
    ) -> Result<UpcasterInstance, PluginFailure> {
        let mut store = new_store(pre.engine(), limits);
        let bounds = store.data().call_bounds();
        match within_wall(bounds, pre.instantiate_async(&mut store)).await? {
            Ok(bindings) => Ok(UpcasterInstance { store, bindings }),
            Err(error) => {
                let mut failure = classify(error, &store);
                if failure.reason == FailureReason::Trap {
                    failure.reason = FailureReason::Instantiate;
                }
                Err(failure)
            }
        }
    }

    pub async fn event_types(&mut self) -> Result<Vec<String>, PluginFailure> {
        self.store.data().sources.set(0, &[b"event-types"]);
        let bounds = self.store.data().call_bounds();
        let result = within_wall(bounds, self.bindings.call_event_types(&mut self.store)).await?;
        result.map_err(|e| classify(e, &self.store))
    }

    /// Upcasts `events` (all of this upcaster's types): one list per input event.
    /// Each output event keeps the identity of its source (id, stream, version,
    /// position, metadata, time); only its type and payload change. Every call gets a
    /// whole time budget: the limit is per call, and a long history takes many.
    pub async fn upcast(
        &mut self,
        events: &[RecordedEvent],
    ) -> Result<Vec<Vec<RecordedEvent>>, PluginFailure> {
        let mut out = Vec::with_capacity(events.len());
        for chunk in events.chunks(UPCAST_BATCH) {
            let first = &chunk[0];
            self.store.data_mut().refill_budget();
            self.store.data().sources.set(
                first.recorded_at.max(0) as u64,
                &[
                    b"upcast",
                    first.stream_id.as_bytes(),
                    &first.version.to_le_bytes(),
                ],
            );
            let records: Vec<_> = chunk.iter().map(super::aggregate::to_wit_event).collect();
            let bounds = self.store.data().call_bounds();
            let call = self.bindings.call_upcast(&mut self.store, &records);
            let result = within_wall(bounds, call).await?;
            let mapped = result.map_err(|e| classify(e, &self.store))?;
            if mapped.len() != chunk.len() {
                return Err(PluginFailure::invalid_output(format!(
                    "upcast returned {} lists for {} events: it must return one per event",
                    mapped.len(),
                    chunk.len()
                )));
            }
            // Counted as the events are made (each carries its source's metadata), so a
            // call past the bound stops before it has copied more than the bound.
            let mut bytes = 0usize;
            for (source, replacements) in chunk.iter().zip(mapped) {
                if replacements.len() > MAX_EVENTS_PER_SOURCE {
                    return Err(PluginFailure::invalid_output(format!(
                        "upcast of {} (version {}) returned {} events; at most \
                         {MAX_EVENTS_PER_SOURCE} may replace one stored event",
                        source.stream_id,
                        source.version,
                        replacements.len()
                    )));
                }
                let mut these = Vec::with_capacity(replacements.len());
                for new in replacements {
                    if let Some(problem) = crate::store::name_problem("type", &new.event_type) {
                        return Err(PluginFailure::invalid_output(format!(
                            "upcast of {} (version {}) returned an unusable event: {problem}",
                            source.stream_id, source.version
                        )));
                    }
                    let payload = String::from_utf8(new.payload)
                        .ok()
                        .filter(|p| crate::strict_json::is_strict(p.as_bytes()))
                        .ok_or_else(|| {
                            PluginFailure::invalid_output(format!(
                                "upcast of {} (version {}) returned a {} event whose payload \
                                 is not JSON",
                                source.stream_id, source.version, new.event_type
                            ))
                        })?;
                    bytes += new.event_type.len() + payload.len() + source.metadata.len();
                    if bytes > MAX_OUTPUT_BYTES_PER_CALL {
                        return Err(PluginFailure::invalid_output(format!(
                            "upcast returned more than {MAX_OUTPUT_BYTES_PER_CALL} bytes \
                             (types, payloads and the metadata each event keeps) for {} \
                             events; that is the most allowed per call",
                            chunk.len()
                        )));
                    }
                    these.push(RecordedEvent {
                        event_type: new.event_type,
                        payload,
                        ..source.clone()
                    });
                }
                out.push(these);
            }
        }
        Ok(out)
    }

    /// What the guest printed during this instance's calls.
    pub fn output(&self) -> String {
        self.store.data().output.tail(4096)
    }
}

pub(super) fn new_pre(
    linker: &wasmtime::component::Linker<CallState>,
    component: &wasmtime::component::Component,
) -> wasmtime::Result<UpcasterPre<CallState>> {
    UpcasterPre::new(linker.instantiate_pre(component)?)
}
