//! Snapshot warming: when an aggregate gets a new active version, or an import writes
//! long histories, the affected streams' snapshots are built in the background, the
//! longest streams first, so the first command on a long stream does not fold it from
//! event 1 within its own budget.
//!
//! Verification already keeps a snapshot of every stream it folds; warming covers
//! what it did not see (streams left out of a sampled verification, events appended
//! since, a rollback to an older version, imports) and costs one snapshot lookup for
//! a stream that is already warm. It runs on the verifier's idle-priority thread:
//! only CPU that commands, reads and projections leave over is spent on it. A command
//! never waits for it (no stream lock is held); one that arrives first folds on its
//! own, under its own budget, as it would without warming.

use std::collections::HashSet;
use std::sync::Arc;

use super::Commands;
use crate::metrics::Metrics;
use crate::plugins::{Activated, Plugins};
use crate::store::retry::{Backoff, Transient, retry};
use crate::store::{PluginKind, TenantId};
use crate::tenancy::tenant::Tenants;
use crate::vocab::stream_prefix;

/// Streams shorter than this are not warmed: they fold quickly from their first event.
const WARM_FROM_VERSION: u64 = 100;

/// What warming uses, and only that: the plugin registry (active versions, their
/// streams), the tenants (their gates) and the command pipeline (its fold and
/// snapshot writes). Cheap to clone: every part is shared.
#[derive(Clone)]
pub struct Warmer {
    /// Active versions, activations and the streams of an aggregate.
    pub plugins: Arc<Plugins>,
    /// Each tenant's gate: warming runs under its call slots and limits.
    pub tenants: Arc<Tenants>,
    /// The fold and snapshot writes warming shares with commands.
    pub commands: Arc<Commands>,
}

/// Starts warming after every activation this host makes (explicitly or at the end of
/// a verification). Call once, after the host is assembled.
pub fn start(app: Warmer) {
    let Some(mut activations) = app.plugins.take_activations() else {
        return;
    };
    crate::plugins::background::runtime().spawn(async move {
        while let Some(Activated { tenant, name }) = activations.recv().await {
            warm_aggregate(&app, &tenant, &name, None).await;
        }
    });
}

/// Warms the given streams (an import's) in the background: each one that belongs to
/// an active aggregate of the tenant.
pub fn spawn_for_streams(app: Warmer, tenant: TenantId, streams: HashSet<String>) {
    crate::plugins::background::runtime().spawn(async move {
        let Ok(versions) = retry("listing plugins to warm", || app.plugins.all(&tenant)).await
        else {
            return;
        };
        let aggregates: Vec<String> = versions
            .iter()
            .filter(|v| v.kind == PluginKind::Aggregate && v.active)
            .map(|v| v.name.clone())
            .collect();
        for name in aggregates {
            let prefix = stream_prefix(&name);
            let mine: HashSet<String> = streams
                .iter()
                .filter(|s| s.starts_with(&prefix))
                .cloned()
                .collect();
            if !mine.is_empty() {
                warm_aggregate(&app, &tenant, &name, Some(mine)).await;
            }
        }
    });
}

/// Builds the active version's snapshots of the aggregate's streams (or of `only`),
/// longest first. Stops when the active version changes: the new one is warmed by its
/// own activation.
async fn warm_aggregate(
    app: &Warmer,
    tenant: &TenantId,
    name: &str,
    only: Option<HashSet<String>>,
) {
    // The store's passing failures (a lost connection, a busy database) are retried
    // for the retry budget, like every background worker's; past it, or for anything
    // else, warming gives up: commands fold on their own, as without it.
    let (Ok(gate), Ok(serving)) = (
        retry("warming: the tenant", || app.tenants.gate(tenant)).await,
        retry("warming: the active version", || {
            app.plugins.aggregate(tenant, name)
        })
        .await,
    ) else {
        return;
    };
    let Ok(mut streams) = retry("warming: the streams", || {
        app.plugins.streams_of(tenant, name)
    })
    .await
    else {
        return;
    };
    streams.retain(|(stream, version)| {
        *version >= WARM_FROM_VERSION && only.as_ref().is_none_or(|o| o.contains(stream))
    });
    streams.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let commands: &Commands = &app.commands;
    let mut warmed = 0u64;
    for (stream_id, head) in streams {
        match retry("warming: the active version", || {
            app.plugins.aggregate(tenant, name)
        })
        .await
        {
            Ok(now) if now.state_key == serving.state_key => {}
            _ => return,
        }
        let _tenant_slot = gate.call_slot().await;
        let Ok((mut instance, _slot)) = commands
            .runtime
            .aggregate(&serving.component, gate.call_limits())
            .await
        else {
            return;
        };
        // A retry starts from the snapshot the failed attempt got to.
        let mut backoff = Backoff::new();
        let warmed_stream = loop {
            match commands
                .warm_stream(&mut instance, &gate, tenant, &stream_id, &serving, head)
                .await
            {
                Err(error) if error.is_transient() && !backoff.past_budget() => {
                    tokio::time::sleep(backoff.failed()).await;
                }
                warmed => break warmed,
            }
        };
        match warmed_stream {
            Ok(Some(_)) => {
                warmed += 1;
                Metrics::add(&commands.metrics.streams_warmed, 1);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%tenant, %stream_id, plugin = %name,
                    "warming a snapshot failed: {}", error.message);
            }
        }
        tokio::task::yield_now().await;
    }
    if warmed > 0 {
        tracing::info!(%tenant, plugin = %name, version = serving.version.version, streams = warmed,
            "snapshots warmed");
    }
}
