//! Tenants' SQL, shared by both backends like `shared.rs` (compiled once per backend):
//! their rows, tokens and limits, the bytes each stores, and a tenant's deletion with
//! every row it owns.

use anyhow::Context;
use sqlx::Row;

use super::super::{Backend, DbRow};
use super::rows::sql;
use crate::store::*;

fn to_tenant(row: DbRow) -> anyhow::Result<TenantRecord> {
    let id: String = row.get(0);
    let limits: String = row.get(1);
    Ok(TenantRecord {
        id: TenantId::parse(&id).context("stored tenant id is invalid")?,
        limits: serde_json::from_str(&limits)?,
        created_at: row.get(2),
    })
}

/// Tables that hold tenant rows, emptied when a tenant is deleted.
const TENANT_TABLES: [&str; 8] = [
    "projection_leases",
    "events",
    "commands",
    "snapshots",
    "plugins",
    "plugin_activations",
    "documents",
    "projections",
];

pub(super) async fn create_tenant(
    store: &Backend,
    id: &TenantId,
    token_hash: &str,
    limits: &serde_json::Value,
) -> StoreResult<bool> {
    let done = sqlx::query(sql(
        "INSERT INTO tenants (id, token_hash, limits, created_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (id) DO NOTHING",
    ))
    .bind(id.as_str())
    .bind(token_hash)
    .bind(limits.to_string())
    .bind(now_ms())
    .execute(store.writer())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn tenant(store: &Backend, id: &TenantId) -> StoreResult<Option<TenantRecord>> {
    sqlx::query(sql(
        "SELECT id, limits, created_at FROM tenants WHERE id = ?",
    ))
    .bind(id.as_str())
    .fetch_optional(store.reader())
    .await?
    .map(to_tenant)
    .transpose()
}

pub(super) async fn tenants(store: &Backend) -> StoreResult<Vec<TenantRecord>> {
    sqlx::query(sql(
        "SELECT id, limits, created_at FROM tenants ORDER BY id",
    ))
    .fetch_all(store.reader())
    .await?
    .into_iter()
    .map(to_tenant)
    .collect()
}

pub(super) async fn tenant_by_token_hash(
    store: &Backend,
    token_hash: &str,
) -> StoreResult<Option<TenantId>> {
    let id: Option<String> = sqlx::query_scalar(sql("SELECT id FROM tenants WHERE token_hash = ?"))
        .bind(token_hash)
        .fetch_optional(store.reader())
        .await?;
    Ok(id.and_then(|id| TenantId::parse(&id)))
}

pub(super) async fn set_tenant_limits(
    store: &Backend,
    id: &TenantId,
    limits: &serde_json::Value,
) -> StoreResult<bool> {
    let done = sqlx::query(sql("UPDATE tenants SET limits = ? WHERE id = ?"))
        .bind(limits.to_string())
        .bind(id.as_str())
        .execute(store.writer())
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn set_tenant_token(
    store: &Backend,
    id: &TenantId,
    token_hash: &str,
) -> StoreResult<bool> {
    let done = sqlx::query(sql("UPDATE tenants SET token_hash = ? WHERE id = ?"))
        .bind(token_hash)
        .bind(id.as_str())
        .execute(store.writer())
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn stored_usage(store: &Backend, id: &TenantId) -> StoreResult<StoredUsage> {
    let row = sqlx::query(sql("SELECT COUNT(*), \
         CAST(COALESCE(SUM(LENGTH(payload) + LENGTH(metadata)), 0) AS BIGINT) \
         FROM events WHERE tenant_id = ?"))
    .bind(id.as_str())
    .fetch_one(store.reader())
    .await?;
    Ok(StoredUsage {
        events: row.get::<i64, _>(0) as u64,
        event_bytes: row.get::<i64, _>(1) as u64,
        ..store.stored_besides_events(id).await?
    })
}

pub(super) async fn stored_besides_events(
    store: &Backend,
    id: &TenantId,
) -> StoreResult<StoredUsage> {
    let row = sqlx::query(sql("SELECT \
         (SELECT CAST(COALESCE(SUM(LENGTH(key) + LENGTH(doc)), 0) AS BIGINT) \
          FROM documents WHERE tenant_id = ?), \
         (SELECT CAST(COALESCE(SUM(LENGTH(state)), 0) AS BIGINT) \
          FROM snapshots WHERE tenant_id = ?), \
         (SELECT CAST(COALESCE(SUM(LENGTH(wasm) + artifact_bytes), 0) AS BIGINT) \
          FROM plugins WHERE tenant_id = ?)"))
    .bind(id.as_str())
    .bind(id.as_str())
    .bind(id.as_str())
    .fetch_one(store.reader())
    .await?;
    let read = |i: usize| row.get::<i64, _>(i) as u64;
    Ok(StoredUsage {
        document_bytes: read(0),
        snapshot_bytes: read(1),
        plugin_bytes: read(2),
        ..StoredUsage::default()
    })
}

pub(super) async fn delete_tenant(store: &Backend, id: &TenantId) -> StoreResult<bool> {
    let mut tx = store.writer().begin().await?;
    for table in TENANT_TABLES {
        sqlx::query(sql(&format!("DELETE FROM {table} WHERE tenant_id = ?")))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
    }
    let gone = sqlx::query(sql("DELETE FROM tenants WHERE id = ?"))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(gone.rows_affected() == 1)
}
