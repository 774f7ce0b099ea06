//! The hosts table's SQL, shared by both backends like `shared.rs` (compiled once per
//! backend): each host's heartbeat, for `GET /admin/hosts`.

use sqlx::Row;

use super::{Backend, Db};
use crate::store::HostRecord;
use crate::store::dialect::Dialect;

fn sql(text: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(<Db as Dialect>::sql(text))
}

impl Backend {
    pub(super) async fn upsert_heartbeat(
        &self,
        host_id: &str,
        started_at: i64,
        now: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(sql(
            "INSERT INTO hosts (host_id, started_at, heartbeat_at) VALUES (?, ?, ?) \
             ON CONFLICT (host_id) DO UPDATE SET started_at = excluded.started_at, \
             heartbeat_at = excluded.heartbeat_at",
        ))
        .bind(host_id)
        .bind(started_at)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    pub(super) async fn select_hosts(&self) -> anyhow::Result<Vec<HostRecord>> {
        let rows = sqlx::query(sql(
            "SELECT host_id, started_at, heartbeat_at FROM hosts ORDER BY host_id",
        ))
        .fetch_all(self.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| HostRecord {
                host_id: row.get(0),
                started_at: row.get(1),
                heartbeat_at: row.get(2),
            })
            .collect())
    }

    pub(super) async fn delete_host_row(&self, host_id: &str) -> anyhow::Result<()> {
        sqlx::query(sql("DELETE FROM hosts WHERE host_id = ?"))
            .bind(host_id)
            .execute(self.writer())
            .await?;
        Ok(())
    }
}
