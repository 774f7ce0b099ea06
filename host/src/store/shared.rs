//! The SQL both backends share, written once. This file is compiled twice, as
//! `sqlite::shared` and `postgres::shared` (`#[path]` modules); each parent module
//! names its sqlx database `Db`, its row type `DbRow` and its store `Backend` (with
//! `writer()` and `reader()` pools). Statements use `?` placeholders; the engine's
//! [`Dialect`] rewrites them and supplies the few words the engines disagree on.

use std::collections::{BTreeSet, HashMap, HashSet};

use anyhow::Context;
use async_trait::async_trait;
use sqlx::{QueryBuilder, Row, Transaction};

use super::{Backend, Db, DbRow};
use crate::store::dialect::Dialect;
use crate::store::plan::{self, AppendDecision, ExistingId};
use crate::store::*;

/// Rows per multi-row INSERT: 9 parameters each keeps a statement well under either
/// engine's parameter limit.
const INSERT_CHUNK: usize = 200;

/// How long `/readyz` waits for the store before it answers "not ready".
const READY_BOUND: std::time::Duration = std::time::Duration::from_secs(1);

/// The size of `/readyz`'s probe write while the store is full.
const PROBE_BYTES: usize = 64 * 1024;

/// A statement in this engine's dialect.
fn sql(text: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(<Db as Dialect>::sql(text))
}

impl Backend {
    /// Applies every request inside one transaction with a fixed number of statements
    /// per tenant, however many requests there are: the facts for all of them are read
    /// at once, the rules applied in memory ([`plan`]), and every row written with
    /// multi-row inserts. An `Err` means the transaction failed as a whole and nothing
    /// of it was written.
    async fn append_in_one_transaction(
        &self,
        requests: &[AppendRequest],
    ) -> anyhow::Result<Vec<Result<AppendOutcome, AppendError>>> {
        let mut tx = self.writer().begin().await?;
        let mut batch = Batch::default();
        // Tenants in id order: concurrent hosts lock tenant rows in the same order.
        let tenants: BTreeSet<&TenantId> = requests.iter().map(|r| &r.tenant).collect();
        for tenant in tenants {
            let theirs: Vec<&AppendRequest> =
                requests.iter().filter(|r| &r.tenant == tenant).collect();
            batch.load(&mut tx, tenant, &theirs).await?;
        }
        let recorded_at = now_ms();
        let mut planned = Vec::with_capacity(requests.len());
        for unit in units(requests) {
            // An atomic group is decided on a copy of the facts: if one of its appends
            // is refused, the facts go back to before the group and none is written.
            let before = (unit.len() > 1).then(|| batch.clone());
            let plans: Vec<_> = unit.iter().map(|r| batch.decide(r, recorded_at)).collect();
            match before {
                Some(before) if plans.iter().any(Result::is_err) => {
                    batch = before;
                    planned.extend(plans.into_iter().map(|p| match p {
                        Err(refused) => Err(refused),
                        Ok(_) => Err(AppendError::GroupRefused),
                    }));
                }
                _ => planned.extend(plans),
            }
        }
        batch.write(&mut tx).await?;
        let mut results = Vec::with_capacity(requests.len());
        for (request, plan) in requests.iter().zip(planned) {
            results.push(match plan {
                Ok(Planned::Written(outcome)) => Ok(outcome),
                // The original events: committed before, or written above in this batch.
                Ok(Planned::Replay {
                    current,
                    first,
                    last,
                }) => Ok(AppendOutcome {
                    version: current,
                    events: range(
                        &mut *tx,
                        request.tenant.as_str(),
                        &request.stream_id,
                        first - 1,
                        last,
                    )
                    .await?,
                    replayed: true,
                }),
                Err(refused) => Err(refused),
            });
        }
        tx.commit().await?;
        Ok(results)
    }
}

