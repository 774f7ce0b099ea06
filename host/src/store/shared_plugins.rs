//! The plugin registry's SQL, shared by both backends like `shared.rs` (compiled once
//! per backend as `sqlite::shared_plugins` and `postgres::shared_plugins`): versions,
//! their verification, and which version of each plugin is active.

use anyhow::Context;
use sqlx::Row;

use super::{Backend, Db, DbRow};
use crate::store::dialect::Dialect;
use crate::store::*;

fn sql(text: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(<Db as Dialect>::sql(text))
}

/// The columns `to_plugin` reads, from `plugins p` joined with `plugin_activations a`.
const PLUGIN_COLUMNS: &str = "p.name, p.version, p.kind, p.digest, p.uploaded_at, p.status, \
     p.report, p.upcasters, a.version";

const FROM_PLUGINS: &str = "FROM plugins p LEFT JOIN plugin_activations a \
     ON a.tenant_id = p.tenant_id AND a.name = p.name";

fn to_plugin(row: DbRow) -> anyhow::Result<PluginVersion> {
    let kind: String = row.get(2);
    let status: String = row.get(5);
    let report: Option<String> = row.get(6);
    let upcasters: String = row.get(7);
    let active: Option<i64> = row.get(8);
    let version = row.get::<i64, _>(1) as u64;
    Ok(PluginVersion {
        name: row.get(0),
        version,
        kind: PluginKind::parse(&kind).context("stored plugin kind is invalid")?,
        digest: row.get(3),
        uploaded_at: row.get(4),
        verification: Verification::parse(&status).context("stored plugin status is invalid")?,
        report: report.map(|r| serde_json::from_str(&r)).transpose()?,
        upcasters: serde_json::from_str(&upcasters)?,
        active: active == Some(version as i64),
    })
}

impl Backend {
    pub(super) async fn insert_plugin_version(
        &self,
        tenant: &TenantId,
        new: NewPluginVersion<'_>,
    ) -> StoreResult<PluginVersion> {
        let mut tx = self.writer().begin().await?;
        let newest: Option<i64> = sqlx::query_scalar(sql(
            "SELECT MAX(version) FROM plugins WHERE tenant_id = ? AND name = ?",
        ))
        .bind(tenant.as_str())
        .bind(new.name)
        .fetch_one(&mut *tx)
        .await?;
        let version = newest.unwrap_or(0) as u64 + 1;
        let uploaded_at = now_ms();
        sqlx::query(sql(
            "INSERT INTO plugins (tenant_id, name, version, kind, digest, wasm, uploaded_at, \
             status, report, upcasters, artifact_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(tenant.as_str())
        .bind(new.name)
        .bind(version as i64)
        .bind(new.kind.as_str())
        .bind(new.digest)
        .bind(new.wasm)
        .bind(uploaded_at)
        .bind(new.verification.as_str())
        .bind(new.report.map(|r| r.to_string()))
        .bind(serde_json::to_string(new.upcasters)?)
        .bind(new.artifact_bytes as i64)
        .execute(&mut *tx)
        .await?;
        if new.activate {
            upsert_activation(&mut tx, tenant, new.name, version).await?;
        }
        tx.commit().await?;
        Ok(PluginVersion {
            name: new.name.to_owned(),
            version,
            kind: new.kind,
            digest: new.digest.to_owned(),
            uploaded_at,
            verification: new.verification,
            report: new.report.cloned(),
            upcasters: new.upcasters.to_vec(),
            active: new.activate,
        })
    }

    pub(super) async fn select_plugin_heads(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> StoreResult<(u64, u64)> {
        let row = sqlx::query(sql(
            "SELECT (SELECT version FROM plugin_activations WHERE tenant_id = ? AND name = ?), \
             (SELECT MAX(version) FROM plugins WHERE tenant_id = ? AND name = ?)",
        ))
        .bind(tenant.as_str())
        .bind(name)
        .bind(tenant.as_str())
        .bind(name)
        .fetch_one(self.reader())
        .await?;
        let active: Option<i64> = row.get(0);
        let newest: Option<i64> = row.get(1);
        Ok((active.unwrap_or(0) as u64, newest.unwrap_or(0) as u64))
    }

    pub(super) async fn select_plugin_versions(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<Vec<PluginVersion>> {
        sqlx::query(sql(&format!(
            "SELECT {PLUGIN_COLUMNS} {FROM_PLUGINS} WHERE p.tenant_id = ? \
             ORDER BY p.name, p.version"
        )))
        .bind(tenant.as_str())
        .fetch_all(self.reader())
        .await?
        .into_iter()
        .map(to_plugin)
        .collect()
    }

    pub(super) async fn complete_plugin_verification(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        verification: Verification,
        report: &serde_json::Value,
        activate_over: Option<u64>,
    ) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await?;
        sqlx::query(sql(
            "UPDATE plugins SET status = ?, report = ? WHERE tenant_id = ? AND name = ? \
             AND version = ?",
        ))
        .bind(verification.as_str())
        .bind(report.to_string())
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .execute(&mut *tx)
        .await?;
        let mut activated = false;
        if let Some(expected) = activate_over {
            // Locks the activation row (PostgreSQL) so a concurrent activation waits.
            let active: Option<i64> = sqlx::query_scalar(sql(&format!(
                "SELECT version FROM plugin_activations WHERE tenant_id = ? AND name = ?{}",
                <Db as Dialect>::LOCK_ROW
            )))
            .bind(tenant.as_str())
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            let active = active.unwrap_or(0) as u64;
            if active == expected || active < version {
                upsert_activation(&mut tx, tenant, name, version).await?;
                activated = true;
            }
        }
        tx.commit().await?;
        Ok(activated)
    }

    pub(super) async fn set_active_plugin(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
    ) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await?;
        let exists: Option<i64> = sqlx::query_scalar(sql(
            "SELECT version FROM plugins WHERE tenant_id = ? AND name = ? AND version = ?",
        ))
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Ok(false);
        }
        upsert_activation(&mut tx, tenant, name, version).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn select_streams_with_prefix(
        &self,
        tenant: &TenantId,
        prefix: &str,
    ) -> StoreResult<Vec<(String, u64)>> {
        // substr() rather than a range on the id: the engines agree on it whatever
        // the column's collation. The tenant's part of the stream index is scanned.
        let rows = sqlx::query(sql(
            "SELECT stream_id, MAX(version) FROM events WHERE tenant_id = ? \
             AND substr(stream_id, 1, ?) = ? GROUP BY stream_id ORDER BY stream_id",
        ))
        .bind(tenant.as_str())
        .bind(prefix.chars().count() as i32)
        .bind(prefix)
        .fetch_all(self.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1) as u64))
            .collect())
    }
}

async fn upsert_activation(
    tx: &mut sqlx::Transaction<'_, Db>,
    tenant: &TenantId,
    name: &str,
    version: u64,
) -> StoreResult<()> {
    sqlx::query(sql(
        "INSERT INTO plugin_activations (tenant_id, name, version, activated_at) \
         VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, name) \
         DO UPDATE SET version = excluded.version, activated_at = excluded.activated_at",
    ))
    .bind(tenant.as_str())
    .bind(name)
    .bind(version as i64)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
