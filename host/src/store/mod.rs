//! The event store: what the host persists and the one trait every backend implements.
//!
//! The store knows nothing of WebAssembly or HTTP. Every method that touches tenant
//! data takes a [`TenantId`], so no query can forget whose rows it reads. Appends go
//! through [`EventStore::append_batch`], which takes many requests at once so that the
//! [`crate::log::appender`] can group-commit them in one transaction while keeping each
//! request's outcome exact.

mod dialect;
pub mod fault;
pub mod health;
pub mod notices;
pub mod plan;
pub mod postgres;
pub mod reachability;
pub mod retry;
pub mod sqlite;
mod sqlite_memory;
mod types;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use fault::{StoreFault, StoreTimeout};
pub use notices::Notice;
pub use plan::{AppendError, ExpectedVersion};
pub use types::*;

/// Everything the host persists. Implemented once per database engine and held as
/// `Arc<dyn EventStore>`.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// True when the database answers and migrations are applied.
    async fn ready(&self) -> bool;
    /// True when the database answers a trivial read (`store/reachability.rs`).
    async fn ping(&self) -> bool;
    /// Whether other hosts may write to the same database (PostgreSQL): then what a
    /// host caches about plugins must be confirmed against the store.
    fn shared_by_hosts(&self) -> bool;
    /// Tells the other hosts sharing the database what changed (appends announce
    /// themselves inside their transaction). Nothing to do where no host shares it.
    async fn announce(&self, notice: &Notice) -> StoreResult<()>;
    /// Other hosts' notices as they arrive, and [`Notice::Resync`] whenever some may
    /// have been missed; `None` where no host shares the database.
    async fn notices(&self) -> StoreResult<Option<tokio::sync::mpsc::UnboundedReceiver<Notice>>>;
    /// Records that host `host_id` (started at `started_at`, Unix ms) is alive now.
    async fn heartbeat(&self, host_id: &str, started_at: i64) -> StoreResult<()>;
    /// Every host that has a row: alive, or died without a graceful stop.
    async fn hosts(&self) -> StoreResult<Vec<HostRecord>>;
    /// Deletes a host's row (its graceful stop).
    async fn remove_host(&self, host_id: &str) -> StoreResult<()>;
    /// Every projection lease, held or expired.
    async fn leases(&self) -> StoreResult<Vec<LeaseRecord>>;
    /// Takes (or renews) a lease unless another host holds it unexpired.
    async fn take_lease(&self, lease: &LeaseRecord) -> StoreResult<bool>;
    /// Renews every lease `owner` holds until `expires_at`.
    async fn renew_leases(&self, owner: &str, expires_at: i64) -> StoreResult<()>;
    /// Hands back one of `owner`'s leases, or all of them with `None`.
    async fn release_leases(
        &self,
        owner: &str,
        one: Option<(&TenantId, &str, u64)>,
    ) -> StoreResult<()>;

    // --- tenants ---
    /// Creates a tenant; `Ok(false)` when the id is taken.
    async fn create_tenant(
        &self,
        id: &TenantId,
        token_hash: &str,
        limits: &serde_json::Value,
    ) -> StoreResult<bool>;
    async fn tenant(&self, id: &TenantId) -> StoreResult<Option<TenantRecord>>;
    async fn tenants(&self) -> StoreResult<Vec<TenantRecord>>;
    async fn tenant_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<TenantId>>;
    /// Whether any tenant still has a plugin version with this digest.
    async fn digest_in_use(&self, digest: &str) -> StoreResult<bool>;
    /// Replaces the tenant's limits; `Ok(false)` when there is no such tenant.
    async fn set_tenant_limits(
        &self,
        id: &TenantId,
        limits: &serde_json::Value,
    ) -> StoreResult<bool>;
    /// Replaces the tenant's token hash; `Ok(false)` when there is no such tenant.
    async fn set_tenant_token(&self, id: &TenantId, token_hash: &str) -> StoreResult<bool>;
    /// What the tenant stores, by kind (see [`StoredUsage`]).
    async fn stored_usage(&self, id: &TenantId) -> StoreResult<StoredUsage>;
    /// The same without the events (which only grow, so their bytes can be counted as
    /// they are appended, and which are the costly part to sum).
    async fn stored_besides_events(&self, id: &TenantId) -> StoreResult<StoredUsage>;
    /// Deletes the tenant and every row it owns; `Ok(false)` when there was none.
    async fn delete_tenant(&self, id: &TenantId) -> StoreResult<bool>;

    // --- plugins ---
    /// Records a new version, numbered after the newest.
    async fn add_plugin_version(
        &self,
        tenant: &TenantId,
        new: NewPluginVersion<'_>,
    ) -> StoreResult<PluginVersion>;
    /// The active version of one plugin and the newest version number (0 when there
    /// is none): a cheap check that a host's cached list is still current when hosts
    /// share the database.
    async fn plugin_heads(&self, tenant: &TenantId, name: &str) -> StoreResult<(u64, u64)>;
    /// All versions of all plugins of a tenant, ordered by name then version.
    async fn plugin_versions(&self, tenant: &TenantId) -> StoreResult<Vec<PluginVersion>>;
    /// Records verification progress or its outcome for one version.
    async fn set_plugin_verification(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        verification: Verification,
        report: &serde_json::Value,
    ) -> StoreResult<()>;
    /// Records the outcome of a verification and, in the same transaction, activates
    /// the version when `activate_over` is given and the active version is still that
    /// one (0: none) or older than `version`: a poll never sees a verified version
    /// that is about to be activated, and a rollback made meanwhile is never undone.
    /// Returns whether it activated.
    async fn finish_plugin_verification(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        verification: Verification,
        report: &serde_json::Value,
        activate_over: Option<u64>,
    ) -> StoreResult<bool>;
    /// Makes `version` the one that serves; `Ok(false)` when there is no such version.
    async fn activate_plugin(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
    ) -> StoreResult<bool>;
    /// Every stream whose id starts with `prefix`, with its current version, in id order.
    async fn streams_with_prefix(
        &self,
        tenant: &TenantId,
        prefix: &str,
    ) -> StoreResult<Vec<(String, u64)>>;
    /// The bytes of a component by digest, from any version of this tenant.
    async fn plugin_wasm(&self, tenant: &TenantId, digest: &str) -> StoreResult<Option<Vec<u8>>>;

    // --- events ---
    /// Applies many append requests in as few transactions as possible. The result
    /// has one entry per request, in order; one request's conflict never fails another.
    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, AppendError>>;
    /// The stream's current version; 0 when it has no events.
    async fn stream_version(&self, tenant: &TenantId, stream_id: &str) -> StoreResult<u64>;
    /// Reads up to `limit` events of a stream starting at version `from` (inclusive) in
    /// the given direction.
    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        from: u64,
        limit: u32,
        direction: Direction,
    ) -> StoreResult<Vec<RecordedEvent>>;
    /// Reads events of a stream with `after < version <= until`, in order.
    async fn read_stream_range(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        after: u64,
        until: u64,
    ) -> StoreResult<Vec<RecordedEvent>>;
    /// The stream version of the last event recorded at or before `at_ms`.
    async fn stream_version_at(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        at_ms: i64,
    ) -> StoreResult<u64>;
    /// The tenant's log after `after`, in position order, optionally only some types.
    async fn read_log(
        &self,
        tenant: &TenantId,
        after: u64,
        limit: u32,
        types: &[String],
    ) -> StoreResult<Vec<RecordedEvent>>;
    /// The last position of the tenant's log (0 when empty).
    async fn head(&self, tenant: &TenantId) -> StoreResult<u64>;

    // --- commands ---
    /// What a command id of the tenant did, if it was seen (ids are the tenant's).
    async fn command_record(
        &self,
        tenant: &TenantId,
        command_id: &str,
    ) -> StoreResult<Option<CommandRecord>>;
    /// Remembers a domain rejection under the command id (unless the id is taken), so
    /// a repeat gets the same answer.
    async fn record_rejection(
        &self,
        tenant: &TenantId,
        command_id: &str,
        record: &CommandRecord,
    ) -> StoreResult<()>;
    /// Forgets command ids recorded before `before_ms` (retention); how many.
    async fn prune_commands(&self, before_ms: i64) -> StoreResult<u64>;

    // --- snapshots ---
    /// The newest snapshot of a stream made by the component `digest`, at or below `max_version`.
    async fn snapshot(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        digest: &str,
        max_version: u64,
    ) -> StoreResult<Option<Snapshot>>;
    async fn put_snapshot(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        digest: &str,
        snapshot: &Snapshot,
    ) -> StoreResult<()>;

    // --- projections ---
    /// Records a new build of a projection, numbered after the newest. A `Building`
    /// one is the newest requested version: it will take over when it catches up, and
    /// older builds waiting to do so are retired instead.
    async fn add_projection_version(
        &self,
        tenant: &TenantId,
        name: &str,
        plugin_version: u64,
        digest: &str,
        status: ProjectionStatus,
    ) -> StoreResult<ProjectionRecord>;
    /// Every build of the tenant's projections (or of all tenants, at start-up).
    async fn projections(&self, tenant: Option<&TenantId>) -> StoreResult<Vec<ProjectionRecord>>;
    /// Applies a batch's document writes and moves the checkpoint from `from` to `to`,
    /// in one transaction. `Ok(false)` (nothing written) when the checkpoint is no
    /// longer at `from` or the build is gone: another writer got there first.
    async fn commit_projection_batch(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        from: u64,
        to: u64,
        writes: &DocumentWrites,
    ) -> StoreResult<bool>;
    async fn set_projection_status(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        status: ProjectionStatus,
        error: Option<&str>,
    ) -> StoreResult<()>;
    /// Makes `version` the active build if `rule` allows it, deciding and switching in
    /// one transaction under the projection's row locks (so the rule holds across
    /// restarts and hosts): the previous active build is retired, and the retired
    /// builds beyond the newest `keep_retired` are returned, for the caller to stop and
    /// then delete with [`EventStore::delete_projection_version`].
    async fn promote_projection(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        rule: PromoteRule,
        keep_retired: usize,
    ) -> StoreResult<Promotion>;
    /// Deletes a build that is not active, with its documents (`false`: it is active,
    /// or gone).
    async fn delete_projection_version(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
    ) -> StoreResult<bool>;
    async fn document(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        key: &str,
    ) -> StoreResult<Option<String>>;
    /// Documents whose key starts with `prefix` and sorts after `after`, in key order.
    async fn documents(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(String, String)>>;
}

