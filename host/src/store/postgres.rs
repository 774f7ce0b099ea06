//! The PostgreSQL backend, for a fleet of hosts sharing one database.
//!
//! Positions stay gap-free and commit-ordered per tenant because an append locks its
//! tenant's row (`SELECT … FOR UPDATE`, then `UPDATE tenants SET head = head + n`) until
//! it commits: the next append of that tenant cannot take a position until the previous
//! one is visible, so a reader of `position > after` never skips an event that commits
//! later. A batch locks its tenants in id order, so concurrent hosts cannot deadlock.
//! The rules themselves live in [`super::plan`], shared with SQLite.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row, Transaction};

use super::plan::{self, AppendDecision, ExistingId};
use super::*;

/// Rows per multi-row INSERT: 9 parameters each keeps a statement well under
/// PostgreSQL's limit of 65535 parameters.
const INSERT_CHUNK: usize = 200;

pub struct PostgresStore {
    /// One pool for reads and writes: PostgreSQL handles concurrent writers itself.
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and migrates the database.
    pub async fn open(url: &str) -> anyhow::Result<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .context("migrating the PostgreSQL database")?;
        Ok(PostgresStore { pool })
    }

    /// Applies every request inside one transaction. An `Err` means the transaction
    /// failed as a whole and nothing of it was written.
    async fn append_in_one_transaction(
        &self,
        requests: &[AppendRequest],
    ) -> anyhow::Result<Vec<Result<AppendOutcome, AppendError>>> {
        let mut tx = self.pool.begin().await?;
        let recorded_at = now_ms();
        // Tenant rows are locked in id order (see the module comment).
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by(|a, b| requests[*a].tenant.cmp(&requests[*b].tenant));
        let mut results: Vec<Option<Result<AppendOutcome, AppendError>>> =
            vec![None; requests.len()];
        for index in order {
            results[index] = Some(append_one(&mut tx, &requests[index], recorded_at).await?);
        }
        tx.commit().await?;
        Ok(results
            .into_iter()
            .map(|r| r.expect("every request answered"))
            .collect())
    }
}

