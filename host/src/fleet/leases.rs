//! One worker per projection build across the fleet: each build that should run
//! (active or building, not parked) has a lease row naming the host that runs it, with
//! an expiry the holder renews every round. A round, on every host, every second (or
//! at once when a new build wants a worker):
//!
//! 1. renew this host's leases;
//! 2. hand back leases of builds that no longer run (retired, parked, deleted);
//! 3. count the live hosts and take expired or unheld leases up to this host's fair
//!    share (the runnable builds divided by the live hosts, rounded up), so that no
//!    host takes every lease and a dead host's leases move within its expiry;
//! 4. hand back leases above the fair share (a host joined), one per round;
//! 5. tell the projections which builds this host now runs.
//!
//! Two hosts may briefly both believe they hold a build (a paused holder whose lease
//! expired): the checkpoint guard on every batch commit keeps effects exactly once.

use std::collections::HashSet;
use std::time::Duration;

use super::FleetHandles;
use crate::error::ApiResult;
use crate::store::retry::{Backoff, Transient};
use crate::store::{LeaseRecord, ProjectionStatus, TenantId, now_ms};

/// How long a lease lasts unless renewed; a dead host's builds move after this.
pub(super) const LEASE_FOR: Duration = Duration::from_secs(5);
/// How often a round runs.
const ROUND_EVERY: Duration = Duration::from_secs(1);

/// One round of the balancer (see the module's comment).
pub(super) async fn balance(me: &str, app: &FleetHandles) -> ApiResult<()> {
    let now = now_ms();
    let until = now + LEASE_FOR.as_millis() as i64;
    app.store.renew_leases(me, until).await?;

    let runnable: Vec<(TenantId, String, u64)> = app
        .store
        .projections(None)
        .await?
        .into_iter()
        .filter(|r| {
            matches!(
                r.status,
                ProjectionStatus::Active | ProjectionStatus::Building
            ) && r.error.is_none()
        })
        .map(|r| (r.tenant, r.name, r.version))
        .collect();
    let leases = app.store.leases().await?;
    let held = |l: &LeaseRecord| l.expires_at > now;
    let mut mine: HashSet<(TenantId, String, u64)> = leases
        .iter()
        .filter(|l| l.owner == me && held(l))
        .map(|l| (l.tenant.clone(), l.name.clone(), l.build))
        .collect();

    // Builds that stopped running: their leases go back.
    for key in mine.clone() {
        if !runnable.contains(&key) {
            app.store
                .release_leases(me, Some((&key.0, &key.1, key.2)))
                .await?;
            mine.remove(&key);
        }
    }

    let alive = app
        .store
        .hosts()
        .await?
        .iter()
        .filter(|h| now - h.heartbeat_at <= LEASE_FOR.as_millis() as i64)
        .count()
        .max(1);
    let share = runnable.len().div_ceil(alive);
    let taken_by_others: HashSet<(TenantId, String, u64)> = leases
        .iter()
        .filter(|l| l.owner != me && held(l))
        .map(|l| (l.tenant.clone(), l.name.clone(), l.build))
        .collect();
    for key in &runnable {
        if mine.len() >= share {
            break;
        }
        if mine.contains(key) || taken_by_others.contains(key) {
            continue;
        }
        let lease = LeaseRecord {
            tenant: key.0.clone(),
            name: key.1.clone(),
            build: key.2,
            owner: me.to_owned(),
            expires_at: until,
        };
        if app.store.take_lease(&lease).await? {
            tracing::info!(tenant = %key.0, projection = key.1, build = key.2, "projection lease taken");
            mine.insert(key.clone());
        }
    }
    // Over the fair share (another host joined): hand one back per round, so the
    // fleet settles without every host letting go at once.
    if mine.len() > share
        && let Some(key) = mine.iter().max().cloned()
    {
        app.store
            .release_leases(me, Some((&key.0, &key.1, key.2)))
            .await?;
        tracing::info!(tenant = %key.0, projection = key.1, build = key.2, "projection lease handed back (over this host's share)");
        mine.remove(&key);
    }
    app.projections.set_owned(mine).await
}

/// Runs rounds every second, and at once when a build wants a worker. A round that
/// failed on the store is tried again sooner (100 ms doubling to the second), so one
/// lost connection does not cost this host its leases (they last `LEASE_FOR`).
pub(super) async fn run(me: String, app: FleetHandles) {
    let mut backoff = Backoff::capped(ROUND_EVERY);
    loop {
        let wait = match balance(&me, &app).await {
            Ok(()) => {
                backoff.succeeded();
                ROUND_EVERY
            }
            Err(error) => {
                tracing::warn!("balancing projection leases failed: {}", error.message);
                if error.is_transient() {
                    backoff.failed()
                } else {
                    ROUND_EVERY
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = app.projections.lease_wanted.notified() => {}
        }
    }
}