/// Why a build would become the active one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromoteRule {
    /// Someone asked for it (`POST …/promote`): it wins over every pending
    /// auto-promotion, which it cancels.
    Explicit,
    /// It caught up: it takes over only while it is still the newest requested build
    /// (no later promote or newer build since).
    CaughtUp,
}

/// What a promotion did.
#[derive(Debug, PartialEq, Eq)]
pub struct Promotion {
    /// False when the rule refused (nothing changed).
    pub promoted: bool,
    /// Retired builds past the number kept, to stop and then delete.
    pub doomed: Vec<u64>,
}

/// The state of one build of a projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProjectionStatus {
    /// Catching up beside the active version; promoted when it reaches the head.
    Building,
    /// Serves reads.
    Active,
    /// Kept for a rollback.
    Retired,
    /// Parked after repeated plugin failures; see `error`.
    Failed,
}

impl ProjectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectionStatus::Building => "building",
            ProjectionStatus::Active => "active",
            ProjectionStatus::Retired => "retired",
            ProjectionStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<ProjectionStatus> {
        Some(match raw {
            "building" => ProjectionStatus::Building,
            "active" => ProjectionStatus::Active,
            "retired" => ProjectionStatus::Retired,
            "failed" => ProjectionStatus::Failed,
            _ => return None,
        })
    }
}

/// One build ("version") of a projection.
#[derive(Clone, Debug)]
pub struct ProjectionRecord {
    pub tenant: TenantId,
    pub name: String,
    pub version: u64,
    /// The plugin version whose code this build runs.
    pub plugin_version: u64,
    pub digest: String,
    pub status: ProjectionStatus,
    /// The last log position whose effects are in this build's documents.
    pub position: u64,
    pub error: Option<String>,
}

/// Document writes of one projection batch, by key; `None` deletes. JSON text.
pub type DocumentWrites = std::collections::BTreeMap<String, Option<Vec<u8>>>;

/// The smallest string greater than every string that starts with `prefix`, or `None`
/// when there is none (empty prefix): turns a prefix scan into a key range.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
