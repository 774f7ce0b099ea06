//! Projections: builds of a projection plugin, their workers, promotion and rollback,
//! and document reads.
//!
//! Two numbers name a build, and the API shows both: the plugin `version` whose code it
//! runs (what users upload and promote), and its `build` id, which tells apart two
//! builds of one version (a rebuild). The store calls the build id `version` (its
//! column predates the distinction); in this module `version: u64` is a build id.
//!
//! Every build has its own checkpoint and its own documents. A worker per build
//! ([`worker`]) feeds it the tenant's log in batches; a batch's document writes and
//! its checkpoint commit in one transaction, so effects happen exactly once even when
//! the host is killed. A new plugin version (or a rebuild) starts a build from position
//! 0 beside the active one and is promoted atomically once it has caught up. Reads go
//! to the active build, whose number lives in memory here and in the store.
//!
//! Which build is active changes by one rule, decided in the store's transaction (so
//! it holds across restarts and hosts): an explicit promote; a build that caught up
//! while it is still the newest requested one (an upload or a rebuild; a later promote
//! or a newer build cancels that); never an older build over a newer choice. The
//! memory here follows the store after every change. A retired build stops following
//! the log (promoting it back starts its worker again, from its checkpoint); past the
//! kept ones, its worker is awaited before its documents are deleted.

mod committed;
mod owned;
mod pages;
mod promotion;
mod restart;
mod startup;
mod status;
mod supervisor;
mod worker;

pub use promotion::BuildChoice;
pub use status::{BuildView, ProjectionView};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::error::{ApiError, ApiResult};
use crate::log::appender::LogHeads;
use crate::plugins::Plugins;
use crate::runtime::Runtime;
use crate::store::{EventStore, ProjectionRecord, ProjectionStatus, TenantId};
use crate::tenancy::tenant::Tenants;

/// Projection batches running at once across all tenants: catch-up work must leave
/// CPU for commands.
/// Events a catch-up reads and hands to `handle` at a time, at most (see `worker.rs`).
/// A batch's documents are read from the host once and written back once, so the
/// bigger the batch the fewer of both per event when the same documents recur (an
/// account balance per account): 2,000 to 5,000 took a 1,000,000-event catch-up of
/// `balances` over 1,000 accounts from ~330,000 to ~400,000 events/s.
pub const CATCH_UP_PAGE: u32 = 5000;
const BATCH_SLOTS: usize = 4;
/// Projection batches one tenant may run at once. Below `BATCH_SLOTS`, so a tenant
/// whose projections block (a slow or sleeping `handle`) never holds every slot.
const BATCH_SLOTS_PER_TENANT: usize = 1;
/// Builds of one tenant that may be catching up at once; more rebuilds are refused
/// (429) until some finish.
const MAX_BUILDING_PER_TENANT: usize = 8;
/// Longest a read may wait for `min_position`.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

type ProjectionKey = (TenantId, String);

/// What this host knows of one build while it runs.
struct Build {
    record: ProjectionRecord,
    /// The build's checkpoint, for `min_position` waits and status.
    position: watch::Sender<u64>,
    /// Events handled since this host started the worker, for throughput.
    handled: u64,
    /// When this host started tracking it, for throughput.
    started: std::time::Instant,
    /// Its worker, while one runs here.
    worker: Option<Worker>,
    /// Set while its worker's store calls fail for a passing reason and it retries.
    store_wait: Option<StoreWait>,
}

/// A build whose worker retries after store failures (`supervisor.rs`).
struct StoreWait {
    /// Unix milliseconds of the first failure since the worker last made progress.
    since: i64,
    /// Once the failures have lasted past the retry budget: what the build's `error`
    /// shows (it is waiting for the store, not failed).
    parked: Option<String>,
}

/// A running worker and the means to stop it between batches.
struct Worker {
    /// Set to `true` to ask the worker to finish its batch and return.
    stop: watch::Sender<bool>,
    /// Awaited after `stop`, so nothing of the build is written afterwards.
    task: JoinHandle<()>,
}

pub struct Projections {
    store: Arc<dyn EventStore>,
    runtime: Arc<Runtime>,
    heads: Arc<LogHeads>,
    /// Per-tenant limits, call slots, usage and plugin logs apply to projections too.
    tenants: Arc<Tenants>,
    /// Where a build finds the upcasters pinned to its plugin version.
    plugins: Arc<Plugins>,
    /// Bounds concurrent batches; tokio's semaphore is FIFO, so workers take turns.
    batch_slots: Arc<Semaphore>,
    /// Each tenant's own batch slots, taken before a global one, so a tenant waiting
    /// for its turn holds nothing the others need. A std `Mutex`: held for a lookup.
    tenant_batch_slots: Mutex<HashMap<TenantId, Arc<Semaphore>>>,
    /// Builds by projection, by build id. A std `Mutex`: never held across an await.
    builds: Mutex<HashMap<ProjectionKey, HashMap<u64, Build>>>,
    /// Retired builds kept for rollback (`--projection-builds-kept`); older ones are
    /// deleted with their documents.
    keep_retired: usize,
    /// How long an idle worker waits for a wake-up before asking the store for the
    /// head anyway: other hosts' appends wake it through their notices, this is the
    /// safety net.
    poll_every: Duration,
    /// Whether workers run only under a lease (hosts share the database): then a build's
    /// worker runs on the one host that holds its lease (`owned`, see `owned.rs`).
    /// Otherwise this host runs every build's worker.
    leased: bool,
    /// The builds whose lease this host holds. A std `Mutex`: held for a lookup.
    owned: Mutex<std::collections::HashSet<(TenantId, String, u64)>>,
    /// Wakes the lease balancer (`fleet/leases.rs`) when a build wants a worker that
    /// no host runs yet, so that a new build starts at once rather than at its next
    /// round.
    pub lease_wanted: tokio::sync::Notify,
}

