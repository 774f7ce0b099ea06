//! Confirming an aggregate's active version with the database, one read shared by the
//! commands that ask at the same time (only where hosts share the database).
//!
//! On a fleet, another host may have activated a new version a moment ago, so a
//! command confirms the active version with the database before it decides. A read
//! that began before a command arrived cannot answer it (the activation may have
//! committed in between), but a read that begins after can answer every command
//! waiting by then. So the reads of one plugin form rounds, like the appender's group
//! commit: at most one round reading and one gathering; a command joins the gathering
//! round, which reads as soon as the one before it is done. Under load, one read
//! answers dozens of commands instead of each paying its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::store::{EventStore, StoreResult, TenantId};

/// The active version and the newest version number, or why they could not be read.
type Heads = Result<(u64, u64), Arc<anyhow::Error>>;
type Round = Shared<BoxFuture<'static, Heads>>;
type Key = (TenantId, String);

/// The rounds of one plugin.
#[derive(Default)]
struct Rounds {
    /// Not reading yet: a command arriving now may join it.
    gathering: Option<(u64, Round)>,
    /// Reading: too late to join.
    running: Option<(u64, Round)>,
}

#[derive(Default)]
pub(super) struct Confirmations {
    /// A std `Mutex`: held to look up or move a round, never across a read.
    rounds: Arc<Mutex<HashMap<Key, Rounds>>>,
    next_id: AtomicU64,
}

impl Confirmations {
    /// The active version and the newest version number of plugin `name`, as read by a
    /// query that began after this call.
    pub(super) async fn heads(
        &self,
        store: &Arc<dyn EventStore>,
        tenant: &TenantId,
        name: &str,
    ) -> StoreResult<(u64, u64)> {
        let key: Key = (tenant.clone(), name.to_owned());
        let round = {
            let mut all = self.rounds.lock().expect("rounds lock");
            let rounds = all.entry(key.clone()).or_default();
            match &rounds.gathering {
                Some((_, round)) => round.clone(),
                None => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let before = rounds.running.as_ref().map(|(_, r)| r.clone());
                    let round = read_round(self.rounds.clone(), store.clone(), key, id, before)
                        .boxed()
                        .shared();
                    rounds.gathering = Some((id, round.clone()));
                    round
                }
            }
        };
        round
            .await
            .map_err(|e| anyhow::Error::new(crate::store::fault::Classified::of(&e)))
    }
}

/// One round: waits for the round before it, stops gathering, reads, and leaves.
async fn read_round(
    rounds: Arc<Mutex<HashMap<Key, Rounds>>>,
    store: Arc<dyn EventStore>,
    key: Key,
    id: u64,
    before: Option<Round>,
) -> Heads {
    if let Some(before) = before {
        let _ = before.await;
    }
    {
        let mut all = rounds.lock().expect("rounds lock");
        if let Some(entry) = all.get_mut(&key)
            && entry.gathering.as_ref().is_some_and(|(g, _)| *g == id)
        {
            entry.running = entry.gathering.take();
        }
    }
    let heads = store.plugin_heads(&key.0, &key.1).await.map_err(Arc::new);
    let mut all = rounds.lock().expect("rounds lock");
    if let Some(entry) = all.get_mut(&key) {
        if entry.running.as_ref().is_some_and(|(r, _)| *r == id) {
            entry.running = None;
        }
        if entry.running.is_none() && entry.gathering.is_none() {
            all.remove(&key);
        }
    }
    heads
}