impl Backend {
    /// The whole batch in one transaction; when a request in it broke that transaction
    /// (not the store: a constraint, say), each request (each atomic group) again in a
    /// transaction of its own so that its neighbours' outcomes stay exact. A full or
    /// unreachable store fails the whole batch at once: every request would meet it.
    async fn append_batch_once_or_apart(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, AppendError>> {
        let error = match self.append_in_one_transaction(&requests).await {
            Ok(results) => return results,
            Err(error) => error,
        };
        if requests.len() == 1 || fault::classify(&error).is_retryable() {
            return requests
                .iter()
                .map(|_| Err(AppendError::store(&error)))
                .collect();
        }
        let mut results = Vec::with_capacity(requests.len());
        for unit in units(&requests) {
            match self.append_in_one_transaction(unit).await {
                Ok(r) => results.extend(r),
                Err(error) => results.extend(unit.iter().map(|_| Err(AppendError::store(&error)))),
            }
        }
        results
    }
}

/// The requests split into what commits or fails together: each atomic group (its
/// requests are next to each other) and each request on its own.
fn units(requests: &[AppendRequest]) -> Vec<&[AppendRequest]> {
    let mut units = Vec::new();
    let mut start = 0;
    while start < requests.len() {
        let group = requests[start].atomic_group;
        let mut end = start + 1;
        while group.is_some() && end < requests.len() && requests[end].atomic_group == group {
            end += 1;
        }
        units.push(&requests[start..end]);
        start = end;
    }
    units
}

/// What one request will do, decided before anything is written.
enum Planned {
    Written(AppendOutcome),
    Replay { current: u64, first: u64, last: u64 },
}

/// The facts one append transaction read, updated as its requests are decided, and the
/// rows it will write. Cloned before an atomic group is decided, to undo it.
#[derive(Clone, Default)]
struct Batch {
    /// Log head per tenant as of the requests decided so far; `None`: no such tenant.
    heads: HashMap<TenantId, Option<u64>>,
    /// Tenants whose head moved, to write back.
    moved: BTreeSet<TenantId>,
    /// Stream versions as of the requests decided so far (absent: 0).
    versions: HashMap<(TenantId, String), u64>,
    /// Command ids already applied, per tenant and stream.
    /// Command ids already used, per tenant (ids are the tenant's, across streams).
    commands: HashSet<(TenantId, String)>,
    /// Where the writer-given event ids of these requests already are.
    event_ids: HashMap<(TenantId, String), (String, u64)>,
    events: Vec<(TenantId, RecordedEvent)>,
    command_rows: Vec<CommandRow>,
}

/// A command id to record with the events it caused.
#[derive(Clone)]
struct CommandRow {
    tenant: TenantId,
    stream_id: String,
    command_id: String,
    first_version: u64,
    last_version: u64,
    fingerprint: Option<String>,
    recorded_at: i64,
}

/// Keeps `IN (…)` lists well inside every engine's parameter limit.
const IN_CHUNK: usize = 500;

impl Batch {
    /// Reads, with a handful of statements, what the tenant's requests depend on; on
    /// PostgreSQL this also locks the tenant's row until commit.
    async fn load(
        &mut self,
        tx: &mut Transaction<'_, Db>,
        tenant: &TenantId,
        requests: &[&AppendRequest],
    ) -> anyhow::Result<()> {
        let t = tenant.as_str();
        let head: Option<i64> = sqlx::query_scalar(sql(&format!(
            "SELECT head FROM tenants WHERE id = ?{}",
            <Db as Dialect>::LOCK_ROW
        )))
        .bind(t)
        .fetch_optional(&mut **tx)
        .await?;
        self.heads.insert(tenant.clone(), head.map(|h| h as u64));
        if head.is_none() {
            return Ok(());
        }
        let streams: BTreeSet<&str> = requests.iter().map(|r| r.stream_id.as_str()).collect();
        let streams: Vec<&str> = streams.into_iter().collect();
        // One indexed MAX per stream, not `MAX … GROUP BY stream_id`: with a GROUP BY
        // both engines walk every index entry of the stream, which made an append to
        // a stream of a million events take 100 ms; a lone MAX is one index probe.
        // The streams go in as one JSON array: a `UNION ALL` of one `SELECT` per
        // stream was a new statement for every batch size, and PostgreSQL planned
        // each anew (1-4 ms for 32 streams, in a transaction that holds the writer).
        let streams = serde_json::to_string(&streams).expect("strings serialise");
        let rows = sqlx::query(sql(&format!(
            "SELECT value, (SELECT MAX(version) FROM events WHERE tenant_id = ? \
             AND stream_id = value) FROM {}",
            <Db as Dialect>::JSON_STRINGS
        )))
        .bind(t)
        .bind(streams)
        .fetch_all(&mut **tx)
        .await?;
        for row in rows {
            if let Some(version) = row.get::<Option<i64>, _>(1) {
                self.versions
                    .insert((tenant.clone(), row.get(0)), version as u64);
            }
        }
        let command_ids: Vec<&str> = requests
            .iter()
            .filter_map(|r| r.command_id.as_deref())
            .collect();
        for chunk in command_ids.chunks(IN_CHUNK) {
            let mut query =
                QueryBuilder::<Db>::new("SELECT command_id FROM commands WHERE tenant_id = ");
            query.push_bind(t).push(" AND command_id IN (");
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            list.push_unseparated(")");
            for row in query.build().fetch_all(&mut **tx).await? {
                self.commands.insert((tenant.clone(), row.get(0)));
            }
        }
        let event_ids: Vec<&str> = requests
            .iter()
            .filter(|r| r.ids_from_writer)
            .flat_map(|r| r.events.iter().map(|e| e.event_id.as_str()))
            .collect();
        if event_ids.is_empty() {
            return Ok(());
        }
        // One probe of the `(tenant_id, event_id)` index per id, as correlated scalar
        // subqueries, never `event_id IN (…)`: PostgreSQL costs a long IN list as if it
        // matched most rows, and without fresh statistics (right after a bulk import,
        // or with autovacuum off) it scanned every event of the tenant through the
        // primary key instead (an import with ids fell to ~25 events/s at 120,000
        // events). A subquery matching a unique index on both columns is planned as
        // one index probe whatever the statistics. The ids go in as one JSON array, so
        // the statement's text never changes (as for the versions above).
        let ids = serde_json::to_string(&event_ids).expect("strings serialise");
        let rows = sqlx::query(sql(&format!(
            "SELECT value, \
             (SELECT stream_id FROM events WHERE tenant_id = ? AND event_id = value), \
             (SELECT version FROM events WHERE tenant_id = ? AND event_id = value) FROM {}",
            <Db as Dialect>::JSON_STRINGS
        )))
        .bind(t)
        .bind(t)
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
        for row in rows {
            if let (Some(stream_id), Some(version)) = (
                row.get::<Option<String>, _>(1),
                row.get::<Option<i64>, _>(2),
            ) {
                self.event_ids
                    .insert((tenant.clone(), row.get(0)), (stream_id, version as u64));
            }
        }
        Ok(())
    }

