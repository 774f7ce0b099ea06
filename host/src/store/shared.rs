//! The SQL both backends share, written once. This file is compiled twice, as
//! `sqlite::shared` and `postgres::shared` (`#[path]` modules); each parent module
//! names its sqlx database `Db`, its row type `DbRow` and its store `Backend` (with
//! `writer()` and `reader()` pools). Statements use `?` placeholders; the engine's
//! [`Dialect`] rewrites them and supplies the few words the engines disagree on.
//!
//! This file holds the `EventStore` implementation and the reads of events; what every
//! statement file shares is in `shared_rows.rs` (`sql`, `to_event`, `range`), and the
//! larger concerns are files of their own, compiled the same way: `shared_append.rs`
//! (the append transaction), `shared_tenants.rs`, `shared_snapshots.rs` (command ids
//! and snapshots), `shared_plugins.rs`, `shared_projections.rs`, `shared_hosts.rs`.

use async_trait::async_trait;
use sqlx::QueryBuilder;

use super::{Backend, Db};
use rows::{EVENT_COLUMNS, range, sql, stream_version, to_event};

// The larger concerns, compiled with this file once per backend (they sit beside it
// in `store/`, and see the backend's `Db`, `DbRow` and `Backend` as `super::super`).
#[allow(clippy::duplicate_mod)]
#[path = "shared_append.rs"]
mod append;
#[allow(clippy::duplicate_mod)]
#[path = "shared_rows.rs"]
mod rows;
#[allow(clippy::duplicate_mod)]
#[path = "shared_snapshots.rs"]
mod snapshots;
#[allow(clippy::duplicate_mod)]
#[path = "shared_tenants.rs"]
mod tenants;
use crate::store::dialect::Dialect;
use crate::store::*;

/// How long `/readyz` waits for the store before it answers "not ready".
const READY_BOUND: std::time::Duration = std::time::Duration::from_secs(1);

/// The size of `/readyz`'s probe write while the store is full.
const PROBE_BYTES: usize = 64 * 1024;

#[async_trait]
impl EventStore for Backend {
    fn shared_by_hosts(&self) -> bool {
        <Db as Dialect>::SHARED_BY_HOSTS
    }

    async fn announce(&self, notice: &Notice) -> StoreResult<()> {
        if let Some(notify) = <Db as Dialect>::NOTIFY {
            sqlx::query(sql(notify))
                .bind(notice.payload())
                .execute(self.writer())
                .await?;
        }
        Ok(())
    }

    async fn notices(&self) -> StoreResult<Option<tokio::sync::mpsc::UnboundedReceiver<Notice>>> {
        self.listen().await
    }

    async fn heartbeat(&self, host_id: &str, started_at: i64) -> StoreResult<()> {
        self.upsert_heartbeat(host_id, started_at, now_ms()).await
    }

    async fn hosts(&self) -> StoreResult<Vec<HostRecord>> {
        self.select_hosts().await
    }

    async fn remove_host(&self, host_id: &str) -> StoreResult<()> {
        self.delete_host_row(host_id).await
    }

    async fn leases(&self) -> StoreResult<Vec<LeaseRecord>> {
        self.select_leases().await
    }

    async fn take_lease(&self, lease: &LeaseRecord) -> StoreResult<bool> {
        self.upsert_lease(lease, now_ms()).await
    }

    async fn renew_leases(&self, owner: &str, expires_at: i64) -> StoreResult<()> {
        self.extend_leases(owner, expires_at).await
    }

    async fn release_leases(
        &self,
        owner: &str,
        one: Option<(&TenantId, &str, u64)>,
    ) -> StoreResult<()> {
        self.delete_leases(owner, one).await
    }

    async fn ping(&self) -> bool {
        sqlx::query(sql("SELECT 1"))
            .fetch_one(self.reader())
            .await
            .is_ok()
    }

    async fn ready(&self) -> bool {
        let read = sqlx::query(sql("SELECT 1 FROM tenants LIMIT 1")).fetch_optional(self.reader());
        if !matches!(tokio::time::timeout(READY_BOUND, read).await, Ok(Ok(_))) {
            return false;
        }
        if !self.health.is_full() {
            return true;
        }
        // Full at the last append: ready again only when a real write gets through.
        let filler = vec![0x5a_u8; PROBE_BYTES];
        let write = sqlx::query(sql(
            "INSERT INTO write_probe (id, written_at, filler) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at, \
             filler = excluded.filler",
        ))
        .bind(now_ms())
        .bind(filler)
        .execute(self.writer());
        let written = matches!(tokio::time::timeout(READY_BOUND, write).await, Ok(Ok(_)));
        if written {
            self.health.record(None);
        }
        written
    }

