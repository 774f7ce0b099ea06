//! Whether the database answers right now, watched from one place so that requests
//! need not each find out by hanging: a ping every half second, bounded to one second;
//! two misses in a row mark the store unreachable, one answer marks it reachable.
//!
//! While it is unreachable the API answers `503 store_unavailable` at once (and ends
//! requests already waiting on it the same way, `api/outage.rs`), and `/readyz` says not
//! ready without asking the database. A frozen database or network path (nothing
//! refuses, nothing answers) is the case this is for: PostgreSQL's own timeouts cannot
//! fire on a server that does not run.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::EventStore;

/// Time between pings.
const PING_EVERY: Duration = Duration::from_millis(500);

/// How long one ping may take before it counts as a miss.
const PING_BOUND: Duration = Duration::from_secs(1);

/// Misses in a row that make the store unreachable.
const MISSES: u32 = 2;

/// The watch's shared state (cheap to clone).
#[derive(Clone)]
pub struct Reachability {
    /// `true` while the last pings were answered.
    reachable: watch::Receiver<bool>,
}

impl Reachability {
    /// Starts pinging `store` for as long as the process lives.
    pub fn start(store: Arc<dyn EventStore>) -> Reachability {
        let (sender, reachable) = watch::channel(true);
        tokio::spawn(async move {
            let mut misses = 0;
            let mut every = tokio::time::interval(PING_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let answered = matches!(
                    tokio::time::timeout(PING_BOUND, store.ping()).await,
                    Ok(true)
                );
                misses = if answered { 0 } else { misses + 1 };
                let now = misses < MISSES;
                if *sender.borrow() != now {
                    if now {
                        tracing::warn!("the database answers again");
                    } else {
                        tracing::error!(
                            "the database does not answer: requests answer 503 \
                             store_unavailable until it does"
                        );
                    }
                    sender.send_replace(now);
                }
                if sender.is_closed() {
                    return;
                }
            }
        });
        Reachability { reachable }
    }

    /// Whether the database answered the last pings.
    pub fn is_reachable(&self) -> bool {
        *self.reachable.borrow()
    }

    /// Resolves when the database is (or becomes) unreachable.
    pub async fn lost(&self) {
        let mut reachable = self.reachable.clone();
        let _ = reachable.wait_for(|ok| !ok).await;
    }
}
