//! What a build's worker carries across its restarts (`Carried`), why it stopped
//! (`Halt`), and how it shows the store is answering again (`recovered`). Its own
//! file: the worker (`worker.rs`) produces these and the supervisor (`supervisor.rs`)
//! acts on them, and neither imports the other's side.

use super::{ProjectionKey, Projections};
use crate::store::retry::{Backoff, Transient};

/// Events per `handle` call at most: big enough to amortise the boundary crossing and
/// the commit, small enough to stay well inside one call's time budget. A batch that
/// runs out of CPU time is halved at once (no attempt counted, no back-off) and the
/// size grows back by doubling after `GROW_AFTER` (`worker.rs`) clean batches, so a slow component
/// or a busy machine settles on what fits the budget instead of stalling the build.
pub(super) const BATCH: u32 = super::CATCH_UP_PAGE;

/// What a build's worker keeps across its restarts after store failures: a store
/// failure between two attempts at a failing batch must not reset what they learnt,
/// or a plugin that fails while the store flickers would never be parked.
pub(super) struct Carried {
    /// The waits between restarts, and how long the store has been failing.
    pub backoff: Backoff,
    /// Attempts at the failing batch so far.
    pub attempt: u32,
    /// The end of the batch being retried one event at a time.
    pub isolate_until: u64,
    /// Events per batch now (halved when a batch ran out of time), and the clean
    /// batches since, towards doubling it again.
    pub batch: u32,
    pub clean_batches: u32,
}

impl Default for Carried {
    fn default() -> Carried {
        Carried {
            backoff: Backoff::new(),
            attempt: 0,
            isolate_until: 0,
            batch: BATCH,
            clean_batches: 0,
        }
    }
}

/// Why a worker stopped before it was asked to.
pub(super) enum Halt {
    /// The plugin failed, or the tenant's limits stop the build: parked for good.
    Build(String),
    /// A store call failed: retried when `transient`, parked otherwise (a bug).
    Store { transient: bool, error: String },
}

impl Halt {
    /// A store failure, retried if its kind says it may pass.
    pub(super) fn store(error: anyhow::Error) -> Halt {
        Halt::Store {
            transient: error.is_transient(),
            error: format!("{error:#}"),
        }
    }

    /// A failure answered as an `ApiError` (the tenant's gate, the upcasters, the
    /// storage quota): the store's passing failures are retried, the rest is the
    /// build's own.
    pub(super) fn api(context: &str, error: crate::error::ApiError) -> Halt {
        if error.is_transient() {
            Halt::Store {
                transient: true,
                error: format!("{context}{}", error.message),
            }
        } else {
            Halt::Build(format!("{context}{}", error.message))
        }
    }
}

/// The worker made progress (a commit stood, or it reached the head): a build that
/// was waiting for the store is shown running again.
pub(super) fn recovered(
    projections: &Projections,
    key: &ProjectionKey,
    version: u64,
    backoff: &mut Backoff,
) {
    if backoff.failing_for().is_none() {
        return;
    }
    backoff.succeeded();
    projections.build_mut(key, version, |b| b.store_wait = None);
    tracing::info!(tenant = %key.0, projection = %key.1, version, "projection resumed: the store answers again");
}
