//! The fleet's SQL, shared by both backends like `shared.rs` (compiled once per
//! backend): each host's heartbeat (`GET /admin/hosts`) and the leases that say which
//! host runs each projection build's worker.

use sqlx::Row;

use super::{Backend, Db};
use crate::store::dialect::Dialect;
use crate::store::{HostRecord, LeaseRecord, TenantId};

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

impl Backend {
    pub(super) async fn select_leases(&self) -> anyhow::Result<Vec<LeaseRecord>> {
        let rows = sqlx::query(sql(
            "SELECT tenant_id, name, build, owner, expires_at FROM projection_leases \
             ORDER BY tenant_id, name, build",
        ))
        .fetch_all(self.reader())
        .await?;
        let mut leases = Vec::with_capacity(rows.len());
        for row in rows {
            let tenant: String = row.get(0);
            let Some(tenant) = TenantId::parse(&tenant) else {
                continue;
            };
            leases.push(LeaseRecord {
                tenant,
                name: row.get(1),
                build: row.get::<i64, _>(2) as u64,
                owner: row.get(3),
                expires_at: row.get(4),
            });
        }
        Ok(leases)
    }

    /// Takes the lease when nobody holds it or its holder let it expire.
    pub(super) async fn upsert_lease(&self, lease: &LeaseRecord, now: i64) -> anyhow::Result<bool> {
        let taken = sqlx::query(sql(
            "INSERT INTO projection_leases (tenant_id, name, build, owner, expires_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, name, build) DO UPDATE \
             SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE projection_leases.expires_at < ? OR projection_leases.owner = excluded.owner",
        ))
        .bind(lease.tenant.as_str())
        .bind(&lease.name)
        .bind(lease.build as i64)
        .bind(&lease.owner)
        .bind(lease.expires_at)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    pub(super) async fn extend_leases(&self, owner: &str, expires_at: i64) -> anyhow::Result<()> {
        sqlx::query(sql(
            "UPDATE projection_leases SET expires_at = ? WHERE owner = ?",
        ))
        .bind(expires_at)
        .bind(owner)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Hands back one lease of `owner`, or all of them.
    pub(super) async fn delete_leases(
        &self,
        owner: &str,
        one: Option<(&TenantId, &str, u64)>,
    ) -> anyhow::Result<()> {
        match one {
            Some((tenant, name, build)) => {
                sqlx::query(sql(
                    "DELETE FROM projection_leases WHERE owner = ? AND tenant_id = ? \
                     AND name = ? AND build = ?",
                ))
                .bind(owner)
                .bind(tenant.as_str())
                .bind(name)
                .bind(build as i64)
                .execute(self.writer())
                .await?
            }
            None => {
                sqlx::query(sql("DELETE FROM projection_leases WHERE owner = ?"))
                    .bind(owner)
                    .execute(self.writer())
                    .await?
            }
        };
        Ok(())
    }
}
