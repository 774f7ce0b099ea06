//! Projection builds' SQL, shared by both backends like `shared.rs` (compiled once per
//! backend as `sqlite::shared_projections` and `postgres::shared_projections`): builds,
//! checkpoints and documents, and the one rule for which build is active.
//!
//! Lock order, so concurrent hosts never deadlock: a projection's build rows (in
//! version order) before any document. Promotion and new builds lock every row of the
//! projection first; a batch commit and a deletion lock their own build's row first.

use anyhow::Context;
use sqlx::Row;

use super::{Backend, Db};
use crate::store::dialect::Dialect;
use crate::store::*;

/// Documents per multi-row statement: 5 parameters each keeps a statement well under
/// either engine's parameter limit.
const DOCUMENTS_PER_STATEMENT: usize = 200;

fn sql(text: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(<Db as Dialect>::sql(text))
}

/// One build row as promotion sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct BuildRow {
    version: u64,
    status: ProjectionStatus,
    /// Becomes active when it catches up (the newest requested version).
    auto_promote: bool,
}

/// The rows after a promotion, or `None` when the rule refuses it. Pure: the rule is
/// here, the SQL around it only reads and writes rows.
fn promotion_plan(rows: &[BuildRow], version: u64, rule: PromoteRule) -> Option<Vec<BuildRow>> {
    let target = rows.iter().find(|r| r.version == version)?;
    let allowed = match rule {
        PromoteRule::Explicit => target.status != ProjectionStatus::Failed,
        // Only while it is still what was asked for last: a later promote or a newer
        // build cleared its flag.
        PromoteRule::CaughtUp => target.status == ProjectionStatus::Building && target.auto_promote,
    };
    if !allowed {
        return None;
    }
    Some(
        rows.iter()
            .map(|r| {
                let status = if r.version == version {
                    ProjectionStatus::Active
                } else {
                    match (r.status, rule) {
                        (ProjectionStatus::Active, _) => ProjectionStatus::Retired,
                        // An explicit choice cancels every pending auto-promotion.
                        (ProjectionStatus::Building, PromoteRule::Explicit) => {
                            ProjectionStatus::Retired
                        }
                        (other, _) => other,
                    }
                };
                let auto_promote =
                    rule == PromoteRule::CaughtUp && r.auto_promote && r.version != version;
                BuildRow {
                    version: r.version,
                    status,
                    auto_promote,
                }
            })
            .collect(),
    )
}

