//! Calls into the `projection` world, and the host side of its `documents` import.
//!
//! A projection's document writes during a batch go to an overlay held in the call's
//! store; reads see the overlay first, then the committed documents. The caller takes
//! the overlay after `handle` returns and commits it with the checkpoint, so a batch
//! that traps leaves nothing behind.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use wasmtime::Store;

use super::sandbox::{
    CallLimits, CallState, FailureReason, PluginFailure, classify, new_store, within_wall,
};
pub use crate::store::DocumentWrites;
use crate::store::RecordedEvent;

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "projection",
        exports: { default: async },
        imports: { default: async | trappable },
        with: {
            "cairn:plugin/types": super::super::aggregate::bindings::cairn::plugin::types,
        },
    });
}

use bindings::{Projection, ProjectionPre};

/// Where a projection call reads the documents committed before its batch.
#[async_trait]
pub trait DocumentSource: Send + Sync {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
}

/// The documents state of one projection call.
pub struct DocumentSession {
    source: Arc<dyn DocumentSource>,
    writes: DocumentWrites,
    /// Guards against a plugin that writes without bound: past this the call traps.
    max_bytes: usize,
    written_bytes: usize,
}

impl bindings::cairn::plugin::documents::Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let session = self
            .documents
            .as_ref()
            .expect("projection call has documents");
        if let Some(write) = session.writes.get(&key) {
            return Ok(write.clone());
        }
        let source = session.source.clone();
        source.get(&key).await.map_err(wasmtime::Error::from_anyhow)
    }

    async fn put(&mut self, key: String, doc: Vec<u8>) -> wasmtime::Result<()> {
        let session = self
            .documents
            .as_mut()
            .expect("projection call has documents");
        if serde_json::from_slice::<serde::de::IgnoredAny>(&doc).is_err() {
            wasmtime::bail!("document {key:?} is not JSON");
        }
        session.written_bytes += key.len() + doc.len();
        if session.written_bytes > session.max_bytes {
            wasmtime::bail!(
                "a batch wrote more than {} bytes of documents",
                session.max_bytes
            );
        }
        session.writes.insert(key, Some(doc));
        Ok(())
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        let session = self
            .documents
            .as_mut()
            .expect("projection call has documents");
        session.writes.insert(key, None);
        Ok(())
    }
}

/// One live instance of a projection component.
pub struct ProjectionInstance {
    store: Store<CallState>,
    bindings: Projection,
}

impl ProjectionInstance {
    pub(super) async fn new(
        pre: &ProjectionPre<CallState>,
        limits: CallLimits,
    ) -> Result<ProjectionInstance, PluginFailure> {
        let mut store = new_store(pre.engine(), limits);
        match within_wall(limits.wall, pre.instantiate_async(&mut store)).await? {
            Ok(bindings) => Ok(ProjectionInstance { store, bindings }),
            Err(error) => {
                let mut failure = classify(error, &store);
                if failure.reason == FailureReason::Trap {
                    failure.reason = FailureReason::Instantiate;
                }
                Err(failure)
            }
        }
    }

    /// What the guest printed during this instance's calls.
    pub fn output(&self) -> String {
        self.store.data().output.tail(4096)
    }

    pub async fn event_types(&mut self) -> Result<Vec<String>, PluginFailure> {
        let wall = self.store.data().wall_limit;
        let result = within_wall(wall, self.bindings.call_event_types(&mut self.store)).await?;
        result.map_err(|e| classify(e, &self.store))
    }

    /// Runs `handle` over one batch and returns the document writes it made.
    pub async fn handle(
        &mut self,
        events: &[RecordedEvent],
        source: Arc<dyn DocumentSource>,
        max_bytes: usize,
    ) -> Result<DocumentWrites, PluginFailure> {
        self.store.data_mut().documents = Some(DocumentSession {
            source,
            writes: BTreeMap::new(),
            max_bytes,
            written_bytes: 0,
        });
        if let (Some(first), Some(last)) = (events.first(), events.last()) {
            self.store.data().sources.set(
                last.recorded_at.max(0) as u64,
                &[b"handle", &first.position.to_le_bytes()],
            );
        }
        let records: Vec<_> = events.iter().map(super::aggregate::to_wit_event).collect();
        let wall = self.store.data().wall_limit;
        let result = within_wall(wall, self.bindings.call_handle(&mut self.store, &records)).await;
        let session = self.store.data_mut().documents.take();
        result?.map_err(|e| classify(e, &self.store))?;
        Ok(session.map(|s| s.writes).unwrap_or_default())
    }
}

pub(super) fn add_imports(
    linker: &mut wasmtime::component::Linker<CallState>,
) -> wasmtime::Result<()> {
    bindings::cairn::plugin::documents::add_to_linker::<
        CallState,
        wasmtime::component::HasSelf<CallState>,
    >(linker, |state| state)
}

pub(super) fn new_pre(
    linker: &wasmtime::component::Linker<CallState>,
    component: &wasmtime::component::Component,
) -> wasmtime::Result<ProjectionPre<CallState>> {
    ProjectionPre::new(linker.instantiate_pre(component)?)
}