impl Projections {
    pub fn new(
        store: Arc<dyn EventStore>,
        runtime: Arc<Runtime>,
        heads: Arc<LogHeads>,
        tenants: Arc<Tenants>,
        plugins: Arc<Plugins>,
        keep_retired: usize,
        poll_every: Duration,
    ) -> Arc<Projections> {
        let store_shared = store.shared_by_hosts();
        Arc::new(Projections {
            store,
            runtime,
            heads,
            tenants,
            plugins,
            batch_slots: Arc::new(Semaphore::new(BATCH_SLOTS)),
            tenant_batch_slots: Mutex::new(HashMap::new()),
            builds: Mutex::new(HashMap::new()),
            keep_retired,
            poll_every,
            leased: store_shared,
            owned: Mutex::new(Default::default()),
            lease_wanted: tokio::sync::Notify::new(),
        })
    }

    /// Starts a worker for every build the store knows that is not parked.
    pub async fn resume_all(self: &Arc<Self>) -> anyhow::Result<()> {
        for record in self.store.projections(None).await? {
            self.track(record);
        }
        Ok(())
    }

    /// Registers a build and starts its worker unless it is parked.
    fn track(self: &Arc<Self>, record: ProjectionRecord) {
        let key = (record.tenant.clone(), record.name.clone());
        let version = record.version;
        // An active build that failed keeps serving its documents but is not run again
        // (it carries its error); a fixed upload replaces it. A retired build stands
        // still until it is promoted back.
        let runnable = !matches!(
            record.status,
            ProjectionStatus::Failed | ProjectionStatus::Retired
        ) && record.error.is_none();
        let runnable = runnable && {
            let may = self.may_run(&key, version);
            if !may {
                self.lease_wanted.notify_one();
            }
            may
        };
        let build = Build {
            position: watch::channel(record.position).0,
            record: record.clone(),
            handled: 0,
            started: std::time::Instant::now(),
            worker: None,
            store_wait: None,
        };
        self.builds
            .lock()
            .expect("builds lock")
            .entry(key.clone())
            .or_default()
            .insert(version, build);
        if runnable {
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(supervisor::run(self.clone(), record, stopped));
            let worker = Worker { stop, task };
            if let Some(Some(old)) = self.build_mut(&key, version, |b| b.worker.replace(worker)) {
                old.task.abort();
            }
        }
    }

    fn build_mut<R>(
        &self,
        key: &ProjectionKey,
        version: u64,
        f: impl FnOnce(&mut Build) -> R,
    ) -> Option<R> {
        let mut builds = self.builds.lock().expect("builds lock");
        builds.get_mut(key)?.get_mut(&version).map(f)
    }

    /// A new projection plugin version was uploaded: build it beside the active one
    /// (or make it active at once when there is none).
    pub async fn plugin_uploaded(
        self: &Arc<Self>,
        tenant: &TenantId,
        name: &str,
        plugin_version: u64,
        digest: &str,
    ) -> ApiResult<()> {
        let status = if self.active_version(tenant, name).is_some() {
            ProjectionStatus::Building
        } else {
            ProjectionStatus::Active
        };
        let record = self
            .store
            .add_projection_version(tenant, name, plugin_version, digest, status)
            .await?;
        tracing::info!(%tenant, projection = name, version = record.version, status = status.as_str(), "projection build started");
        self.track(record);
        // Older builds waiting to take over were retired by this one.
        self.changed(tenant, name).await
    }

