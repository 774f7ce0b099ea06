//! Command ids and snapshots' SQL, shared by both backends like `shared.rs` (compiled
//! once per backend): the idempotency record of each command id (invariant 18) and
//! aggregate snapshots with their thinning (`plan::snapshot_to_thin`).

use sqlx::Row;

use super::super::Backend;
use super::rows::sql;
use crate::store::plan;
use crate::store::*;

pub(super) async fn command_record(
    store: &Backend,
    tenant: &TenantId,
    command_id: &str,
) -> StoreResult<Option<CommandRecord>> {
    let row = sqlx::query(sql(
        "SELECT stream_id, first_version, last_version, fingerprint, rejection \
         FROM commands WHERE tenant_id = ? AND command_id = ? \
         ORDER BY first_version LIMIT 1",
    ))
    .bind(tenant.as_str())
    .bind(command_id)
    .fetch_optional(store.reader())
    .await?;
    Ok(row.map(|r| CommandRecord {
        stream_id: r.get(0),
        first_version: r.get::<i64, _>(1) as u64,
        last_version: r.get::<i64, _>(2) as u64,
        fingerprint: r.get(3),
        rejection: r.get(4),
    }))
}

pub(super) async fn record_rejection(
    store: &Backend,
    tenant: &TenantId,
    command_id: &str,
    record: &CommandRecord,
) -> StoreResult<()> {
    // An id already taken (an append raced this rejection) keeps its first answer.
    sqlx::query(sql(
        "INSERT INTO commands (tenant_id, stream_id, command_id, first_version, \
         last_version, fingerprint, rejection, recorded_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    ))
    .bind(tenant.as_str())
    .bind(&record.stream_id)
    .bind(command_id)
    .bind(record.first_version as i64)
    .bind(record.last_version as i64)
    .bind(&record.fingerprint)
    .bind(&record.rejection)
    .bind(now_ms())
    .execute(store.writer())
    .await?;
    Ok(())
}

pub(super) async fn prune_commands(store: &Backend, before_ms: i64) -> StoreResult<u64> {
    let done = sqlx::query(sql(
        "DELETE FROM commands WHERE recorded_at IS NOT NULL AND recorded_at < ?",
    ))
    .bind(before_ms)
    .execute(store.writer())
    .await?;
    Ok(done.rows_affected())
}

pub(super) async fn snapshot(
    store: &Backend,
    tenant: &TenantId,
    stream_id: &str,
    digest: &str,
    max_version: u64,
) -> StoreResult<Option<Snapshot>> {
    let row = sqlx::query(sql(
        "SELECT version, state FROM snapshots WHERE tenant_id = ? AND stream_id = ? \
         AND plugin_digest = ? AND version <= ? ORDER BY version DESC LIMIT 1",
    ))
    .bind(tenant.as_str())
    .bind(stream_id)
    .bind(digest)
    .bind(max_version.min(i64::MAX as u64) as i64)
    .fetch_optional(store.reader())
    .await?;
    Ok(row.map(|r| Snapshot {
        version: r.get::<i64, _>(0) as u64,
        state: r.get(1),
    }))
}

pub(super) async fn put_snapshot(
    store: &Backend,
    tenant: &TenantId,
    stream_id: &str,
    digest: &str,
    snapshot: &Snapshot,
) -> StoreResult<()> {
    let mut tx = store.writer().begin().await?;
    sqlx::query(sql(
        "INSERT INTO snapshots (tenant_id, stream_id, plugin_digest, version, state) \
         VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (tenant_id, stream_id, plugin_digest, version) DO NOTHING",
    ))
    .bind(tenant.as_str())
    .bind(stream_id)
    .bind(digest)
    .bind(snapshot.version as i64)
    .bind(&snapshot.state)
    .execute(&mut *tx)
    .await?;
    let versions: Vec<i64> = sqlx::query_scalar(sql(
        "SELECT version FROM snapshots WHERE tenant_id = ? AND stream_id = ? \
         AND plugin_digest = ? ORDER BY version",
    ))
    .bind(tenant.as_str())
    .bind(stream_id)
    .bind(digest)
    .fetch_all(&mut *tx)
    .await?;
    if let Some(thinned) = plan::snapshot_to_thin(&versions) {
        sqlx::query(sql(
            "DELETE FROM snapshots WHERE tenant_id = ? AND stream_id = ? \
             AND plugin_digest = ? AND version = ?",
        ))
        .bind(tenant.as_str())
        .bind(stream_id)
        .bind(digest)
        .bind(thinned)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
