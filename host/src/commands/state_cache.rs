//! A bounded cache of aggregate state, so a hot stream is not replayed on every
//! command, and the per-stream locks that give each stream one command at a time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::store::{RecordedEvent, TenantId};

type StreamKey = (TenantId, String);

/// The state of a stream at a version, as folded by one component.
#[derive(Clone, Debug)]
pub struct CachedState {
    /// The component that folded it: a state is meaningless to any other.
    pub digest: String,
    pub version: u64,
    /// Position of the stream's last event (0 for an empty stream).
    pub last_position: u64,
    pub state: Arc<Vec<u8>>,
    /// Version of the newest snapshot known to exist, to decide when to write the next.
    pub snapshot_version: u64,
    /// Events committed after `version` and not folded into `state` yet, in order:
    /// a command's own events, folded by the stream's next user (see
    /// `Commands::fold_pending`), so that a command holds no plugin instance while it
    /// waits for its commit and needs none after it.
    pub pending: Arc<Vec<RecordedEvent>>,
}

impl CachedState {
    /// The stream version this entry stands for once its pending events are folded.
    pub fn head_version(&self) -> u64 {
        self.pending.last().map_or(self.version, |e| e.version)
    }
}

/// Approximate LRU: entries are evicted in the order they were last stored, which
/// for a command-driven cache (every command stores its stream) is recency.
pub struct StateCache {
    capacity: usize,
    /// States larger than this are not cached: they would crowd out many small ones.
    max_state_bytes: usize,
    /// A std `Mutex`: held for a map operation only, never across an await.
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<StreamKey, (u64, CachedState)>,
    /// Keys with the generation they were stored at; stale generations are skipped.
    order: VecDeque<(StreamKey, u64)>,
    generation: u64,
}

impl StateCache {
    pub fn new(capacity: usize, max_state_bytes: usize) -> StateCache {
        StateCache {
            capacity,
            max_state_bytes,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    pub fn get(&self, tenant: &TenantId, stream_id: &str, digest: &str) -> Option<CachedState> {
        let inner = self.inner.lock().expect("state cache lock");
        inner
            .entries
            .get(&(tenant.clone(), stream_id.to_owned()))
            .map(|(_, entry)| entry)
            .filter(|entry| entry.digest == digest)
            .cloned()
    }

    /// Stores a state unless a newer one of the same component is already there.
    pub fn put(&self, tenant: &TenantId, stream_id: &str, entry: CachedState) {
        let pending_bytes: usize = entry
            .pending
            .iter()
            .map(|e| e.payload.len() + e.metadata.len())
            .sum();
        if entry.state.len() + pending_bytes > self.max_state_bytes {
            // Too big to keep; and the entry it replaces is older than what the store
            // now holds, so it goes too (a command deciding on it would only conflict).
            let key = (tenant.clone(), stream_id.to_owned());
            let mut inner = self.inner.lock().expect("state cache lock");
            if inner
                .entries
                .get(&key)
                .is_some_and(|(_, existing)| existing.head_version() < entry.head_version())
            {
                inner.entries.remove(&key);
            }
            return;
        }
        let key = (tenant.clone(), stream_id.to_owned());
        let mut inner = self.inner.lock().expect("state cache lock");
        if let Some((_, existing)) = inner.entries.get(&key)
            && existing.digest == entry.digest
            && existing.head_version() > entry.head_version()
        {
            return;
        }
        inner.generation += 1;
        let generation = inner.generation;
        inner.entries.insert(key.clone(), (generation, entry));
        inner.order.push_back((key, generation));
        while inner.entries.len() > self.capacity {
            let Some((key, generation)) = inner.order.pop_front() else {
                break;
            };
            if inner
                .entries
                .get(&key)
                .is_some_and(|(g, _)| *g == generation)
            {
                inner.entries.remove(&key);
            }
        }
        // Keep the order queue from growing without bound with stale generations.
        if inner.order.len() > self.capacity * 4 {
            let CacheInner { entries, order, .. } = &mut *inner;
            order.retain(|(k, g)| entries.get(k).is_some_and(|(current, _)| current == g));
        }
    }

    /// Drops one stream's entry.
    pub fn forget(&self, tenant: &TenantId, stream_id: &str) {
        let key = (tenant.clone(), stream_id.to_owned());
        self.inner
            .lock()
            .expect("state cache lock")
            .entries
            .remove(&key);
    }

    pub fn forget_tenant(&self, tenant: &TenantId) {
        let mut inner = self.inner.lock().expect("state cache lock");
        inner.entries.retain(|(t, _), _| t != tenant);
    }
}

/// One lock per stream with a command in flight; entries disappear when unused.
#[derive(Default)]
pub struct StreamLocks {
    /// A std `Mutex` around the map; the per-stream locks are tokio mutexes because
    /// they are held across the whole command, awaits included.
    locks: Arc<Mutex<HashMap<StreamKey, Arc<tokio::sync::Mutex<()>>>>>,
}

pub struct StreamGuard {
    key: StreamKey,
    locks: Arc<Mutex<HashMap<StreamKey, Arc<tokio::sync::Mutex<()>>>>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl StreamLocks {
    pub async fn lock(&self, tenant: &TenantId, stream_id: &str) -> StreamGuard {
        let key = (tenant.clone(), stream_id.to_owned());
        let lock = self
            .locks
            .lock()
            .expect("stream locks")
            .entry(key.clone())
            .or_default()
            .clone();
        StreamGuard {
            key,
            locks: self.locks.clone(),
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut locks = self.locks.lock().expect("stream locks");
        self.guard.take();
        // Only the map holds it now: nobody waits, so the entry can go.
        if locks
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.key);
        }
    }
}