impl Backend {
    /// Every build row of one projection, locked until the transaction ends.
    async fn lock_builds(
        tx: &mut sqlx::Transaction<'_, Db>,
        tenant: &TenantId,
        name: &str,
    ) -> StoreResult<Vec<BuildRow>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT version, status, auto_promote FROM projections WHERE tenant_id = ? \
             AND name = ? ORDER BY version{}",
            <Db as Dialect>::LOCK_ROW
        )))
        .bind(tenant.as_str())
        .bind(name)
        .fetch_all(&mut **tx)
        .await?;
        rows.into_iter()
            .map(|r| {
                let status: String = r.get(1);
                Ok(BuildRow {
                    version: r.get::<i64, _>(0) as u64,
                    status: ProjectionStatus::parse(&status).context("stored status is invalid")?,
                    auto_promote: r.get(2),
                })
            })
            .collect()
    }

    /// Writes the rows that `plan` changed.
    async fn write_builds(
        tx: &mut sqlx::Transaction<'_, Db>,
        tenant: &TenantId,
        name: &str,
        before: &[BuildRow],
        after: &[BuildRow],
    ) -> StoreResult<()> {
        for (old, new) in before.iter().zip(after) {
            if old == new {
                continue;
            }
            let clears_error = new.status == ProjectionStatus::Active && old.status != new.status;
            sqlx::query(sql("UPDATE projections SET status = ?, auto_promote = ?, \
                 error = CASE WHEN ? THEN NULL ELSE error END \
                 WHERE tenant_id = ? AND name = ? AND version = ?"))
            .bind(new.status.as_str())
            .bind(new.auto_promote)
            .bind(clears_error)
            .bind(tenant.as_str())
            .bind(name)
            .bind(new.version as i64)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    pub(super) async fn insert_projection_version(
        &self,
        tenant: &TenantId,
        name: &str,
        plugin_version: u64,
        digest: &str,
        status: ProjectionStatus,
    ) -> StoreResult<ProjectionRecord> {
        let mut tx = self.writer().begin().await?;
        let rows = Self::lock_builds(&mut tx, tenant, name).await?;
        let newest: Option<i64> = sqlx::query_scalar(sql(
            "SELECT MAX(version) FROM projections WHERE tenant_id = ? AND name = ?",
        ))
        .bind(tenant.as_str())
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let record = ProjectionRecord {
            tenant: tenant.clone(),
            name: name.to_owned(),
            version: newest.unwrap_or(0) as u64 + 1,
            plugin_version,
            digest: digest.to_owned(),
            status,
            position: 0,
            error: None,
        };
        let building = status == ProjectionStatus::Building;
        if building {
            // The newest request: older builds waiting to take over never will.
            let cancelled: Vec<BuildRow> = rows
                .iter()
                .map(|r| match r.status {
                    ProjectionStatus::Building => BuildRow {
                        status: ProjectionStatus::Retired,
                        auto_promote: false,
                        ..*r
                    },
                    _ => BuildRow {
                        auto_promote: false,
                        ..*r
                    },
                })
                .collect();
            Self::write_builds(&mut tx, tenant, name, &rows, &cancelled).await?;
        }
        sqlx::query(sql(
            "INSERT INTO projections (tenant_id, name, version, plugin_version, digest, status, \
             position, created_at, auto_promote) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
        ))
        .bind(tenant.as_str())
        .bind(name)
        .bind(record.version as i64)
        .bind(plugin_version as i64)
        .bind(digest)
        .bind(status.as_str())
        .bind(now_ms())
        .bind(building)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    pub(super) async fn decide_promotion(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        rule: PromoteRule,
        keep_retired: usize,
    ) -> StoreResult<Promotion> {
        let mut tx = self.writer().begin().await?;
        let rows = Self::lock_builds(&mut tx, tenant, name).await?;
        let Some(after) = promotion_plan(&rows, version, rule) else {
            return Ok(Promotion {
                promoted: false,
                doomed: Vec::new(),
            });
        };
        Self::write_builds(&mut tx, tenant, name, &rows, &after).await?;
        tx.commit().await?;
        // Deleted later, by the caller, once their workers have stopped.
        let mut retired: Vec<u64> = after
            .iter()
            .filter(|r| r.status == ProjectionStatus::Retired)
            .map(|r| r.version)
            .collect();
        retired.sort_unstable_by(|a, b| b.cmp(a));
        Ok(Promotion {
            promoted: true,
            doomed: retired.into_iter().skip(keep_retired).collect(),
        })
    }

    pub(super) async fn delete_inactive_build(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
    ) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await?;
        // The build's row first (the lock order): a batch commit racing this one waits
        // for it, then finds its build gone and writes nothing.
        let gone = sqlx::query(sql(
            "DELETE FROM projections WHERE tenant_id = ? AND name = ? AND version = ? \
             AND status <> 'active'",
        ))
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .execute(&mut *tx)
        .await?;
        if gone.rows_affected() == 0 {
            // Promoted meanwhile, or deleted already.
            return Ok(false);
        }
        sqlx::query(sql(
            "DELETE FROM documents WHERE tenant_id = ? AND projection = ? AND version = ?",
        ))
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sql(
            "DELETE FROM projection_leases WHERE tenant_id = ? AND name = ? AND build = ?",
        ))
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn select_projections(
        &self,
        tenant: Option<&TenantId>,
    ) -> StoreResult<Vec<ProjectionRecord>> {
        let rows = sqlx::query(sql("SELECT tenant_id, name, version, plugin_version, digest, status, position, error \
             FROM projections WHERE (CAST(? AS TEXT) IS NULL OR tenant_id = ?) ORDER BY tenant_id, name, version"))
        .bind(tenant.map(|t| t.as_str()))
        .bind(tenant.map(|t| t.as_str()))
        .fetch_all(self.reader())
        .await?;
        rows.into_iter()
            .map(|r| {
                let tenant: String = r.get(0);
                let status: String = r.get(5);
                Ok(ProjectionRecord {
                    tenant: TenantId::parse(&tenant).context("stored tenant id is invalid")?,
                    name: r.get(1),
                    version: r.get::<i64, _>(2) as u64,
                    plugin_version: r.get::<i64, _>(3) as u64,
                    digest: r.get(4),
                    status: ProjectionStatus::parse(&status).context("stored status is invalid")?,
                    position: r.get::<i64, _>(6) as u64,
                    error: r.get(7),
                })
            })
            .collect()
    }

    pub(super) async fn write_projection_batch(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        from: u64,
        to: u64,
        writes: &DocumentWrites,
    ) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await?;
        let moved = sqlx::query(sql(
            "UPDATE projections SET position = ? WHERE tenant_id = ? AND name = ? \
             AND version = ? AND position = ?",
        ))
        .bind(to as i64)
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .bind(from as i64)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        // Many rows per statement: a batch of a catch-up writes hundreds of documents.
        let puts: Vec<(&String, &Vec<u8>)> = writes
            .iter()
            .filter_map(|(key, doc)| doc.as_ref().map(|doc| (key, doc)))
            .collect();
        for chunk in puts.chunks(DOCUMENTS_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO documents (tenant_id, projection, version, key, doc) ",
            );
            insert.push_values(chunk, |mut row, (key, doc)| {
                row.push_bind(tenant.as_str())
                    .push_bind(name)
                    .push_bind(version as i64)
                    .push_bind(key.as_str())
                    .push_bind(String::from_utf8_lossy(doc).into_owned());
            });
            insert.push(
                " ON CONFLICT (tenant_id, projection, version, key) DO UPDATE SET doc = excluded.doc",
            );
            insert.build().execute(&mut *tx).await?;
        }
        let deletes: Vec<&String> = writes
            .iter()
            .filter(|(_, doc)| doc.is_none())
            .map(|(key, _)| key)
            .collect();
        for chunk in deletes.chunks(DOCUMENTS_PER_STATEMENT) {
            let mut delete =
                sqlx::QueryBuilder::<Db>::new("DELETE FROM documents WHERE tenant_id = ");
            delete
                .push_bind(tenant.as_str())
                .push(" AND projection = ")
                .push_bind(name)
                .push(" AND version = ")
                .push_bind(version as i64)
                .push(" AND key IN (");
            let mut keys = delete.separated(", ");
            for key in chunk {
                keys.push_bind(key.as_str());
            }
            keys.push_unseparated(")");
            delete.build().execute(&mut *tx).await?;
        }
        // The other hosts' reads (`min_position`) and status follow the build's
        // checkpoint without running its worker.
        if let Some(notify) = <Db as Dialect>::NOTIFY {
            let notice = Notice::Progress {
                tenant: tenant.clone(),
                name: name.to_owned(),
                build: version,
                position: to,
            };
            sqlx::query(sql(notify))
                .bind(notice.payload())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn update_projection_status(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        status: ProjectionStatus,
        error: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(sql(
            "UPDATE projections SET status = ?, error = ? WHERE tenant_id = ? AND name = ? \
             AND version = ?",
        ))
        .bind(status.as_str())
        .bind(error)
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    pub(super) async fn select_document(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        key: &str,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(sql(
            "SELECT doc FROM documents WHERE tenant_id = ? AND projection = ? AND version = ? \
             AND key = ?",
        ))
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .bind(key)
        .fetch_optional(self.reader())
        .await?)
    }

    pub(super) async fn select_documents(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(String, String)>> {
        let start = after.filter(|a| *a >= prefix).unwrap_or(prefix);
        let rows = sqlx::query(sql("SELECT key, doc FROM documents WHERE tenant_id = ? AND projection = ? \
             AND version = ? AND key >= ? AND (CAST(? AS TEXT) IS NULL OR key < ?) AND (CAST(? AS TEXT) IS NULL OR key <> ?) \
             ORDER BY key LIMIT ?"))
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .bind(start)
        .bind(prefix_end(prefix))
        .bind(prefix_end(prefix))
        .bind(after)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(self.reader())
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