    /// Brings this host's view of a projection's builds (or of all the tenant's
    /// projections, with `name` `None`) in line with the store, which decides: another
    /// host may have added, promoted or deleted builds. A build new to this host is
    /// tracked, one the store no longer has stops, one that was retired stops following
    /// the log, and one promoted back starts again from its checkpoint.
    pub async fn follow_store(
        self: &Arc<Self>,
        tenant: &TenantId,
        name: Option<&str>,
    ) -> ApiResult<()> {
        let records: Vec<ProjectionRecord> = self
            .store
            .projections(Some(tenant))
            .await?
            .into_iter()
            .filter(|r| name.is_none_or(|n| n == r.name))
            .collect();
        let mut start = Vec::new();
        let mut ended = Vec::new();
        {
            let mut builds = self.builds.lock().expect("builds lock");
            for ((t, n), versions) in builds.iter_mut() {
                if t != tenant || name.is_some_and(|name| name != n) {
                    continue;
                }
                versions.retain(|id, build| {
                    let kept = records.iter().any(|r| &r.name == n && r.version == *id);
                    if !kept && let Some(worker) = build.worker.take() {
                        ended.push(worker);
                    }
                    kept
                });
            }
            for record in records {
                let key = (tenant.clone(), record.name.clone());
                let Some(build) = builds
                    .get_mut(&key)
                    .and_then(|versions| versions.get_mut(&record.version))
                else {
                    start.push(record);
                    continue;
                };
                build.record.status = record.status;
                build.record.error = record.error.clone();
                let running = build.worker.as_ref().is_some_and(|w| !*w.stop.borrow());
                let may_run = self.may_run(&key, record.version);
                match record.status {
                    _ if running && !may_run => {
                        if let Some(worker) = &build.worker {
                            // Another host holds the lease now.
                            let _ = worker.stop.send(true);
                        }
                    }
                    ProjectionStatus::Retired if running => {
                        if let Some(worker) = &build.worker {
                            // Kept, so that a deletion or a restart can await it.
                            let _ = worker.stop.send(true);
                        }
                    }
                    ProjectionStatus::Active | ProjectionStatus::Building
                        if !running && may_run && record.error.is_none() =>
                    {
                        start.push(record);
                    }
                    _ => {}
                }
            }
        }
        for worker in ended {
            let _ = worker.stop.send(true);
            let _ = worker.task.await;
        }
        for record in start {
            let key = (tenant.clone(), record.name.clone());
            let stopped = self
                .build_mut(&key, record.version, |b| b.worker.take())
                .flatten();
            if let Some(worker) = stopped {
                let _ = worker.stop.send(true);
                let _ = worker.task.await;
            }
            tracing::info!(%tenant, projection = record.name, build = record.version, position = record.position, "projection build follows the log");
            self.track(record);
        }
        Ok(())
    }

    /// Follows the store after a change made here, and tells the other hosts sharing
    /// the database (a failed notice is logged: the change is committed, and their
    /// periodic resynchronisation catches up).
    async fn changed(self: &Arc<Self>, tenant: &TenantId, name: &str) -> ApiResult<()> {
        self.follow_store(tenant, Some(name)).await?;
        self.announce(tenant, name).await;
        Ok(())
    }

    async fn announce(&self, tenant: &TenantId, name: &str) {
        let notice = crate::store::Notice::Projections {
            tenant: tenant.clone(),
            name: name.to_owned(),
        };
        if let Err(error) = self.store.announce(&notice).await {
            tracing::warn!(%tenant, projection = name, "could not announce a projection change: {error:#}");
        }
    }

    /// Follows the store for every tenant's projections (notices may have been lost).
    pub async fn resync(self: &Arc<Self>) -> ApiResult<()> {
        let mut tenants: Vec<TenantId> = self
            .store
            .projections(None)
            .await?
            .into_iter()
            .map(|r| r.tenant)
            .collect();
        tenants.extend(
            self.builds
                .lock()
                .expect("builds lock")
                .keys()
                .map(|(t, _)| t.clone()),
        );
        tenants.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        tenants.dedup();
        for tenant in tenants {
            self.follow_store(&tenant, None).await?;
        }
        Ok(())
    }

    /// A tenant's turn to run a projection batch: its own slot, then a global one.
    pub(crate) async fn batch_turn(
        &self,
        tenant: &TenantId,
    ) -> (
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::OwnedSemaphorePermit,
    ) {
        let mine = self
            .tenant_batch_slots
            .lock()
            .expect("batch slots lock")
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(BATCH_SLOTS_PER_TENANT)))
            .clone();
        let mine = mine.acquire_owned().await.expect("never closed");
        let global = self
            .batch_slots
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        (mine, global)
    }

    fn active_record(&self, tenant: &TenantId, name: &str) -> ApiResult<ProjectionRecord> {
        let builds = self.builds.lock().expect("builds lock");
        builds
            .get(&(tenant.clone(), name.to_owned()))
            .and_then(|v| {
                v.values()
                    .find(|b| b.record.status == ProjectionStatus::Active)
                    .map(|b| b.record.clone())
            })
            .ok_or_else(|| ApiError::not_found(format!("no active projection named {name}")))
    }

    fn active_version(&self, tenant: &TenantId, name: &str) -> Option<u64> {
        self.active_record(tenant, name).ok().map(|r| r.version)
    }

    /// Stops and forgets every build of a deleted tenant.
    pub fn forget_tenant(&self, tenant: &TenantId) {
        let mut builds = self.builds.lock().expect("builds lock");
        builds.retain(|(t, _), versions| {
            if t != tenant {
                return true;
            }
            for build in versions.values() {
                if let Some(worker) = &build.worker {
                    // Its rows are deleted with the tenant: nothing to wait for.
                    worker.task.abort();
                }
            }
            false
        });
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }
}