    /// Applies the append rules to one request against the facts so far and, when it
    /// writes, moves the facts on so later requests of the batch see its effects.
    fn decide(
        &mut self,
        request: &AppendRequest,
        recorded_at: i64,
    ) -> Result<Planned, AppendError> {
        let tenant = &request.tenant;
        let Some(Some(head)) = self.heads.get(tenant).copied() else {
            return Err(AppendError::UnknownTenant);
        };
        let stream = (tenant.clone(), request.stream_id.clone());
        if let Some(command_id) = &request.command_id
            && self
                .commands
                .contains(&(tenant.clone(), command_id.clone()))
        {
            return Err(AppendError::CommandAlreadyApplied);
        }
        let current = self.versions.get(&stream).copied().unwrap_or(0);
        let existing: Vec<ExistingId> = if request.ids_from_writer {
            request
                .events
                .iter()
                .filter_map(|e| {
                    let (stream_id, version) =
                        self.event_ids.get(&(tenant.clone(), e.event_id.clone()))?;
                    Some(ExistingId {
                        event_id: e.event_id.clone(),
                        stream_id: stream_id.clone(),
                        version: *version,
                    })
                })
                .collect()
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
        )? {
            AppendDecision::Replay {
                first_version,
                last_version,
            } => Ok(Planned::Replay {
                current,
                first: first_version,
                last: last_version,
            }),
            AppendDecision::Write => {
                let count = request.events.len() as u64;
                let new_head = head + count;
                let events = plan::number_events(request, current, new_head, recorded_at);
                let version = current + count;
                if count > 0 {
                    self.heads.insert(tenant.clone(), Some(new_head));
                    self.moved.insert(tenant.clone());
                }
                self.versions.insert(stream, version);
                for e in &events {
                    self.event_ids.insert(
                        (tenant.clone(), e.event_id.clone()),
                        (e.stream_id.clone(), e.version),
                    );
                    self.events.push((tenant.clone(), e.clone()));
                }
                if let Some(command_id) = &request.command_id {
                    self.commands.insert((tenant.clone(), command_id.clone()));
                    self.command_rows.push(CommandRow {
                        tenant: tenant.clone(),
                        stream_id: request.stream_id.clone(),
                        command_id: command_id.clone(),
                        first_version: current + 1,
                        last_version: version,
                        fingerprint: request.command_fingerprint.clone(),
                        recorded_at,
                    });
                }
                Ok(Planned::Written(AppendOutcome {
                    version,
                    events,
                    replayed: false,
                }))
            }
        }
    }

