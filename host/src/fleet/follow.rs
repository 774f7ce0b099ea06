//! Applying the other hosts' notices to what this host caches: log heads (live
//! subscribers, projection workers), plugin versions, projection builds, tenants'
//! tokens and limits, deleted tenants. A notice whose reads fail for a passing reason
//! is retried (`store/retry.rs`); one given up on is made good by a resynchronisation.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use super::FleetHandles;
use crate::error::ApiResult;
use crate::store::retry::{MAX_DELAY, retry};
use crate::store::{Notice, TenantId};

/// Applies notices as they come, and resynchronises every `resync_every` in case one
/// was lost. Ends when the listener does (the store is gone).
pub(super) async fn follow(
    app: FleetHandles,
    mut notices: UnboundedReceiver<Notice>,
    resync_every: Duration,
) {
    let mut resync = tokio::time::interval(resync_every);
    // The first tick is immediate: the host has just read everything at start-up.
    resync.tick().await;
    // A notice that could not be applied (the store failing past the retry budget):
    // everything is read again as soon as the store may answer.
    let mut missed = false;
    loop {
        let notice = tokio::select! {
            notice = notices.recv() => match notice {
                Some(notice) => notice,
                None => return,
            },
            _ = resync.tick() => Notice::Resync,
            _ = tokio::time::sleep(MAX_DELAY), if missed => Notice::Resync,
        };
        // The store's passing failures are retried with backoff; a notice dropped on
        // the first lost connection would leave this host's caches behind until the
        // next resynchronisation.
        match retry("following another host's change", || apply(&app, &notice)).await {
            Ok(()) => missed &= notice != Notice::Resync,
            Err(error) => {
                tracing::warn!(
                    ?notice,
                    "following another host's change failed: {}",
                    error.message
                );
                missed = true;
            }
        }
    }
}

async fn apply(app: &FleetHandles, notice: &Notice) -> ApiResult<()> {
    match notice {
        Notice::Appended { tenant, position } => {
            app.heads.advance(tenant, *position);
            app.live.announce(tenant, *position);
        }
        Notice::Plugins { tenant } => app.plugins.follow_store(tenant).await?,
        Notice::Projections { tenant, name } => {
            app.projections.follow_store(tenant, Some(name)).await?;
        }
        Notice::Tenant { tenant } => follow_tenant(app, tenant).await?,
        Notice::Progress {
            tenant,
            name,
            build,
            position,
        } => app.projections.progressed(tenant, name, *build, *position),
        Notice::Resync => {
            for tenant in app.tenants.known() {
                follow_tenant(app, &tenant).await?;
            }
            app.plugins.resync().await?;
            app.projections.resync().await?;
        }
    }
    Ok(())
}

/// A tenant another host changed: its token and limits are read again; when it was
/// deleted, this host forgets it everywhere.
async fn follow_tenant(app: &FleetHandles, tenant: &TenantId) -> ApiResult<()> {
    if !app.tenants.follow_store(tenant).await? {
        (app.forget_tenant)(tenant);
        tracing::info!(%tenant, "tenant deleted by another host; forgotten here");
    }
    Ok(())
}
