//! Calls into the `projection` world, and the host side of its `documents` import.
//!
//! A projection's document writes during a batch go to an overlay held in the call's
//! store; reads see the overlay first, then the committed documents. The caller takes
//! the overlay after `handle` returns and commits it with the checkpoint, so a batch
//! that traps leaves nothing behind.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::Store;

pub use super::documents::{DocumentSession, DocumentSource};
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

/// The 0.1.0 world, for its `documents` import only: a projection built against 0.1.0
/// exports the same functions with the same types, so the current bindings call it,
/// and the linker answers its `documents@0.1.0` import with the same host functions.
pub mod bindings_0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "projection",
        exports: { default: async },
        imports: { default: async | trappable },
        with: {
            "cairn:plugin/types": super::super::aggregate::bindings::cairn::plugin::types,
        },
    });
}

use bindings::{Projection, ProjectionPre};

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
        check_key(&key)?;
        if doc.len() > MAX_DOCUMENT_BYTES {
            wasmtime::bail!(
                "document {key:?} is {} bytes; a document may hold at most {MAX_DOCUMENT_BYTES}",
                doc.len()
            );
        }
        // Parsed whole, not skimmed: a lone surrogate escape or a number out of range
        // (`1e999`) is refused here instead of failing every later read.
        if !crate::strict_json::is_strict(&doc) {
            wasmtime::bail!("document {key:?} is not strict JSON");
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
        check_key(&key)?;
        // A delete is a write too: it counts toward the batch's cap.
        session.written_bytes += key.len() + DELETE_COST;
        if session.written_bytes > session.max_bytes {
            wasmtime::bail!(
                "a batch wrote more than {} bytes of documents",
                session.max_bytes
            );
        }
        session.writes.insert(key, None);
        Ok(())
    }
}

/// Longest document key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest document, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// What a delete counts toward a batch's write cap beside its key: a row to remove.
const DELETE_COST: usize = 64;

fn check_key(key: &str) -> wasmtime::Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        wasmtime::bail!("a document key must be 1 to {MAX_KEY_BYTES} bytes");
    }
    if let Some(bad) = key.chars().find(|c| c.is_control()) {
        wasmtime::bail!(
            "a document key must hold no control characters; {key:?} holds U+{:04X}",
            bad as u32
        );
    }
    Ok(())
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
        let bounds = store.data().call_bounds();
        match within_wall(bounds, pre.instantiate_async(&mut store)).await? {
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
        let bounds = self.store.data().call_bounds();
        let result = within_wall(bounds, self.bindings.call_event_types(&mut self.store)).await?;
        result.map_err(|e| classify(e, &self.store))
    }

    /// Runs `handle` over one batch and returns the document writes it made. The
    /// events are taken, not borrowed: their strings move into the call's arguments
    /// instead of being copied (a batch is thousands of events).
    pub async fn handle(
        &mut self,
        events: Vec<RecordedEvent>,
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
        let records: Vec<_> = events
            .into_iter()
            .map(super::aggregate::into_wit_event)
            .collect();
        let bounds = self.store.data().call_bounds();
        let result =
            within_wall(bounds, self.bindings.call_handle(&mut self.store, &records)).await;
        let session = self.store.data_mut().documents.take();
        result?.map_err(|e| classify(e, &self.store))?;
        Ok(session.map(|s| s.writes).unwrap_or_default())
    }
}

impl bindings_0_1::cairn::plugin::documents::Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        bindings::cairn::plugin::documents::Host::get(self, key).await
    }

    async fn put(&mut self, key: String, doc: Vec<u8>) -> wasmtime::Result<()> {
        bindings::cairn::plugin::documents::Host::put(self, key, doc).await
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        bindings::cairn::plugin::documents::Host::delete(self, key).await
    }
}

/// `cairn:plugin/documents`, under the current version and under 0.1.0.
pub(super) fn add_imports(
    linker: &mut wasmtime::component::Linker<CallState>,
) -> wasmtime::Result<()> {
    bindings::cairn::plugin::documents::add_to_linker::<
        CallState,
        wasmtime::component::HasSelf<CallState>,
    >(linker, |state| state)?;
    bindings_0_1::cairn::plugin::documents::add_to_linker::<
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

#[cfg(test)]
mod tests {
    use super::bindings::cairn::plugin::documents::Host;
    use super::*;
    use async_trait::async_trait;

    struct Empty;

    #[async_trait]
    impl DocumentSource for Empty {
        async fn get(&self, _key: &str) -> anyhow::Result<Option<Vec<u8>>> {
            Ok(None)
        }
    }

    fn session_store(max_bytes: usize) -> Store<CallState> {
        let engine = wasmtime::Engine::default();
        let mut store = new_store(&engine, CallLimits::default());
        store.data_mut().documents = Some(DocumentSession {
            source: Arc::new(Empty),
            writes: BTreeMap::new(),
            max_bytes,
            written_bytes: 0,
        });
        store
    }

    #[tokio::test]
    async fn documents_must_be_strict_json_of_bounded_size_under_sane_keys() {
        let mut store = session_store(64 << 20);
        let state = store.data_mut();
        assert!(state.put("k".into(), br#"{"a":1}"#.to_vec()).await.is_ok());
        for bad in [&b"{\"a\":1e999}"[..], b"\"\\ud800\"", b"{", b"nope"] {
            let error = state.put("k".into(), bad.to_vec()).await.unwrap_err();
            assert!(error.to_string().contains("strict JSON"), "{error}");
        }
        let big = format!("\"{}\"", "a".repeat(MAX_DOCUMENT_BYTES));
        let error = state.put("k".into(), big.into_bytes()).await.unwrap_err();
        assert!(error.to_string().contains("at most"), "{error}");
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(state.put(long_key, b"1".to_vec()).await.is_err());
        assert!(state.put("a\nb".into(), b"1".to_vec()).await.is_err());
        assert!(state.delete(String::new()).await.is_err());
    }

    #[tokio::test]
    async fn deletes_count_toward_the_batch_cap() {
        let mut store = session_store(10_000);
        let state = store.data_mut();
        let mut refused = None;
        for i in 0..1000 {
            if let Err(error) = state.delete(format!("key-{i}")).await {
                refused = Some((i, error));
                break;
            }
        }
        let (at, error) = refused.expect("a batch of deletes hits the cap");
        assert!(at < 200, "refused after {at} deletes");
        assert!(
            error.to_string().contains("more than 10000 bytes"),
            "{error}"
        );
    }
}
