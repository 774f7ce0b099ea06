//! The plugin registry: uploads, versions, which version serves, and upcaster chains.
//!
//! The store holds every version's bytes, its verification status and report, and
//! which version of each aggregate or upcaster is active (so a fleet of hosts shares
//! them); the runtime holds the compiled components. A new aggregate or upcaster
//! version that has history to check is recorded as `verifying` and checked in the
//! background (`verify.rs`); the active version keeps serving until it passes.
//! Projections have builds with a lifecycle of their own (`crate::projection`).

pub(crate) mod background;
mod confirm;
mod fold;
pub mod report;
pub mod upcast;
mod upload;
pub mod verify;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::StatusCode;
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult};
use crate::runtime::{LoadedComponent, Runtime};
use crate::store::{EventStore, PinnedPlugin, PluginKind, PluginVersion, TenantId, Verification};
use crate::tenancy::gate::TenantGate;
pub use report::{Activation, Mode, VerifyOptions};
use upcast::ChainLink;
pub use upcast::UpcastChain;

/// How often a host of a fleet looks for verifications whose host stopped.
const ADOPT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Plugins {
    store: Arc<dyn EventStore>,
    runtime: Arc<Runtime>,
    /// Every version of every plugin, per tenant, ordered by name then version, with
    /// when it was read. Replaced after every change made here, and re-read when the
    /// store says another host changed something. A std `Mutex`: held only to clone an
    /// `Arc`.
    versions: Mutex<HashMap<TenantId, Listed>>,
    /// Whether a command must confirm the list above against the store: only when
    /// other hosts share the database (PostgreSQL). Every change made through this host
    /// replaces the list at once, so on SQLite, which one process owns, the list is
    /// always current and a command saves a read.
    confirm_with_store: bool,
    /// The confirmations under way, one read shared by the commands that wait for it.
    confirmations: confirm::Confirmations,
    /// Resolved aggregate versions (component plus upcaster chain) by tenant, name and
    /// version: a version never changes once uploaded, so entries never go stale.
    serving: Mutex<HashMap<(TenantId, String, u64), Arc<ServingAggregate>>>,
    /// The event types of each upcaster component, by digest, asked once.
    upcaster_types: Mutex<HashMap<String, Arc<HashSet<String>>>>,
    /// Verifications running in this host: a version is never verified twice at once.
    pub(crate) running: Mutex<HashSet<(TenantId, String, u64)>>,
    /// Tells the snapshot warmer (`commands::warm`) which aggregate got a new active
    /// version, so its streams' snapshots are built before commands need them.
    /// Unbounded: activations are rare and a send must never wait.
    activations: mpsc::UnboundedSender<Activated>,
    /// The receiving end, taken once by whoever runs the warmer.
    activations_inbox: Mutex<Option<mpsc::UnboundedReceiver<Activated>>>,
}

/// An aggregate whose active version changed (by an activation or a verification that
/// activated it).
#[derive(Clone, Debug)]
pub struct Activated {
    pub tenant: TenantId,
    pub name: String,
}

/// A tenant's plugin versions as read from the store.
struct Listed {
    /// When the read started: an older read never replaces a newer one.
    read_at: Instant,
    versions: Arc<Vec<PluginVersion>>,
}

/// An aggregate version ready to serve commands and reads.
pub struct ServingAggregate {
    pub version: PluginVersion,
    pub component: Arc<LoadedComponent>,
    /// The upcasters its history is read through (pinned at upload).
    pub upcasters: UpcastChain,
    /// What its state is cached and snapshotted under (see `UpcastChain::state_key`).
    pub state_key: String,
}

/// The answer to an upload.
pub enum Uploaded {
    /// A new version that serves (or is staged, with `?activate=manual`) at once: it
    /// had no history to check.
    Ready(PluginVersion),
    /// A new version being verified in the background.
    Verifying(PluginVersion),
    /// The bytes equal the newest version's, which is returned instead.
    Existing(PluginVersion),
}