async fn append_one(
    tx: &mut Transaction<'_, Postgres>,
    request: &AppendRequest,
    recorded_at: i64,
) -> anyhow::Result<Result<AppendOutcome, AppendError>> {
    let tenant = request.tenant.as_str();
    let known: Option<i64> =
        sqlx::query_scalar("SELECT head FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(tenant)
            .fetch_optional(&mut **tx)
            .await?;
    if known.is_none() {
        return Ok(Err(AppendError::UnknownTenant));
    }
    if let Some(command_id) = &request.command_id {
        let seen: Option<String> = sqlx::query_scalar(
            "SELECT command_id FROM commands WHERE tenant_id = $1 AND stream_id = $2 AND command_id = $3",
        )
        .bind(tenant)
        .bind(&request.stream_id)
        .bind(command_id)
        .fetch_optional(&mut **tx)
        .await?;
        if seen.is_some() {
            return Ok(Err(AppendError::CommandAlreadyApplied));
        }
    }
    let current = stream_version(&mut **tx, tenant, &request.stream_id).await?;
    let existing = if request.ids_from_writer {
        existing_ids(tx, tenant, &request.events).await?
    } else {
        Vec::new()
    };
    let ids: Vec<&str> = request.events.iter().map(|e| e.event_id.as_str()).collect();
    match plan::check_append(
        &request.stream_id,
        request.expected,
        &ids,
        current,
        &existing,
    ) {
        Err(refused) => Ok(Err(refused)),
        Ok(AppendDecision::Replay {
            first_version,
            last_version,
        }) => {
            let events = range(
                &mut **tx,
                tenant,
                &request.stream_id,
                first_version - 1,
                last_version,
            )
            .await?;
            Ok(Ok(AppendOutcome {
                version: current,
                events,
                replayed: true,
            }))
        }
        Ok(AppendDecision::Write) => {
            let n = request.events.len() as i64;
            let head: i64 = if n == 0 {
                known.unwrap_or(0)
            } else {
                sqlx::query_scalar(
                    "UPDATE tenants SET head = head + $1 WHERE id = $2 RETURNING head",
                )
                .bind(n)
                .bind(tenant)
                .fetch_one(&mut **tx)
                .await?
            };
            let events = plan::number_events(request, current, head as u64, recorded_at);
            for chunk in events.chunks(INSERT_CHUNK) {
                let mut insert = QueryBuilder::<Postgres>::new(
                    "INSERT INTO events (tenant_id, position, stream_id, version, event_id, \
                     event_type, payload, metadata, recorded_at) ",
                );
                insert.push_values(chunk, |mut row, e| {
                    row.push_bind(tenant)
                        .push_bind(e.position as i64)
                        .push_bind(&e.stream_id)
                        .push_bind(e.version as i64)
                        .push_bind(&e.event_id)
                        .push_bind(&e.event_type)
                        .push_bind(&e.payload)
                        .push_bind(&e.metadata)
                        .push_bind(e.recorded_at);
                });
                insert.build().execute(&mut **tx).await?;
            }
            let version = current + events.len() as u64;
            if let Some(command_id) = &request.command_id {
                sqlx::query(
                    "INSERT INTO commands (tenant_id, stream_id, command_id, first_version, \
                     last_version) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(tenant)
                .bind(&request.stream_id)
                .bind(command_id)
                .bind(current as i64 + 1)
                .bind(version as i64)
                .execute(&mut **tx)
                .await?;
            }
            Ok(Ok(AppendOutcome {
                version,
                events,
                replayed: false,
            }))
        }
    }
}

async fn existing_ids(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &str,
    events: &[ProposedEvent],
) -> anyhow::Result<Vec<ExistingId>> {
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT event_id, stream_id, version FROM events WHERE tenant_id = ",
    );
    query.push_bind(tenant).push(" AND event_id IN (");
    let mut ids = query.separated(", ");
    for e in events {
        ids.push_bind(&e.event_id);
    }
    ids.push_unseparated(")");
    let rows = query.build().fetch_all(&mut **tx).await?;
    Ok(rows
        .into_iter()
        .map(|r| ExistingId {
            event_id: r.get(0),
            stream_id: r.get(1),
            version: r.get::<i64, _>(2) as u64,
        })
        .collect())
}

const EVENT_COLUMNS: &str =
    "event_id, stream_id, version, position, event_type, payload, metadata, recorded_at";

fn to_event(row: PgRow) -> RecordedEvent {
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

async fn stream_version<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    tenant: &str,
    stream_id: &str,
) -> anyhow::Result<u64> {
    let v: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(version) FROM events WHERE tenant_id = $1 AND stream_id = $2",
    )
    .bind(tenant)
    .bind(stream_id)
    .fetch_one(db)
    .await?;
    Ok(v.unwrap_or(0) as u64)
}

async fn range<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    tenant: &str,
    stream_id: &str,
    after: u64,
    until: u64,
) -> anyhow::Result<Vec<RecordedEvent>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND stream_id = $2 \
         AND version > $3 AND version <= $4 ORDER BY version"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(stream_id)
        .bind(after as i64)
        .bind(until.min(i64::MAX as u64) as i64)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(to_event).collect())
}

fn to_tenant(row: PgRow) -> anyhow::Result<TenantRecord> {
    let id: String = row.get(0);
    let limits: String = row.get(1);
    Ok(TenantRecord {
        id: TenantId::parse(&id).context("stored tenant id is invalid")?,
        limits: serde_json::from_str(&limits)?,
        created_at: row.get(2),
    })
}