    /// Writes every row the batch decided on: multi-row inserts and one head per tenant.
    async fn write(&self, tx: &mut Transaction<'_, Db>) -> anyhow::Result<()> {
        if <Db as Dialect>::WRITING_CTES
            && self.events.len() <= INSERT_CHUNK
            && self.command_rows.len() <= INSERT_CHUNK
        {
            return self.write_in_one_statement(tx).await;
        }
        for chunk in self.events.chunks(INSERT_CHUNK) {
            let mut insert = QueryBuilder::<Db>::new("");
            push_event_rows(&mut insert, chunk);
            insert.build().execute(&mut **tx).await?;
        }
        for chunk in self.command_rows.chunks(INSERT_CHUNK) {
            let mut insert = QueryBuilder::<Db>::new("");
            push_command_rows(&mut insert, chunk);
            insert.build().execute(&mut **tx).await?;
        }
        for tenant in &self.moved {
            let head = self.heads[tenant].expect("a moved tenant exists");
            sqlx::query(sql("UPDATE tenants SET head = ? WHERE id = ?"))
                .bind(head as i64)
                .bind(tenant.as_str())
                .execute(&mut **tx)
                .await?;
            // Delivered at commit (or never, if the transaction fails): other hosts'
            // live subscribers and projection workers wake at once.
            if let Some(notify) = <Db as Dialect>::NOTIFY {
                let notice = Notice::Appended {
                    tenant: tenant.clone(),
                    position: head,
                };
                sqlx::query(sql(notify))
                    .bind(notice.payload())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }
}

impl Batch {
    /// The same writes as [`Batch::write`] as one statement, for engines with writing
    /// CTEs: `WITH e AS (INSERT events…), c AS (INSERT commands…), h0 AS (UPDATE
    /// tenants…) SELECT pg_notify(…)`. Every part of a `WITH` runs, whether or not the
    /// final `SELECT` reads it.
    async fn write_in_one_statement(&self, tx: &mut Transaction<'_, Db>) -> anyhow::Result<()> {
        let mut query = QueryBuilder::<Db>::new("WITH ");
        let mut parts = 0;
        let mut next_part = |query: &mut QueryBuilder<Db>, name: &str| {
            if parts > 0 {
                query.push(", ");
            }
            parts += 1;
            query.push(name).push(" AS (");
        };
        if !self.events.is_empty() {
            next_part(&mut query, "e");
            push_event_rows(&mut query, &self.events);
            query.push(")");
        }
        if !self.command_rows.is_empty() {
            next_part(&mut query, "c");
            push_command_rows(&mut query, &self.command_rows);
            query.push(")");
        }
        let mut notices = Vec::new();
        for (i, tenant) in self.moved.iter().enumerate() {
            let head = self.heads[tenant].expect("a moved tenant exists");
            next_part(&mut query, &format!("h{i}"));
            query
                .push("UPDATE tenants SET head = ")
                .push_bind(head as i64)
                .push(" WHERE id = ")
                .push_bind(tenant.as_str())
                .push(")");
            notices.push(
                Notice::Appended {
                    tenant: tenant.clone(),
                    position: head,
                }
                .payload(),
            );
        }
        if parts == 0 {
            return Ok(());
        }
        query.push(" SELECT 1");
        // Delivered at commit (or never, if the transaction fails): other hosts' live
        // subscribers and projection workers wake at once.
        for notice in notices {
            query
                .push(", pg_notify('cairn', ")
                .push_bind(notice)
                .push(")");
        }
        query.build().execute(&mut **tx).await?;
        Ok(())
    }
}

/// `INSERT INTO events … VALUES …` of these rows, onto `query` (a statement of its
/// own, or one part of a `WITH`).
fn push_event_rows(query: &mut QueryBuilder<Db>, events: &[(TenantId, RecordedEvent)]) {
    query.push(<Db as Dialect>::INSERT_IN_APPEND).push(
        " INTO events (tenant_id, position, stream_id, version, event_id, \
         event_type, payload, metadata, recorded_at) ",
    );
    query.push_values(events, |mut row, (tenant, e)| {
        row.push_bind(tenant.as_str())
            .push_bind(e.position as i64)
            .push_bind(&e.stream_id)
            .push_bind(e.version as i64)
            .push_bind(&e.event_id)
            .push_bind(&e.event_type)
            .push_bind(&e.payload)
            .push_bind(&e.metadata)
            .push_bind(e.recorded_at);
    });
}

/// `INSERT INTO commands … VALUES …` of these rows, onto `query`.
fn push_command_rows(query: &mut QueryBuilder<Db>, rows: &[CommandRow]) {
    query.push(<Db as Dialect>::INSERT_IN_APPEND).push(
        " INTO commands (tenant_id, stream_id, command_id, first_version, \
         last_version, fingerprint, recorded_at) ",
    );
    query.push_values(rows, |mut row, c| {
        row.push_bind(c.tenant.as_str())
            .push_bind(&c.stream_id)
            .push_bind(&c.command_id)
            .push_bind(c.first_version as i64)
            .push_bind(c.last_version as i64)
            .push_bind(&c.fingerprint)
            .push_bind(c.recorded_at);
    });
}

const EVENT_COLUMNS: &str =
    "event_id, stream_id, version, position, event_type, payload, metadata, recorded_at";

fn to_event(row: DbRow) -> RecordedEvent {
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

async fn stream_version<'e, E: sqlx::Executor<'e, Database = Db>>(
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

async fn range<'e, E: sqlx::Executor<'e, Database = Db>>(
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
        let done = sqlx::query(sql(
            "INSERT INTO tenants (id, token_hash, limits, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        ))
        .bind(id.as_str())
        .bind(token_hash)
        .bind(limits.to_string())
        .bind(now_ms())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn tenant(&self, id: &TenantId) -> StoreResult<Option<TenantRecord>> {
        sqlx::query(sql(
            "SELECT id, limits, created_at FROM tenants WHERE id = ?",
        ))
        .bind(id.as_str())
        .fetch_optional(self.reader())
        .await?
        .map(to_tenant)
        .transpose()
    }

    async fn tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        sqlx::query(sql(
            "SELECT id, limits, created_at FROM tenants ORDER BY id",
        ))
        .fetch_all(self.reader())
        .await?
        .into_iter()
        .map(to_tenant)
        .collect()
    }

    async fn tenant_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<TenantId>> {
        let id: Option<String> =
            sqlx::query_scalar(sql("SELECT id FROM tenants WHERE token_hash = ?"))
                .bind(token_hash)
                .fetch_optional(self.reader())
                .await?;
        Ok(id.and_then(|id| TenantId::parse(&id)))
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
        let done = sqlx::query(sql("UPDATE tenants SET limits = ? WHERE id = ?"))
            .bind(limits.to_string())
            .bind(id.as_str())
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_tenant_token(&self, id: &TenantId, token_hash: &str) -> StoreResult<bool> {
        let done = sqlx::query(sql("UPDATE tenants SET token_hash = ? WHERE id = ?"))
            .bind(token_hash)
            .bind(id.as_str())
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn stored_usage(&self, id: &TenantId) -> StoreResult<StoredUsage> {
        let row = sqlx::query(sql("SELECT COUNT(*), \
             CAST(COALESCE(SUM(LENGTH(payload) + LENGTH(metadata)), 0) AS BIGINT) \
             FROM events WHERE tenant_id = ?"))
        .bind(id.as_str())
        .fetch_one(self.reader())
        .await?;
        Ok(StoredUsage {
            events: row.get::<i64, _>(0) as u64,
            event_bytes: row.get::<i64, _>(1) as u64,
            ..self.stored_besides_events(id).await?
        })
    }

    async fn stored_besides_events(&self, id: &TenantId) -> StoreResult<StoredUsage> {
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
        .fetch_one(self.reader())
        .await?;
        let read = |i: usize| row.get::<i64, _>(i) as u64;
        Ok(StoredUsage {
            document_bytes: read(0),
            snapshot_bytes: read(1),
            plugin_bytes: read(2),
            ..StoredUsage::default()
        })
    }

    async fn delete_tenant(&self, id: &TenantId) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await?;
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
        let row = sqlx::query(sql(
            "SELECT stream_id, first_version, last_version, fingerprint, rejection \
             FROM commands WHERE tenant_id = ? AND command_id = ? \
             ORDER BY first_version LIMIT 1",
        ))
        .bind(tenant.as_str())
        .bind(command_id)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(|r| CommandRecord {
            stream_id: r.get(0),
            first_version: r.get::<i64, _>(1) as u64,
            last_version: r.get::<i64, _>(2) as u64,
            fingerprint: r.get(3),
            rejection: r.get(4),
        }))
    }

    async fn record_rejection(
        &self,
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
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn prune_commands(&self, before_ms: i64) -> StoreResult<u64> {
        let done = sqlx::query(sql(
            "DELETE FROM commands WHERE recorded_at IS NOT NULL AND recorded_at < ?",
        ))
        .bind(before_ms)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected())
    }

    async fn snapshot(
        &self,
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
        .fetch_optional(self.reader())
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
        let mut tx = self.writer().begin().await?;
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
