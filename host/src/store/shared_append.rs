//! The append transaction's SQL, shared by both backends like `shared.rs` (compiled
//! once per backend): a batch of append requests read, decided by `plan.rs` and
//! written with a fixed number of statements per tenant; an atomic group undone when
//! one of its requests is refused; requests retried apart when one broke the batch.

use std::collections::{BTreeSet, HashMap, HashSet};

use sqlx::{QueryBuilder, Row, Transaction};

use super::super::{Backend, Db};
use super::rows::{range, sql};
use crate::store::dialect::Dialect;
use crate::store::plan::{self, AppendDecision, ExistingId};
use crate::store::*;

/// Rows per multi-row INSERT: 9 parameters each keeps a statement well under either
/// engine's parameter limit.
const INSERT_CHUNK: usize = 200;

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
    pub(super) async fn append_batch_once_or_apart(
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