fn to_plugin(row: PgRow) -> anyhow::Result<PluginVersion> {
    let kind: String = row.get(2);
    Ok(PluginVersion {
        name: row.get(0),
        version: row.get::<i64, _>(1) as u64,
        kind: PluginKind::parse(&kind).context("stored plugin kind is invalid")?,
        digest: row.get(3),
        uploaded_at: row.get(4),
    })
}

/// Tables that hold tenant rows, emptied when a tenant is deleted.
const TENANT_TABLES: [&str; 6] = [
    "events",
    "commands",
    "snapshots",
    "plugins",
    "documents",
    "projections",
];

#[async_trait]
impl EventStore for PostgresStore {
    async fn ready(&self) -> bool {
        sqlx::query("SELECT 1 FROM tenants LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .is_ok()
    }

    async fn create_tenant(
        &self,
        id: &TenantId,
        token_hash: &str,
        limits: &serde_json::Value,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO tenants (id, token_hash, limits, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(token_hash)
        .bind(limits.to_string())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn tenant(&self, id: &TenantId) -> StoreResult<Option<TenantRecord>> {
        sqlx::query("SELECT id, limits, created_at FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(to_tenant)
            .transpose()
    }

    async fn tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        sqlx::query("SELECT id, limits, created_at FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(to_tenant)
            .collect()
    }

    async fn tenant_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<TenantId>> {
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM tenants WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(id.and_then(|id| TenantId::parse(&id)))
    }

    async fn digest_in_use(&self, digest: &str) -> StoreResult<bool> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT digest FROM plugins WHERE digest = $1 LIMIT 1")
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn set_tenant_limits(
        &self,
        id: &TenantId,
        limits: &serde_json::Value,
    ) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE tenants SET limits = $1 WHERE id = $2")
            .bind(limits.to_string())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_tenant_token(&self, id: &TenantId, token_hash: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE tenants SET token_hash = $1 WHERE id = $2")
            .bind(token_hash)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn stored_usage(&self, id: &TenantId) -> StoreResult<(u64, u64)> {
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload) + LENGTH(metadata)), 0)::BIGINT FROM events \
             WHERE tenant_id = $1",
        )
        .bind(id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok((row.get::<i64, _>(0) as u64, row.get::<i64, _>(1) as u64))
    }

    async fn delete_tenant(&self, id: &TenantId) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        for table in TENANT_TABLES {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE tenant_id = $1"
            )))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        let gone = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone.rows_affected() == 1)
    }

    async fn add_plugin_version(
        &self,
        tenant: &TenantId,
        name: &str,
        kind: PluginKind,
        digest: &str,
        wasm: &[u8],
    ) -> StoreResult<(PluginVersion, bool)> {
        let mut tx = self.pool.begin().await?;
        let newest = sqlx::query(
            "SELECT name, version, kind, digest, uploaded_at FROM plugins \
             WHERE tenant_id = $1 AND name = $2 ORDER BY version DESC LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .map(to_plugin)
        .transpose()?;
        if let Some(newest) = &newest
            && newest.digest == digest
        {
            return Ok((newest.clone(), false));
        }
        let version = PluginVersion {
            name: name.to_owned(),
            version: newest.map_or(1, |n| n.version + 1),
            kind,
            digest: digest.to_owned(),
            uploaded_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO plugins (tenant_id, name, version, kind, digest, wasm, uploaded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant.as_str())
        .bind(name)
        .bind(version.version as i64)
        .bind(kind.as_str())
        .bind(digest)
        .bind(wasm)
        .bind(version.uploaded_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((version, true))
    }

    async fn plugin_versions(&self, tenant: &TenantId) -> StoreResult<Vec<PluginVersion>> {
        sqlx::query(
            "SELECT name, version, kind, digest, uploaded_at FROM plugins \
             WHERE tenant_id = $1 ORDER BY name, version",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(to_plugin)
        .collect()
    }

    async fn plugin_wasm(&self, tenant: &TenantId, digest: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT wasm FROM plugins WHERE tenant_id = $1 AND digest = $2 LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, AppendError>> {
        match self.append_in_one_transaction(&requests).await {
            Ok(results) => results,
            Err(error) if requests.len() == 1 => {
                vec![Err(AppendError::Store(format!("{error:#}")))]
            }
            // Something in the group broke the shared transaction: give each request a
            // transaction of its own so that its neighbours' outcomes stay exact.
            Err(_) => {
                let mut results = Vec::with_capacity(requests.len());
                for request in requests {
                    let one = self
                        .append_in_one_transaction(std::slice::from_ref(&request))
                        .await;
                    results.push(match one {
                        Ok(mut r) => r.pop().expect("one result per request"),
                        Err(error) => Err(AppendError::Store(format!("{error:#}"))),
                    });
                }
                results
            }
        }
    }

    async fn stream_version(&self, tenant: &TenantId, stream_id: &str) -> StoreResult<u64> {
        stream_version(&self.pool, tenant.as_str(), stream_id).await
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
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND stream_id = $2 \
             AND version {cmp} $3 ORDER BY version {order} LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(stream_id)
            .bind(from.min(i64::MAX as u64) as i64)
            .bind(limit as i64)
            .fetch_all(&self.pool)
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
        range(&self.pool, tenant.as_str(), stream_id, after, until).await
    }

    async fn stream_version_at(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        at_ms: i64,
    ) -> StoreResult<u64> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM events WHERE tenant_id = $1 AND stream_id = $2 \
             AND recorded_at <= $3",
        )
        .bind(tenant.as_str())
        .bind(stream_id)
        .bind(at_ms)
        .fetch_one(&self.pool)
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
        let mut query = QueryBuilder::<Postgres>::new(format!(
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
        let rows = query.build().fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(to_event).collect())
    }

    async fn head(&self, tenant: &TenantId) -> StoreResult<u64> {
        let head: Option<i64> = sqlx::query_scalar("SELECT head FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(head.unwrap_or(0) as u64)
    }

    async fn command_record(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        command_id: &str,
    ) -> StoreResult<Option<CommandRecord>> {
        let row = sqlx::query(
            "SELECT first_version, last_version FROM commands \
             WHERE tenant_id = $1 AND stream_id = $2 AND command_id = $3",
        )
        .bind(tenant.as_str())
        .bind(stream_id)
        .bind(command_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| CommandRecord {
            first_version: r.get::<i64, _>(0) as u64,
            last_version: r.get::<i64, _>(1) as u64,
        }))
    }

    async fn snapshot(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        digest: &str,
        max_version: u64,
    ) -> StoreResult<Option<Snapshot>> {
        let row = sqlx::query(
            "SELECT version, state FROM snapshots WHERE tenant_id = $1 AND stream_id = $2 \
             AND plugin_digest = $3 AND version <= $4",
        )
        .bind(tenant.as_str())
        .bind(stream_id)
        .bind(digest)
        .bind(max_version.min(i64::MAX as u64) as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Snapshot {
            version: r.get::<i64, _>(0) as u64,
            state: r.get(1),
        }))
    }

    async fn put_snapshot(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        digest: &str,
        snapshot: &Snapshot,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO snapshots (tenant_id, stream_id, plugin_digest, version, state) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, stream_id, plugin_digest) \
             DO UPDATE SET version = excluded.version, state = excluded.state \
             WHERE excluded.version > snapshots.version",
        )
        .bind(tenant.as_str())
        .bind(stream_id)
        .bind(digest)
        .bind(snapshot.version as i64)
        .bind(&snapshot.state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn add_projection_version(
        &self,
        tenant: &TenantId,
        name: &str,
        plugin_version: u64,
        digest: &str,
        status: ProjectionStatus,
    ) -> StoreResult<ProjectionRecord> {
        let mut tx = self.pool.begin().await?;
        let newest: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM projections WHERE tenant_id = $1 AND name = $2",
        )
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
        sqlx::query(
            "INSERT INTO projections (tenant_id, name, version, plugin_version, digest, status, \
             position, created_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
        )
        .bind(tenant.as_str())
        .bind(name)
        .bind(record.version as i64)
        .bind(plugin_version as i64)
        .bind(digest)
        .bind(status.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn projections(&self, tenant: Option<&TenantId>) -> StoreResult<Vec<ProjectionRecord>> {
        let rows = sqlx::query(
            "SELECT tenant_id, name, version, plugin_version, digest, status, position, error \
             FROM projections WHERE ($1::TEXT IS NULL OR tenant_id = $2) ORDER BY tenant_id, name, version",
        )
        .bind(tenant.map(|t| t.as_str()))
        .bind(tenant.map(|t| t.as_str()))
        .fetch_all(&self.pool)
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

    async fn commit_projection_batch(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        from: u64,
        to: u64,
        writes: &DocumentWrites,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE projections SET position = $1 WHERE tenant_id = $2 AND name = $3 \
             AND version = $4 AND position = $5",
        )
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
        for (key, doc) in writes {
            match doc {
                Some(doc) => {
                    sqlx::query(
                        "INSERT INTO documents (tenant_id, projection, version, key, doc) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, projection, version, key) \
                         DO UPDATE SET doc = excluded.doc",
                    )
                    .bind(tenant.as_str())
                    .bind(name)
                    .bind(version as i64)
                    .bind(key)
                    .bind(String::from_utf8_lossy(doc).as_ref())
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "DELETE FROM documents WHERE tenant_id = $1 AND projection = $2 \
                         AND version = $3 AND key = $4",
                    )
                    .bind(tenant.as_str())
                    .bind(name)
                    .bind(version as i64)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn set_projection_status(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        status: ProjectionStatus,
        error: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE projections SET status = $1, error = $2 WHERE tenant_id = $3 AND name = $4 \
             AND version = $5",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn promote_projection(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        keep_retired: usize,
    ) -> StoreResult<Vec<u64>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE projections SET status = 'retired' WHERE tenant_id = $1 AND name = $2 \
             AND status = 'active' AND version <> $3",
        )
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE projections SET status = 'active', error = NULL WHERE tenant_id = $1 \
             AND name = $2 AND version = $3",
        )
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .execute(&mut *tx)
        .await?;
        let retired: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM projections WHERE tenant_id = $1 AND name = $2 \
             AND status = 'retired' ORDER BY version DESC",
        )
        .bind(tenant.as_str())
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        let doomed: Vec<u64> = retired
            .iter()
            .skip(keep_retired)
            .map(|v| *v as u64)
            .collect();
        for old in &doomed {
            for table in [
                "DELETE FROM documents WHERE tenant_id = $1 AND projection = $2 AND version = $3",
                "DELETE FROM projections WHERE tenant_id = $1 AND name = $2 AND version = $3",
            ] {
                sqlx::query(table)
                    .bind(tenant.as_str())
                    .bind(name)
                    .bind(*old as i64)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(doomed)
    }

    async fn document(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u64,
        key: &str,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT doc FROM documents WHERE tenant_id = $1 AND projection = $2 AND version = $3 \
             AND key = $4",
        )
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
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
        let start = after.filter(|a| *a >= prefix).unwrap_or(prefix);
        let rows = sqlx::query(
            "SELECT key, doc FROM documents WHERE tenant_id = $1 AND projection = $2 \
             AND version = $3 AND key >= $4 AND ($5::TEXT IS NULL OR key < $6) AND ($7::TEXT IS NULL OR key <> $8) \
             ORDER BY key LIMIT $9",
        )
        .bind(tenant.as_str())
        .bind(name)
        .bind(version as i64)
        .bind(start)
        .bind(prefix_end(prefix))
        .bind(prefix_end(prefix))
        .bind(after)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
