//! The documents a build has committed, as its batches read them: from the store, and
//! then from memory. A build's worker is the only writer of its documents, so what it
//! read or committed stays true until its next commit, which updates the memory too.
//! Catching up over a long log touches the same few documents again and again (one per
//! account, say); without this each touch was a store read.
//!
//! A batch being committed while the next is handled (see `worker.rs`) is *staged*:
//! reads see its writes first, and once its commit settles they become committed
//! memory. If a commit is refused because another worker moved the checkpoint (a
//! lease that moved while its old holder was paused), the memory is dropped, staged
//! writes included: that other worker may have written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::runtime::projection::DocumentSource;
use crate::store::{DocumentWrites, EventStore, TenantId};

/// Documents (absent ones included) kept at most; past it the memory starts over.
const MAX_ENTRIES: usize = 20_000;
/// Their bytes at most.
const MAX_BYTES: usize = 32 << 20;

/// What is known of the committed documents, by key (`None`: known to be absent).
#[derive(Default)]
struct Known {
    docs: HashMap<String, Option<Arc<[u8]>>>,
    bytes: usize,
}

impl Known {
    fn insert(&mut self, key: String, doc: Option<Arc<[u8]>>) {
        let added = key.len() + doc.as_ref().map_or(0, |d| d.len());
        if self.docs.len() >= MAX_ENTRIES || self.bytes + added > MAX_BYTES {
            *self = Known::default();
        }
        self.bytes += added;
        if let Some(old) = self.docs.insert(key, doc) {
            self.bytes = self.bytes.saturating_sub(old.map_or(0, |d| d.len()));
        }
    }
}

/// One build's committed documents.
pub(super) struct CommittedDocuments {
    pub(super) store: Arc<dyn EventStore>,
    pub(super) tenant: TenantId,
    pub(super) name: String,
    pub(super) version: u64,
    /// A std `Mutex`: held for a map access, never across a read of the store.
    known: Mutex<Known>,
    /// The writes of the batch whose commit is under way, which reads must see before
    /// the store has them; never evicted, unlike `known`.
    staged: Mutex<HashMap<String, Option<Arc<[u8]>>>>,
}

impl CommittedDocuments {
    pub(super) fn new(
        store: Arc<dyn EventStore>,
        tenant: TenantId,
        name: String,
        version: u64,
    ) -> CommittedDocuments {
        CommittedDocuments {
            store,
            tenant,
            name,
            version,
            known: Mutex::new(Known::default()),
            staged: Mutex::default(),
        }
    }

    /// A batch's writes are being committed: reads see them from now on.
    pub(super) fn stage(&self, writes: &DocumentWrites) {
        let mut staged = self.staged.lock().expect("staged lock");
        staged.clear();
        for (key, doc) in writes {
            staged.insert(key.clone(), doc.as_deref().map(Arc::from));
        }
    }

    /// The staged batch committed: its writes are what the store now holds.
    pub(super) fn staged_committed(&self) {
        let staged = std::mem::take(&mut *self.staged.lock().expect("staged lock"));
        let mut known = self.known.lock().expect("documents lock");
        for (key, doc) in staged {
            known.insert(key, doc);
        }
    }

    /// Someone else may have written: read the store again from now on.
    pub(super) fn forget(&self) {
        self.staged.lock().expect("staged lock").clear();
        *self.known.lock().expect("documents lock") = Known::default();
    }
}

#[async_trait]
impl DocumentSource for CommittedDocuments {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(staged) = self.staged.lock().expect("staged lock").get(key) {
            return Ok(staged.as_deref().map(<[u8]>::to_vec));
        }
        if let Some(known) = self.known.lock().expect("documents lock").docs.get(key) {
            return Ok(known.as_deref().map(<[u8]>::to_vec));
        }
        let doc = self
            .store
            .document(&self.tenant, &self.name, self.version, key)
            .await?
            .map(String::into_bytes);
        self.known
            .lock()
            .expect("documents lock")
            .insert(key.to_owned(), doc.as_deref().map(Arc::from));
        Ok(doc)
    }
}
