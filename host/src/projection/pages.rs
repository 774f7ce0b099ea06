//! A projection worker's reads of the log: one page (the head, and the events of
//! interest after a position), and the next pages read ahead on their own tasks while
//! a batch is handled and committed.

use std::sync::Arc;

use crate::store::{EventStore, RecordedEvent, StoreResult, TenantId};

/// The log's head, and the events of interest after it up to the head.
pub(super) type Page = (u64, Vec<RecordedEvent>);

/// The log's head, and the events of interest after `after` up to it (at most
/// `limit`, in log order).
pub(super) async fn read_page(
    store: Arc<dyn EventStore>,
    tenant: TenantId,
    after: u64,
    limit: u32,
    types: Arc<[String]>,
) -> StoreResult<Page> {
    let head = store.head(&tenant).await?;
    if after >= head {
        return Ok((head, Vec::new()));
    }
    let mut events = store.read_log(&tenant, after, limit, &types).await?;
    events.retain(|e| e.position <= head);
    Ok((head, events))
}

/// The next page of a catch-up, read on its own task while the current batch is
/// handled and committed: the read then costs the build no time. Aborted if dropped
/// unused (the batch failed, shrank, lost its commit, or the worker stopped).
pub(super) struct ReadAhead {
    /// Where the page starts: the position it reads after.
    pub(super) after: u64,
    /// Its size in events, which must match the batch that takes it.
    pub(super) limit: u32,
    /// The read under way; taken once.
    page: Option<tokio::task::JoinHandle<StoreResult<Page>>>,
}

impl ReadAhead {
    pub(super) fn start(
        store: Arc<dyn EventStore>,
        tenant: TenantId,
        after: u64,
        limit: u32,
        types: Arc<[String]>,
    ) -> ReadAhead {
        let page = tokio::spawn(read_page(store, tenant, after, limit, types));
        ReadAhead {
            after,
            limit,
            page: Some(page),
        }
    }

    pub(super) async fn take(mut self) -> StoreResult<Page> {
        let page = self.page.take().expect("taken once");
        page.await
            .map_err(|e| anyhow::anyhow!("the read-ahead task failed: {e}"))?
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let Some(page) = &self.page {
            page.abort();
        }
    }
}
