//! A fleet of hosts on one database: who they are, and how each follows what the
//! others change.
//!
//! Every host writes a heartbeat row (`GET /admin/hosts` lists them), runs the
//! projection builds whose leases it holds (`leases.rs`: one worker per build across
//! the fleet, balanced, moved off a dead host within seconds), listens to the
//! notices the others send through the database (PostgreSQL `LISTEN/NOTIFY`,
//! `store/notices.rs`) and applies them to what it caches ([`follow`]). Notices are a
//! fast path, not the only one: a host that lost its listener, or missed a notice,
//! re-reads everything every `resync_every` and whenever its listener reconnects. On
//! SQLite one process owns the database: the heartbeat still runs (the host lists
//! itself), nothing else does.

mod follow;
mod leases;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::log::appender::LogHeads;
use crate::log::live::Live;
use crate::plugins::Plugins;
use crate::projection::Projections;
use crate::store::retry::Backoff;
use crate::store::{EventStore, StoreResult, TenantId, now_ms};
use crate::tenancy::tenant::Tenants;

/// How often a host renews its heartbeat.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A host whose heartbeat is older than this is shown as gone.
const ALIVE_WITHIN: Duration = Duration::from_secs(10);

/// The machine's hostname and the port: the default host id, unique among hosts on
/// distinct machines or ports.
pub fn default_host_id(port: u16) -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{name}:{port}")
}

/// What the fleet's background work (leases, following notices) uses of the host, and
/// only that, never the whole `App`: the store, the caches it keeps in step with the
/// other hosts, and how to forget a tenant another host deleted. Built by `app.rs`.
#[derive(Clone)]
pub struct FleetHandles {
    /// The database every host shares: leases, hosts, the notices' reads.
    pub store: Arc<dyn EventStore>,
    /// Log heads: another host's commits wake this host's workers and waits.
    pub heads: Arc<LogHeads>,
    /// Live subscribers: another host's commits reach them.
    pub live: Arc<Live>,
    /// Plugin versions, re-read on another host's change; orphaned verifications.
    pub plugins: Arc<Plugins>,
    /// Projection builds: re-read, leased, their progress applied.
    pub projections: Arc<Projections>,
    /// Tenants' tokens and limits, re-read on another host's change.
    pub tenants: Arc<Tenants>,
    /// Forgets a tenant another host deleted, everywhere this host keeps something of
    /// it (the caches of services the fleet does not otherwise reach included).
    pub forget_tenant: Arc<dyn Fn(&TenantId) + Send + Sync>,
}

/// This host's place in the fleet.
#[derive(Clone)]
pub struct Fleet {
    /// Its name in the hosts table (`--host-id`).
    pub host_id: String,
    /// Unix milliseconds, for the hosts table.
    started_at: i64,
    /// Where the heartbeat row and the leases are.
    store: Arc<dyn EventStore>,
}

/// A host as `GET /admin/hosts` shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HostView {
    pub host_id: String,
    /// Unix milliseconds.
    pub started_at: i64,
    /// Unix milliseconds of its last heartbeat (every 2 s).
    pub heartbeat_at: i64,
    /// Heartbeat within the last 10 seconds.
    pub alive: bool,
    /// The host that answered.
    pub this_host: bool,
    /// Projection builds whose worker it runs (unexpired leases).
    pub leases: usize,
}

impl Fleet {
    pub fn new(host_id: String, store: Arc<dyn EventStore>) -> Fleet {
        Fleet {
            host_id,
            started_at: now_ms(),
            store,
        }
    }

    /// Writes the first heartbeat, then starts renewing it and following the other
    /// hosts' notices (with a full resynchronisation every `resync_every`).
    pub async fn start(&self, host: FleetHandles, resync_every: Duration) -> anyhow::Result<()> {
        self.store.heartbeat(&self.host_id, self.started_at).await?;
        tokio::spawn(heartbeat(self.clone()));
        if host.store.shared_by_hosts() {
            tokio::spawn(leases::run(self.host_id.clone(), host.clone()));
            tokio::spawn(
                host.plugins
                    .clone()
                    .adopt_orphaned_verifications(host.tenants.clone()),
            );
        }
        if let Some(notices) = host.store.notices().await? {
            tracing::info!(host_id = %self.host_id, "following the other hosts' notices");
            tokio::spawn(follow::follow(host, notices, resync_every));
        }
        Ok(())
    }

    /// Every host that has a row, alive or not.
    pub async fn hosts(&self) -> StoreResult<Vec<HostView>> {
        let now = now_ms();
        let leases = self.store.leases().await?;
        let held = |host: &str| {
            leases
                .iter()
                .filter(|l| l.owner == host && l.expires_at > now)
                .count()
        };
        Ok(self
            .store
            .hosts()
            .await?
            .into_iter()
            .map(|h| HostView {
                leases: held(&h.host_id),
                alive: now - h.heartbeat_at <= ALIVE_WITHIN.as_millis() as i64,
                this_host: h.host_id == self.host_id,
                host_id: h.host_id,
                started_at: h.started_at,
                heartbeat_at: h.heartbeat_at,
            })
            .collect())
    }

    /// A graceful stop: the host's leases and row go at once, so that the other hosts
    /// take its projection builds over in their next round instead of after the leases'
    /// expiry.
    pub async fn leave(&self) {
        if let Err(error) = self.store.release_leases(&self.host_id, None).await {
            tracing::warn!(host_id = %self.host_id, "could not hand back this host's leases: {error:#}");
        }
        if let Err(error) = self.store.remove_host(&self.host_id).await {
            tracing::warn!(host_id = %self.host_id, "could not remove this host's row: {error:#}");
        }
    }
}

/// Renews the heartbeat every `HEARTBEAT_EVERY`; a failed one is tried again sooner
/// (100 ms doubling to the period), so a lost connection does not make the other
/// hosts count this one out of the fair shares.
async fn heartbeat(fleet: Fleet) {
    let mut backoff = Backoff::capped(HEARTBEAT_EVERY);
    loop {
        let wait = match fleet
            .store
            .heartbeat(&fleet.host_id, fleet.started_at)
            .await
        {
            Ok(()) => {
                backoff.succeeded();
                HEARTBEAT_EVERY
            }
            Err(error) => {
                tracing::warn!(host_id = %fleet.host_id, "heartbeat failed: {error:#}");
                backoff.failed()
            }
        };
        tokio::time::sleep(wait).await;
    }
}
