//! What the shared statement files have in common, compiled with `shared.rs`
//! once per backend: a statement in the engine's dialect (`sql`), the events' columns and their
//! rows decoded, and the two event reads the append transaction also makes. A leaf
//! among them, so that `shared.rs` and the files it delegates to do not import each
//! other.

use sqlx::Row;

use super::super::{Db, DbRow};
use crate::store::RecordedEvent;
use crate::store::dialect::Dialect;

/// A statement in this engine's dialect.
pub(super) fn sql(text: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(<Db as Dialect>::sql(text))
}

pub(super) const EVENT_COLUMNS: &str =
    "event_id, stream_id, version, position, event_type, payload, metadata, recorded_at";

pub(super) fn to_event(row: DbRow) -> RecordedEvent {
    RecordedEvent {
        event_id: row.get(0),
        stream_id: row.get(1),
        version: row.get::<i64, _>(2) as u64,
        position: row.get::<i64, _>(3) as u64,
        event_type: row.get(4),
        payload: row.get(5),
        metadata: row.get(6),
        recorded_at: row.get(7),
    }
}

pub(super) async fn stream_version<'e, E: sqlx::Executor<'e, Database = Db>>(
    db: E,
    tenant: &str,
    stream_id: &str,
) -> anyhow::Result<u64> {
    let v: Option<i64> = sqlx::query_scalar(sql(
        "SELECT MAX(version) FROM events WHERE tenant_id = ? AND stream_id = ?",
    ))
    .bind(tenant)
    .bind(stream_id)
    .fetch_one(db)
    .await?;
    Ok(v.unwrap_or(0) as u64)
}

pub(super) async fn range<'e, E: sqlx::Executor<'e, Database = Db>>(
    db: E,
    tenant: &str,
    stream_id: &str,
    after: u64,
    until: u64,
) -> anyhow::Result<Vec<RecordedEvent>> {
    let text = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ? AND stream_id = ? \
         AND version > ? AND version <= ? ORDER BY version"
    );
    let rows = sqlx::query(sql(&text))
        .bind(tenant)
        .bind(stream_id)
        .bind(after as i64)
        .bind(until.min(i64::MAX as u64) as i64)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(to_event).collect())
}