impl Plugins {
    pub fn new(store: Arc<dyn EventStore>, runtime: Arc<Runtime>) -> Arc<Plugins> {
        let (activations, inbox) = mpsc::unbounded_channel();
        Arc::new(Plugins {
            activations,
            activations_inbox: Mutex::new(Some(inbox)),
            confirm_with_store: store.shared_by_hosts(),
            confirmations: Default::default(),
            store,
            runtime,
            versions: Mutex::new(HashMap::new()),
            serving: Mutex::new(HashMap::new()),
            upcaster_types: Mutex::new(HashMap::new()),
            running: Mutex::new(HashSet::new()),
        })
    }

    /// Makes a verified (or earlier active) version the one that serves. Commands in
    /// flight finish on the version they started with. With `reverify`, the version is
    /// first verified again against the history as it is now (events written since it
    /// was verified may be in shapes it cannot read) and activated only if it passes:
    /// the answer is then `Uploaded::Verifying`.
    pub async fn activate(
        self: &Arc<Self>,
        tenant: &TenantId,
        gate: Arc<TenantGate>,
        name: &str,
        version: u64,
        reverify: bool,
    ) -> ApiResult<Uploaded> {
        let versions = self.refresh(tenant).await?;
        let found = versions
            .iter()
            .find(|v| v.name == name && v.version == version)
            .ok_or_else(|| {
                ApiError::not_found(format!("plugin {name} has no version {version}"))
            })?;
        if found.kind == PluginKind::Projection {
            return Err(ApiError::bad_request(format!(
                "{name} is a projection: promote its builds with POST /t/{{tenant}}/projections/{name}/promote"
            )));
        }
        if found.verification != Verification::Verified {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_verified",
                format!(
                    "version {version} of {name} is {}: only a verified version can be activated",
                    found.verification.as_str()
                ),
            )
            .with("status", found.verification.as_str()));
        }
        if reverify && !found.active {
            let options = VerifyOptions {
                mode: Mode::Warn,
                activation: Activation::Auto,
            };
            let report = report::initial_report(&options, &found.upcasters);
            self.store
                .set_plugin_verification(tenant, name, version, Verification::Verifying, &report)
                .await?;
            let mut verifying = found.clone();
            verifying.verification = Verification::Verifying;
            verifying.report = Some(report);
            self.changed(tenant).await?;
            self.clone()
                .start_verification(tenant.clone(), gate, verifying.clone());
            return Ok(Uploaded::Verifying(verifying));
        }
        self.store.activate_plugin(tenant, name, version).await?;
        tracing::info!(%tenant, plugin = %name, version, "plugin version activated");
        let versions = self.changed(tenant).await?;
        if found.kind == PluginKind::Aggregate {
            self.activated(tenant, name);
        }
        Ok(Uploaded::Ready(
            versions
                .iter()
                .find(|v| v.name == name && v.version == version)
                .cloned()
                .expect("just activated"),
        ))
    }

    /// Announces a new active aggregate version to the snapshot warmer.
    pub(crate) fn activated(&self, tenant: &TenantId, name: &str) {
        // Nobody listening (a tool that runs no warmer) is fine: warming is an
        // optimisation, commands fold what has no snapshot.
        let _ = self.activations.send(Activated {
            tenant: tenant.clone(),
            name: name.to_owned(),
        });
    }

    /// The activations feed, for the snapshot warmer; `None` once taken.
    pub fn take_activations(&self) -> Option<mpsc::UnboundedReceiver<Activated>> {
        self.activations_inbox
            .lock()
            .expect("activations lock")
            .take()
    }

    /// All versions of all plugins of the tenant.
    pub async fn all(&self, tenant: &TenantId) -> ApiResult<Arc<Vec<PluginVersion>>> {
        if let Some(found) = self.versions.lock().expect("versions lock").get(tenant) {
            return Ok(found.versions.clone());
        }
        self.refresh(tenant).await
    }

    /// The versions of one plugin, oldest first (empty when there is no such plugin),
    /// as the store has them now (verification progress included).
    pub async fn versions_of(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> ApiResult<Vec<PluginVersion>> {
        Ok(self
            .refresh(tenant)
            .await?
            .iter()
            .filter(|v| v.name == name)
            .cloned()
            .collect())
    }

    /// The active version of an aggregate, ready to serve.
    ///
    /// One indexed read per command checks the cached list against the store, so a
    /// version activated through another host (sharing the database) serves every
    /// command that arrives after its activation returned, here too.
    pub async fn aggregate(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> ApiResult<Arc<ServingAggregate>> {
        if !self.confirm_with_store {
            let versions = self.all(tenant).await?;
            return self.serving_of(tenant, name, &versions).await;
        }
        let (active, newest) = self.confirmations.heads(&self.store, tenant, name).await?;
        let mut versions = self.all(tenant).await?;
        let cached_newest = versions
            .iter()
            .filter(|v| v.name == name)
            .map(|v| v.version)
            .max()
            .unwrap_or(0);
        let cached_active = versions
            .iter()
            .find(|v| v.name == name && v.active)
            .map_or(0, |v| v.version);
        if (cached_active, cached_newest) != (active, newest) {
            versions = self.refresh(tenant).await?;
        }
        self.serving_of(tenant, name, &versions).await
    }

    /// The serving version of aggregate `name` in `versions`.
    async fn serving_of(
        &self,
        tenant: &TenantId,
        name: &str,
        versions: &[PluginVersion],
    ) -> ApiResult<Arc<ServingAggregate>> {
        let mine = || versions.iter().filter(|v| v.name == name);
        let Some(any) = mine().next() else {
            return Err(ApiError::not_found(format!("no plugin named {name}")));
        };
        if any.kind != PluginKind::Aggregate {
            return Err(ApiError::not_found(format!(
                "plugin {name} is not an aggregate"
            )));
        }
        let Some(version) = mine().find(|v| v.active) else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_active",
                format!(
                    "plugin {name} has no active version yet: see GET /t/{tenant}/plugins/{name}"
                ),
            ));
        };
        self.serving(tenant, version).await
    }

    /// An aggregate version resolved with its upcasters (cached: versions never change).
    /// Borrowed: every command resolves its aggregate, and the version is cloned only
    /// the first time.
    pub async fn serving(
        &self,
        tenant: &TenantId,
        version: &PluginVersion,
    ) -> ApiResult<Arc<ServingAggregate>> {
        let key = (tenant.clone(), version.name.clone(), version.version);
        if let Some(found) = self.serving.lock().expect("serving lock").get(&key) {
            return Ok(found.clone());
        }
        let component = self.component(tenant, version).await?;
        let upcasters = self.chain(tenant, &version.upcasters).await?;
        let resolved = Arc::new(ServingAggregate {
            state_key: upcasters.state_key(&component.digest),
            version: version.clone(),
            component,
            upcasters,
        });
        self.serving
            .lock()
            .expect("serving lock")
            .insert(key, resolved.clone());
        Ok(resolved)
    }

    /// The tenant's active upcasters, in name order: what a new aggregate version
    /// reads history through, and what `?upcast=true` reads apply.
    pub async fn current_upcasters(&self, tenant: &TenantId) -> ApiResult<Vec<PinnedPlugin>> {
        Ok(self
            .all(tenant)
            .await?
            .iter()
            .filter(|v| v.kind == PluginKind::Upcaster && v.active)
            .map(|v| PinnedPlugin {
                name: v.name.clone(),
                version: v.version,
                digest: v.digest.clone(),
            })
            .collect())
    }

    /// `events` as the tenant's active upcasters rewrite them (for `?upcast=true`).
    pub async fn upcast_current(
        &self,
        tenant: &TenantId,
        gate: &TenantGate,
        events: Vec<crate::store::RecordedEvent>,
    ) -> ApiResult<Vec<crate::store::RecordedEvent>> {
        let pinned = self.current_upcasters(tenant).await?;
        if pinned.is_empty() {
            return Ok(events);
        }
        let chain = self.chain(tenant, &pinned).await?;
        let _tenant_slot = gate.call_slot().await;
        let _slot = self.runtime.slot().await;
        chain
            .apply(&self.runtime, gate.call_limits(), events)
            .await
            .map_err(|e| {
                gate.usage.failure(&e.failure);
                let mut error: ApiError = e.failure.into();
                error.message = format!("upcaster {}: {}", e.upcaster, error.message);
                error
            })
    }

    /// The upcasters pinned to one version of a projection plugin.
    pub async fn projection_upcasters(
        &self,
        tenant: &TenantId,
        name: &str,
        plugin_version: u64,
    ) -> ApiResult<UpcastChain> {
        let pinned = self
            .store
            .plugin_versions(tenant)
            .await?
            .into_iter()
            .find(|v| v.name == name && v.version == plugin_version)
            .map(|v| v.upcasters)
            .unwrap_or_default();
        self.chain(tenant, &pinned).await
    }

    /// Loads a chain of pinned upcasters.
    pub async fn chain(
        &self,
        tenant: &TenantId,
        pinned: &[PinnedPlugin],
    ) -> ApiResult<UpcastChain> {
        let mut links = Vec::with_capacity(pinned.len());
        for p in pinned {
            let component = self.component_by_digest(tenant, &p.digest).await?;
            let types = self.upcaster_types_unlimited(&component).await?;
            links.push(ChainLink {
                pinned: p.clone(),
                component,
                types: (*types).clone(),
            });
        }
        Ok(UpcastChain { links })
    }

    /// The compiled component of a version, loading or compiling it when needed.
    pub async fn component(
        &self,
        tenant: &TenantId,
        version: &PluginVersion,
    ) -> ApiResult<Arc<LoadedComponent>> {
        self.component_by_digest(tenant, &version.digest).await
    }

    async fn component_by_digest(
        &self,
        tenant: &TenantId,
        digest: &str,
    ) -> ApiResult<Arc<LoadedComponent>> {
        let store = self.store.clone();
        let owned = digest.to_owned();
        Ok(self
            .runtime
            .load(digest, || async move {
                store
                    .plugin_wasm(tenant, &owned)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("the bytes of {owned} are missing"))
            })
            .await?)
    }

    /// The streams an aggregate's versions fold: `{category}-…` (see
    /// `vocab::stream_category`; no other aggregate's streams share the prefix).
    pub async fn streams_of(&self, tenant: &TenantId, name: &str) -> ApiResult<Vec<(String, u64)>> {
        let prefix = crate::vocab::stream_prefix(name);
        Ok(self.store.streams_with_prefix(tenant, &prefix).await?)
    }

    /// Re-reads the tenant's versions after another host changed them.
    pub async fn follow_store(&self, tenant: &TenantId) -> ApiResult<()> {
        self.refresh(tenant).await.map(|_| ())
    }

    /// Re-reads every tenant's versions this host holds (notices may have been lost).
    pub async fn resync(&self) -> ApiResult<()> {
        let tenants: Vec<TenantId> = self
            .versions
            .lock()
            .expect("versions lock")
            .keys()
            .cloned()
            .collect();
        for tenant in tenants {
            self.refresh(&tenant).await?;
        }
        Ok(())
    }

    /// Re-reads the tenant's versions after a change made here, and tells the other
    /// hosts sharing the database (a failed notice is logged: the change is committed,
    /// and their periodic resynchronisation catches up).
    pub(crate) async fn changed(&self, tenant: &TenantId) -> ApiResult<Arc<Vec<PluginVersion>>> {
        let versions = self.refresh(tenant).await?;
        let notice = crate::store::Notice::Plugins {
            tenant: tenant.clone(),
        };
        if let Err(error) = self.store.announce(&notice).await {
            tracing::warn!(%tenant, "could not announce a plugin change: {error:#}");
        }
        Ok(versions)
    }

    /// Forgets a deleted tenant's cached versions.
    pub fn forget(&self, tenant: &TenantId) {
        self.versions.lock().expect("versions lock").remove(tenant);

        self.serving
            .lock()
            .expect("serving lock")
            .retain(|(t, _, _), _| t != tenant);
    }

    /// Resumes the verifications a restart interrupted (they start over).
    pub async fn resume_verifications(
        self: &Arc<Self>,
        gates: &crate::tenancy::tenant::Tenants,
    ) -> anyhow::Result<()> {
        for tenant in self.store.tenants().await? {
            let versions = self.store.plugin_versions(&tenant.id).await?;
            for version in versions {
                if version.verification == Verification::Verifying {
                    let gate = gates.gate(&tenant.id).await.map_err(|e| {
                        let message = crate::error::ApiError::from(e).message;
                        anyhow::anyhow!("tenant {}: {message}", tenant.id)
                    })?;
                    self.clone()
                        .start_verification(tenant.id.clone(), gate, version);
                }
            }
        }
        Ok(())
    }

    /// On a fleet, finishes verifications whose host stopped: every `ADOPT_EVERY` this
    /// host reads the versions still `verifying`, and one whose report has not moved
    /// for two reads in a row (its verifier writes progress every second) and that this
    /// host is not verifying itself is verified here. Should its first host be alive
    /// after all (one very long stream between two progress writes), both reach the
    /// same verdict (verification is deterministic) and activation stays conditional on
    /// the active version (invariant 7): the cost is work done twice, never a wrong
    /// answer.
    pub async fn adopt_orphaned_verifications(
        self: Arc<Self>,
        tenants: Arc<crate::tenancy::tenant::Tenants>,
    ) {
        let mut unchanged: HashMap<(TenantId, String, u64), (String, u32)> = HashMap::new();
        loop {
            tokio::time::sleep(ADOPT_EVERY).await;
            let Ok(all) = self.store.tenants().await else {
                continue;
            };
            let mut still = HashMap::new();
            for tenant in all {
                let Ok(versions) = self.store.plugin_versions(&tenant.id).await else {
                    continue;
                };
                for version in versions {
                    if version.verification != Verification::Verifying {
                        continue;
                    }
                    let key = (tenant.id.clone(), version.name.clone(), version.version);
                    if self.running.lock().expect("running lock").contains(&key) {
                        continue;
                    }
                    let report = version
                        .report
                        .as_ref()
                        .map(|r| r.to_string())
                        .unwrap_or_default();
                    let sweeps = match unchanged.remove(&key) {
                        Some((seen, sweeps)) if seen == report => sweeps + 1,
                        _ => 0,
                    };
                    if sweeps < 2 {
                        still.insert(key, (report, sweeps));
                        continue;
                    }
                    let Ok(gate) = tenants.gate(&tenant.id).await else {
                        continue;
                    };
                    tracing::warn!(tenant = %tenant.id, plugin = %version.name,
                        version = version.version,
                        "verification made no progress on its host; verifying it here");
                    self.clone()
                        .start_verification(tenant.id.clone(), gate, version);
                }
            }
            unchanged = still;
        }
    }

    async fn refresh(&self, tenant: &TenantId) -> ApiResult<Arc<Vec<PluginVersion>>> {
        let read_at = Instant::now();
        let versions = Arc::new(self.store.plugin_versions(tenant).await?);
        let mut listed = self.versions.lock().expect("versions lock");
        match listed.get(tenant) {
            // A read that started later already landed: it is the newer truth.
            Some(newer) if newer.read_at > read_at => Ok(newer.versions.clone()),
            _ => {
                listed.insert(
                    tenant.clone(),
                    Listed {
                        read_at,
                        versions: versions.clone(),
                    },
                );
                Ok(versions)
            }
        }
    }

    /// The event types an upcaster rewrites, asked under the tenant's limits.
    async fn upcaster_types(
        &self,
        component: &LoadedComponent,
        gate: &TenantGate,
    ) -> ApiResult<Arc<HashSet<String>>> {
        if let Some(found) = self.cached_types(&component.digest) {
            return Ok(found);
        }
        // A tenant call slot first, like every instance: a tenant's share of the
        // runtime's instance slots is bounded by its call slots.
        let _tenant_slot = gate.call_slot().await;
        let _slot = self.runtime.slot().await;
        let mut instance = self.runtime.upcaster(component, gate.call_limits()).await?;
        let types: HashSet<String> = instance.event_types().await?.into_iter().collect();
        let types = Arc::new(types);
        self.upcaster_types
            .lock()
            .expect("types lock")
            .insert(component.digest.clone(), types.clone());
        Ok(types)
    }

    /// The same for an upcaster already accepted (its types were asked at upload; a
    /// restart asks again under default limits).
    async fn upcaster_types_unlimited(
        &self,
        component: &LoadedComponent,
    ) -> ApiResult<Arc<HashSet<String>>> {
        if let Some(found) = self.cached_types(&component.digest) {
            return Ok(found);
        }
        let gate = TenantGate::new(Default::default(), Default::default(), Default::default());
        self.upcaster_types(component, &gate).await
    }

    fn cached_types(&self, digest: &str) -> Option<Arc<HashSet<String>>> {
        self.upcaster_types
            .lock()
            .expect("types lock")
            .get(digest)
            .cloned()
    }
}
