//! The documents state one projection call carries in its store: where committed
//! documents are read from, and the batch's writes. Its own file so that the sandbox
//! (which holds it in every call's state) and the `projection` world (which serves
//! the `documents` import from it) both depend on it, not on each other.

use std::sync::Arc;

use async_trait::async_trait;

use crate::store::DocumentWrites;

/// Where a projection call reads the documents committed before its batch.
#[async_trait]
pub trait DocumentSource: Send + Sync {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
}

/// The documents state of one projection call.
pub struct DocumentSession {
    /// The documents committed before the batch, read through on a miss.
    pub(super) source: Arc<dyn DocumentSource>,
    /// The batch's own writes (a delete is `None`), read before the source.
    pub(super) writes: DocumentWrites,
    /// Guards against a plugin that writes without bound: past this the call traps.
    pub(super) max_bytes: usize,
    /// Bytes the batch wrote so far, counted against `max_bytes`.
    pub(super) written_bytes: usize,
}
