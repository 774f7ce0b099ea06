//! What happens when a build's worker stops with an error: a store failure for a
//! passing reason (a lost connection, a serialization failure, a timeout, a busy or
//! full store) is retried with backoff (`store/retry.rs`), from the checkpoint the
//! store holds; anything else (the plugin's failure, the tenant's quota, a store error
//! that is a bug) parks the build for good, as an operator must act on it.
//!
//! A store failure that lasts past the retry budget does not park the build in the
//! store: the worker goes on retrying every 5 s and the build is shown as waiting for
//! the store (`retrying`, with the reason in `error`) on the host that runs it; it
//! resumes on its own at the first commit (or catch-up) that succeeds. Writing a
//! parking into the store would hand its lease back and leave no worker to notice the
//! store's return.

use std::sync::Arc;

use tokio::sync::watch;

use super::restart::{Carried, Halt};
use super::worker::{follow, stop_requested, stopping};
use super::{ProjectionKey, Projections, StoreWait};
use crate::store::{ProjectionRecord, ProjectionStatus, TenantId, now_ms};

/// Runs a build's worker until it is asked to stop, or parks the build.
pub(super) async fn run(
    projections: Arc<Projections>,
    record: ProjectionRecord,
    mut stop: watch::Receiver<bool>,
) {
    let tenant = record.tenant.clone();
    let name = record.name.clone();
    let version = record.version;
    let key: ProjectionKey = (tenant.clone(), name.clone());
    let mut carried = Carried::default();
    // The first run starts from the record it was given; a retry from what the store
    // says (a commit whose answer was lost may have moved the checkpoint).
    let mut reload = false;
    loop {
        let halted = follow(&projections, &record, reload, &mut stop, &mut carried).await;
        if stopping(&stop) {
            return;
        }
        let message = match halted {
            Ok(()) => return,
            Err(Halt::Build(message)) => message,
            Err(Halt::Store {
                transient: false,
                error,
            }) => store_failed(error),
            Err(Halt::Store {
                transient: true,
                error,
            }) => {
                let wait = carried.backoff.failed();
                let past = carried.backoff.past_budget();
                let newly_parked = projections
                    .build_mut(&key, version, |b| {
                        let wait = b.store_wait.get_or_insert_with(|| StoreWait {
                            since: now_ms(),
                            parked: None,
                        });
                        let newly = past && wait.parked.is_none();
                        if past {
                            // The database's own message stays in the server log.
                            wait.parked = Some(format!(
                                "waiting for the store since {} (unix ms): the database is \
                                 unreachable, busy or full; retrying every few seconds, \
                                 the build resumes on its own",
                                wait.since
                            ));
                        }
                        newly
                    })
                    .unwrap_or(false);
                if newly_parked {
                    tracing::error!(%tenant, projection = %name, version,
                        "projection waiting for the store past the retry budget ({:?}); still retrying: {error}",
                        crate::store::retry::budget());
                } else {
                    tracing::warn!(%tenant, projection = %name, version,
                        "projection store call failed; retrying in {wait:?}: {error}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop_requested(&mut stop) => return,
                }
                reload = true;
                continue;
            }
        };
        tracing::warn!(%tenant, projection = %name, version, "projection parked: {message}");
        park(&projections, &tenant, &name, version, &message).await;
        return;
    }
}

/// Marks a build failed with its error. An active build stays active (its documents
/// keep serving reads) but carries the error and is not run again.
async fn park(
    projections: &Projections,
    tenant: &TenantId,
    name: &str,
    version: u64,
    message: &str,
) {
    let key: ProjectionKey = (tenant.clone(), name.to_owned());
    let was_active = projections
        .build_mut(&key, version, |b| {
            b.record.status == ProjectionStatus::Active
        })
        .unwrap_or(false);
    let status = if was_active {
        ProjectionStatus::Active
    } else {
        ProjectionStatus::Failed
    };
    // The message may quote the plugin (a trap, its output), and PostgreSQL cannot
    // store U+0000 in text.
    let message = &message.replace('\0', "\u{fffd}");
    let stored = crate::store::retry::retry("parking a build", || {
        projections
            .store
            .set_projection_status(tenant, name, version, status, Some(message))
    })
    .await;
    if let Err(error) = stored {
        tracing::error!(%tenant, projection = name, "could not park a failed build: {error:#}");
    }
    projections.announce(tenant, name).await;
    projections.build_mut(&key, version, |build| {
        build.record.status = status;
        build.record.error = Some(message.to_owned());
        build.store_wait = None;
        build.worker = None;
    });
}

/// A store failure that parks a build (one that is not expected to pass): the tenant
/// reads an error id, the database's own message stays in the server log.
fn store_failed(error: impl std::fmt::Display) -> String {
    let id = crate::error::new_request_id();
    tracing::error!(error_id = %id, "projection store error: {error:#}");
    format!("the store failed (error id {id} in the server log)")
}