    async fn create_tenant(
        &self,
        id: &TenantId,
        token_hash: &str,
        limits: &serde_json::Value,
    ) -> StoreResult<bool> {
        tenants::create_tenant(self, id, token_hash, limits).await
    }

    async fn tenant(&self, id: &TenantId) -> StoreResult<Option<TenantRecord>> {
        tenants::tenant(self, id).await
    }

    async fn tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        tenants::tenants(self).await
    }

    async fn tenant_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<TenantId>> {
        tenants::tenant_by_token_hash(self, token_hash).await
    }

    async fn digest_in_use(&self, digest: &str) -> StoreResult<bool> {
        let found: Option<String> =
            sqlx::query_scalar(sql("SELECT digest FROM plugins WHERE digest = ? LIMIT 1"))
                .bind(digest)
                .fetch_optional(self.reader())
                .await?;
        Ok(found.is_some())
    }

    async fn set_tenant_limits(
        &self,
        id: &TenantId,
        limits: &serde_json::Value,
    ) -> StoreResult<bool> {
        tenants::set_tenant_limits(self, id, limits).await
    }

    async fn set_tenant_token(&self, id: &TenantId, token_hash: &str) -> StoreResult<bool> {
        tenants::set_tenant_token(self, id, token_hash).await
    }

    async fn stored_usage(&self, id: &TenantId) -> StoreResult<StoredUsage> {
        tenants::stored_usage(self, id).await
    }

    async fn stored_besides_events(&self, id: &TenantId) -> StoreResult<StoredUsage> {
        tenants::stored_besides_events(self, id).await
    }

    async fn delete_tenant(&self, id: &TenantId) -> StoreResult<bool> {
        tenants::delete_tenant(self, id).await
    }

    async fn add_plugin_version(
        &self,
        tenant: &TenantId,
        new: NewPluginVersion<'_>,
    ) -> StoreResult<PluginVersion> {
        self.insert_plugin_version(tenant, new).await
    }

    async fn plugin_heads(&self, tenant: &TenantId, name: &str) -> StoreResult<(u64, u64)> {
        self.select_plugin_heads(tenant, name).await
    }

    async fn plugin_versions(&self, tenant: &TenantId) -> StoreResult<Vec<PluginVersion>> {
        self.select_plugin_versions(tenant).await
    }

    async fn set_plugin_verification(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        verification: Verification,
        report: &serde_json::Value,
    ) -> StoreResult<()> {
        self.complete_plugin_verification(tenant, name, version, verification, report, None)
            .await
            .map(|_| ())
    }

    async fn finish_plugin_verification(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        verification: Verification,
        report: &serde_json::Value,
        activate_over: Option<u64>,
    ) -> StoreResult<bool> {
        self.complete_plugin_verification(
            tenant,
            name,
            version,
            verification,
            report,
            activate_over,
        )
        .await
    }

    async fn activate_plugin(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
    ) -> StoreResult<bool> {
        self.set_active_plugin(tenant, name, version).await
    }

    async fn streams_with_prefix(
        &self,
        tenant: &TenantId,
        prefix: &str,
    ) -> StoreResult<Vec<(String, u64)>> {
        self.select_streams_with_prefix(tenant, prefix).await
    }

    async fn plugin_wasm(&self, tenant: &TenantId, digest: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(sql(
            "SELECT wasm FROM plugins WHERE tenant_id = ? AND digest = ? LIMIT 1",
        ))
        .bind(tenant.as_str())
        .bind(digest)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, AppendError>> {
        let results = self.append_batch_once_or_apart(requests).await;
        let failed = results.iter().find_map(|r| match r {
            Err(AppendError::Store(fault, _)) => Some(*fault),
            _ => None,
        });
        self.health.record(failed);
        results
    }

    async fn stream_version(&self, tenant: &TenantId, stream_id: &str) -> StoreResult<u64> {
        stream_version(self.reader(), tenant.as_str(), stream_id).await
    }

    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        from: u64,
        limit: u32,
        direction: Direction,
    ) -> StoreResult<Vec<RecordedEvent>> {
        let (cmp, order) = match direction {
            Direction::Forward => (">=", "ASC"),
            Direction::Backward => ("<=", "DESC"),
        };
        let text = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ? AND stream_id = ? \
             AND version {cmp} ? ORDER BY version {order} LIMIT ?"
        );
        let rows = sqlx::query(sql(&text))
            .bind(tenant.as_str())
            .bind(stream_id)
            .bind(from.min(i64::MAX as u64) as i64)
            .bind(limit as i64)
            .fetch_all(self.reader())
            .await?;
        Ok(rows.into_iter().map(to_event).collect())
    }

    async fn read_stream_range(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        after: u64,
        until: u64,
    ) -> StoreResult<Vec<RecordedEvent>> {
        range(self.reader(), tenant.as_str(), stream_id, after, until).await
    }

    async fn stream_version_at(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        at_ms: i64,
    ) -> StoreResult<u64> {
        let v: Option<i64> = sqlx::query_scalar(sql(
            "SELECT MAX(version) FROM events WHERE tenant_id = ? AND stream_id = ? \
             AND recorded_at <= ?",
        ))
        .bind(tenant.as_str())
        .bind(stream_id)
        .bind(at_ms)
        .fetch_one(self.reader())
        .await?;
        Ok(v.unwrap_or(0) as u64)
    }

    async fn read_log(
        &self,
        tenant: &TenantId,
        after: u64,
        limit: u32,
        types: &[String],
    ) -> StoreResult<Vec<RecordedEvent>> {
        let mut query = QueryBuilder::<Db>::new(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = "
        ));
        query
            .push_bind(tenant.as_str())
            .push(" AND position > ")
            .push_bind(after.min(i64::MAX as u64) as i64);
        if !types.is_empty() {
            query.push(" AND event_type IN (");
            let mut list = query.separated(", ");
            for t in types {
                list.push_bind(t);
            }
            list.push_unseparated(")");
        }
        query
            .push(" ORDER BY position LIMIT ")
            .push_bind(limit as i64);
        let rows = query.build().fetch_all(self.reader()).await?;
        Ok(rows.into_iter().map(to_event).collect())
    }

    async fn head(&self, tenant: &TenantId) -> StoreResult<u64> {
        let head: Option<i64> = sqlx::query_scalar(sql("SELECT head FROM tenants WHERE id = ?"))
            .bind(tenant.as_str())
            .fetch_optional(self.reader())
            .await?;
        Ok(head.unwrap_or(0) as u64)
    }

    async fn command_record(
        &self,
        tenant: &TenantId,
        command_id: &str,
    ) -> StoreResult<Option<CommandRecord>> {
        snapshots::command_record(self, tenant, command_id).await
    }

    async fn record_rejection(
        &self,
        tenant: &TenantId,
        command_id: &str,
        record: &CommandRecord,
    ) -> StoreResult<()> {
        snapshots::record_rejection(self, tenant, command_id, record).await
    }

    async fn prune_commands(&self, before_ms: i64) -> StoreResult<u64> {
        snapshots::prune_commands(self, before_ms).await
    }

    async fn snapshot(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        digest: &str,
        max_version: u64,
    ) -> StoreResult<Option<Snapshot>> {
        snapshots::snapshot(self, tenant, stream_id, digest, max_version).await
    }

    async fn put_snapshot(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        digest: &str,
        snapshot: &Snapshot,
    ) -> StoreResult<()> {
        snapshots::put_snapshot(self, tenant, stream_id, digest, snapshot).await
    }

    async fn add_projection_version(
        &self,
        tenant: &TenantId,
        name: &str,
        plugin_version: u64,
        digest: &str,
        status: ProjectionStatus,
    ) -> StoreResult<ProjectionRecord> {
        self.insert_projection_version(tenant, name, plugin_version, digest, status)
            .await
    }

    async fn projections(&self, tenant: Option<&TenantId>) -> StoreResult<Vec<ProjectionRecord>> {
        self.select_projections(tenant).await
    }

    async fn commit_projection_batch(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        from: u64,
        to: u64,
        writes: &DocumentWrites,
    ) -> StoreResult<bool> {
        self.write_projection_batch(tenant, name, version, from, to, writes)
            .await
    }

    async fn set_projection_status(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        status: ProjectionStatus,
        error: Option<&str>,
    ) -> StoreResult<()> {
        self.update_projection_status(tenant, name, version, status, error)
            .await
    }

    async fn promote_projection(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        rule: PromoteRule,
        keep_retired: usize,
    ) -> StoreResult<Promotion> {
        self.decide_promotion(tenant, name, version, rule, keep_retired)
            .await
    }

    async fn delete_projection_version(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
    ) -> StoreResult<bool> {
        self.delete_inactive_build(tenant, name, version).await
    }

    async fn document(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        key: &str,
    ) -> StoreResult<Option<String>> {
        self.select_document(tenant, name, version, key).await
    }

    async fn documents(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(String, String)>> {
        self.select_documents(tenant, name, version, prefix, after, limit)
            .await
    }
}
