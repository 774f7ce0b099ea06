//! The worker of one projection build: catch up from its checkpoint, then follow the
//! live tail, woken by appends. A plugin failure is retried with backoff, then parks
//! the build; a store failure ends the run and `supervisor.rs` decides (retry or park).
//! Asked to stop, a worker finishes the batch it is in and returns.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::committed::CommittedDocuments;
use super::pages::{Page, ReadAhead, read_page};
use super::restart::{BATCH, Carried, Halt, recovered};
use super::startup::{gate_of, load_component, reload_checkpoint};
use super::{ProjectionKey, Projections};
use crate::plugins::UpcastChain;
use crate::runtime::sandbox::FailureReason;
use crate::runtime::{LoadedComponent, PluginFailure};
use crate::store::{
    DocumentWrites, EventStore, ProjectionRecord, ProjectionStatus, RecordedEvent, StoreResult,
    TenantId,
};
use crate::tenancy::gate::{Stored, TenantGate};

/// Pages read ahead at most while a batch is handled. A page's read is mostly waiting
/// (SQLite hands rows over one by one from its connection's thread), so two reads side
/// by side keep up with `handle` where one alone held catch-up to its pace.
const READ_AHEAD: usize = 2;
/// Clean batches in a row before the batch size doubles again.
const GROW_AFTER: u32 = 8;
/// Attempts at one batch before the build is parked as failed.
const MAX_ATTEMPTS: u32 = 4;
/// Document bytes one batch may write.
const MAX_BATCH_WRITE_BYTES: usize = 32 << 20;

/// Whether the worker was asked to stop (or its build forgotten, the sender gone).
pub(super) fn stopping(stop: &watch::Receiver<bool>) -> bool {
    stop.has_changed().is_err() || *stop.borrow()
}

/// Resolves when the worker is asked to stop.
pub(super) async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Runs until the build fails (the error says where and why) or is asked to stop.
/// With `reload`, it first reads the build's checkpoint from the store (a retry after a
/// store failure: a commit whose answer was lost may have moved it). `carried` is the
/// supervisor's: what the worker keeps across such restarts.
pub(super) async fn follow(
    projections: &Arc<Projections>,
    record: &ProjectionRecord,
    reload: bool,
    stop: &mut watch::Receiver<bool>,
    carried: &mut Carried,
) -> Result<(), Halt> {
    let Some(mut worker) = Worker::start(projections, record, reload, carried).await? else {
        return Ok(());
    };
    loop {
        if stopping(stop) {
            // The batch being committed finishes, as a stop always let it.
            worker.settle().await?;
            return Ok(());
        }
        if let Next::Done = worker.step(stop).await? {
            return Ok(());
        }
    }
}

/// What the worker's loop does after a step.
enum Next {
    /// Goes round again.
    Again,
    /// Returns: asked to stop, or the build is gone.
    Done,
}

/// How the commit under way ended, once awaited.
enum Settled {
    /// None was under way, or it stood: the checkpoint is where the worker thinks.
    Stands,
    /// Another worker moved the checkpoint: `position` was read again and everything
    /// handled since must be dropped.
    Moved,
    /// The build is gone (deleted, or retired out): nothing more to run.
    Gone,
    /// The commit failed; the run ends with this.
    Failed(Halt),
}

/// How handing a batch to the plugin ended.
enum Handled {
    /// Its document writes, to commit.
    Writes(DocumentWrites),
    /// Nothing to commit: the loop goes on (a smaller batch, a moved checkpoint) or ends.
    Then(Next),
    /// The plugin failed: the same events are tried again after a pause.
    Failed,
}

/// One build's worker while it runs: what it read at the start (the component, the
/// event types, the upcasters) and where it is.
struct Worker<'a> {
    /// The projections it reports to (status, heads, the batch turns).
    projections: &'a Arc<Projections>,
    /// What survives the worker's restarts (attempts, batch size, backoff).
    carried: &'a mut Carried,
    /// The build's projection, as the projections key it.
    key: ProjectionKey,
    /// The tenant and projection name (the key's parts, for logs and calls).
    tenant: TenantId,
    name: String,
    /// The build's plugin version.
    version: u64,
    /// Where the log is read and batches commit.
    store: Arc<dyn EventStore>,
    /// The checkpoint as far as this worker handled (the commit under way included).
    position: u64,
    /// The projection component, loaded once.
    component: Arc<LoadedComponent>,
    /// The event types the projection asked for (empty: every type).
    wanted: Vec<String>,
    /// The upcasters pinned to the build's plugin version.
    upcasters: UpcastChain,
    /// The stored types read from the log: `wanted` and what the upcasters rewrite.
    event_types: Arc<[String]>,
    /// The committed documents, as the batches read them.
    documents: Arc<CommittedDocuments>,
    /// The tenant's log head, which wakes the worker when it is caught up.
    heads: watch::Receiver<u64>,
    /// The next pages, read while this one is handled (see `READ_AHEAD`).
    ahead: VecDeque<ReadAhead>,
    /// The batch whose commit runs while the next one is handled.
    committing: Option<Committing>,
}

impl<'a> Worker<'a> {
    /// Reads what a run needs before its first batch; `None` when there is nothing to
    /// run (the build was deleted or parked meanwhile).
    async fn start(
        projections: &'a Arc<Projections>,
        record: &ProjectionRecord,
        reload: bool,
        carried: &'a mut Carried,
    ) -> Result<Option<Worker<'a>>, Halt> {
        let ProjectionRecord {
            tenant,
            name,
            version,
            digest,
            mut position,
            plugin_version,
            ..
        } = record.clone();
        let key: ProjectionKey = (tenant.clone(), name.clone());
        let store = projections.store.clone();
        if reload {
            let Some(stored) = reload_checkpoint(projections, &key, version).await? else {
                return Ok(None);
            };
            position = stored;
        }
        let limits = gate_of(projections, &tenant).await?.call_limits();
        let component = load_component(projections, &tenant, &digest).await?;
        let wanted = {
            // Under the tenant's call slots like every plugin call: a guest that blocks
            // here must not hold more than its tenant's share.
            let gate = gate_of(projections, &tenant).await?;
            let _tenant_slot = gate.call_slot().await;
            let (mut instance, _slot) = projections
                .runtime
                .projection(&component, limits)
                .await
                .map_err(|f| Halt::Build(f.to_string()))?;
            instance
                .event_types()
                .await
                .map_err(|f| Halt::Build(f.to_string()))?
        };
        // The upcasters pinned to the plugin version this build runs: its events are
        // read through them. The log is filtered on stored types, so the types the
        // upcasters rewrite are read too, and the projection's own filter applies after
        // upcasting.
        let upcasters = projections
            .plugins
            .projection_upcasters(&tenant, &name, plugin_version)
            .await
            .map_err(|e| Halt::api("cannot load the upcasters: ", e))?;
        let mut event_types = wanted.clone();
        if !wanted.is_empty() {
            for link in &upcasters.links {
                event_types.extend(link.types.iter().cloned());
            }
        }
        let documents = Arc::new(CommittedDocuments::new(
            store.clone(),
            tenant.clone(),
            name.clone(),
            version,
        ));
        let heads = projections.heads.watch(&tenant);
        Ok(Some(Worker {
            projections,
            carried,
            key,
            tenant,
            name,
            version,
            store,
            position,
            component,
            wanted,
            upcasters,
            event_types: event_types.into(),
            documents,
            heads,
            ahead: VecDeque::new(),
            committing: None,
        }))
    }

    /// One turn of the loop: the next page is read; caught up, the worker waits for
    /// appends; else the page is handled as one batch and its commit started.
    async fn step(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Next, Halt> {
        self.heads.borrow_and_update();
        let limit = if self.position < self.carried.isolate_until {
            1
        } else {
            self.carried.batch
        };
        let (head, events) = self.next_page(limit).await?;
        if self.position >= head {
            return self.wait_for_appends(stop).await;
        }
        let (projections, tenant) = (self.projections, self.tenant.clone());
        let slot = tokio::select! {
            slot = projections.batch_turn(&tenant) => Some(slot),
            _ = stop_requested(stop) => None,
        };
        let Some(slot) = slot else {
            self.settle().await?;
            return Ok(Next::Done);
        };
        // A short page means nothing else of interest exists up to the head, so the
        // checkpoint can move to the head even past events the filter skipped.
        let to = if events.len() < limit as usize {
            head
        } else {
            events.last().map_or(head, |e| e.position)
        };
        self.read_ahead(events.len(), limit, to, head);
        let count = events.len();
        let writes = if events.is_empty() {
            DocumentWrites::new()
        } else {
            match self.handle(events).await? {
                Handled::Writes(writes) => writes,
                Handled::Then(next) => return Ok(next),
                Handled::Failed => {
                    drop(slot);
                    let pause = Duration::from_millis(200 * 2u64.pow(self.carried.attempt));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop_requested(stop) => return Ok(Next::Done),
                    }
                    return Ok(Next::Again);
                }
            }
        };
        self.reserve_documents(&writes).await?;
        // This batch was handled on top of the previous one's writes: it may commit
        // only once that commit stands.
        if let Some(next) = self.unless_settled().await? {
            return Ok(next);
        }
        self.commit(writes, to, count);
        self.grow_batch(limit);
        drop(slot);
        Ok(Next::Again)
    }

    /// The next page: the one read ahead for this start, or a fresh read.
    async fn next_page(&mut self, limit: u32) -> Result<Page, Halt> {
        match self.ahead.pop_front() {
            Some(page) if page.after == self.position && page.limit == limit => page.take().await,
            _ => {
                // Read for another start (a retry, a smaller batch, a moved
                // checkpoint): every page queued after it is wrong too.
                self.ahead.clear();
                read_page(
                    self.store.clone(),
                    self.tenant.clone(),
                    self.position,
                    limit,
                    self.event_types.clone(),
                )
                .await
            }
        }
        .map_err(Halt::store)
    }

    /// Caught up: once the last batch's commit stands, a building version may take
    /// over, and the worker sleeps until an append (or the poll, or a stop).
    async fn wait_for_appends(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Next, Halt> {
        if let Some(next) = self.unless_settled().await? {
            return Ok(next);
        }
        recovered(
            self.projections,
            &self.key,
            self.version,
            &mut self.carried.backoff,
        );
        promote_if_building(self.projections, &self.key, self.version).await;
        // Woken by an append in this host or another host's notice of one; the poll is
        // the safety net.
        tokio::select! {
            _ = tokio::time::timeout(self.projections.poll_every, self.heads.changed()) => {}
            _ = stop_requested(stop) => {}
        }
        Ok(Next::Again)
    }

    /// A full page means more to catch up on: the next pages are read while this one
    /// is handled and committed (used only if this batch commits as planned).
    fn read_ahead(&mut self, count: usize, limit: u32, to: u64, head: u64) {
        if count != limit as usize {
            self.ahead.clear();
            return;
        }
        // Where the next page starts is known: where this one ends. Past it, only when
        // every position was of interest (a page of `limit` events spanning `limit`
        // positions; the log has no gaps): then each page after it starts `limit`
        // further on, and the reads can overlap.
        let dense = to - self.position == u64::from(limit);
        // What is queued was read for the pages right after this one, one page apart;
        // anything else is dropped.
        if self
            .ahead
            .front()
            .is_none_or(|page| page.after != to || page.limit != limit)
        {
            self.ahead.clear();
        }
        let wanted = if dense { READ_AHEAD } else { 1 };
        let mut after = self
            .ahead
            .back()
            .map_or(to, |page| page.after + u64::from(limit));
        while self.ahead.len() < wanted && after < head {
            self.ahead.push_back(ReadAhead::start(
                self.store.clone(),
                self.tenant.clone(),
                after,
                limit,
                self.event_types.clone(),
            ));
            after += u64::from(limit);
        }
    }

    /// Hands the batch's events to the plugin; a failure halves a batch that ran out
    /// of time, isolates a failing batch's events one by one, and parks the build past
    /// `MAX_ATTEMPTS` at one event.
    async fn handle(&mut self, events: Vec<RecordedEvent>) -> Result<Handled, Halt> {
        let count = events.len();
        let first = events.first().map_or(self.position + 1, |e| e.position);
        let last = events.last().map_or(first, |e| e.position);
        // The tenant's gate, fresh each batch so changed limits apply at once.
        let gate = gate_of(self.projections, &self.tenant).await?;
        let handled = self.call_plugin(&gate, events).await;
        if let Err(failure) = &handled {
            gate.usage.failure(failure);
            // A failure is acted on from a settled checkpoint.
            if let Some(next) = self.unless_settled().await? {
                return Ok(Handled::Then(next));
            }
        }
        let carried = &mut *self.carried;
        match handled {
            Ok(writes) => Ok(Handled::Writes(writes)),
            Err(failure) if failure.reason == FailureReason::Deadline && count > 1 => {
                // Too much work for one call's budget, not a broken event: retry the
                // same events in a smaller batch right away.
                carried.batch = (count as u32 / 2).max(1);
                carried.clean_batches = 0;
                tracing::debug!(tenant = %self.tenant, projection = %self.name, version = self.version,
                    batch = carried.batch, "a batch ran out of time; halving");
                Ok(Handled::Then(Next::Again))
            }
            Err(failure) => {
                carried.attempt += 1;
                let message = if count == 1 {
                    format!("event at position {first}: {failure}")
                } else {
                    format!("batch of positions {first}..={last}: {failure}")
                };
                if count > 1 {
                    // Split the batch before counting attempts against the event.
                    carried.isolate_until = last;
                    carried.attempt = 0;
                }
                if carried.attempt >= MAX_ATTEMPTS {
                    return Err(Halt::Build(message));
                }
                tracing::warn!(tenant = %self.tenant, projection = %self.name, version = self.version,
                    attempt = carried.attempt, "{message}");
                Ok(Handled::Failed)
            }
        }
    }

    /// One `handle` call under the tenant's call slot, its events read through the
    /// upcasters first (inside this build's batch slot, with no instance slot of their
    /// own: see `Runtime::upcaster`).
    async fn call_plugin(
        &self,
        gate: &TenantGate,
        events: Vec<RecordedEvent>,
    ) -> Result<DocumentWrites, PluginFailure> {
        let _tenant_slot = gate.call_slot().await;
        let seen = self
            .upcasters
            .apply(&self.projections.runtime, gate.call_limits(), events)
            .await
            .map_err(|e| {
                let mut failure = e.failure;
                failure.message = format!("upcaster {}: {}", e.upcaster, failure.message);
                failure
            })?;
        let seen: Vec<_> = if self.wanted.is_empty() || self.upcasters.is_empty() {
            seen
        } else {
            seen.into_iter()
                .filter(|e| self.wanted.contains(&e.event_type))
                .collect()
        };
        if seen.is_empty() {
            return Ok(DocumentWrites::new());
        }
        let (mut instance, _call) = self
            .projections
            .runtime
            .projection(&self.component, gate.call_limits())
            .await?;
        let started = std::time::Instant::now();
        let writes = instance
            .handle(seen, self.documents.clone(), MAX_BATCH_WRITE_BYTES)
            .await;
        gate.usage
            .plugin_call(&self.name, "handle", started.elapsed());
        gate.logs
            .record(self.tenant.as_str(), &self.name, &instance.output());
        writes
    }

    /// Documents count in the tenant's storage: a build that would pass its quota
    /// stops here with the quota's message, rather than write past it.
    async fn reserve_documents(&self, writes: &DocumentWrites) -> Result<(), Halt> {
        let document_bytes: u64 = writes
            .iter()
            .map(|(key, doc)| (key.len() + doc.as_ref().map_or(0, Vec::len)) as u64)
            .sum();
        if document_bytes > 0 {
            gate_of(self.projections, &self.tenant)
                .await?
                .reserve_storage(&self.store, &self.tenant, Stored::Documents(document_bytes))
                .await
                .map_err(|e| Halt::api("", e))?;
        }
        Ok(())
    }

    /// Starts the batch's commit on its own task (the next batch is handled meanwhile)
    /// and moves the worker's position past it.
    fn commit(&mut self, writes: DocumentWrites, to: u64, count: usize) {
        self.documents.stage(&writes);
        let store = self.store.clone();
        let (tenant, name, version) = (self.tenant.clone(), self.name.clone(), self.version);
        let from = self.position;
        self.committing = Some(Committing {
            from,
            to,
            handled: count as u64,
            task: tokio::spawn(async move {
                store
                    .commit_projection_batch(&tenant, &name, version, from, to, &writes)
                    .await
            }),
        });
        self.carried.attempt = 0;
        self.position = to;
    }

    /// A clean batch of the full size counts towards doubling a halved batch again.
    fn grow_batch(&mut self, limit: u32) {
        let carried = &mut *self.carried;
        if limit == carried.batch && carried.batch < BATCH {
            carried.clean_batches += 1;
            if carried.clean_batches >= GROW_AFTER {
                carried.batch = (carried.batch * 2).min(BATCH);
                carried.clean_batches = 0;
            }
        }
    }

    /// Settles, and says what the loop does unless the checkpoint stands (`None`: go
    /// on); a failed commit ends the run.
    async fn unless_settled(&mut self) -> Result<Option<Next>, Halt> {
        match self.settle().await? {
            Settled::Stands => Ok(None),
            Settled::Moved => Ok(Some(Next::Again)),
            Settled::Gone => Ok(Some(Next::Done)),
            Settled::Failed(halt) => Err(halt),
        }
    }

    /// Waits for the commit under way, if any. Only reading the build again (after a
    /// lost checkpoint) fails the call itself; a failed commit is `Settled::Failed`,
    /// which a stopping worker ignores.
    async fn settle(&mut self) -> Result<Settled, Halt> {
        let Some(commit) = self.committing.take() else {
            return Ok(Settled::Stands);
        };
        let (from, to, handled) = (commit.from, commit.to, commit.handled);
        match commit.task.await {
            Err(e) => Ok(Settled::Failed(Halt::Store {
                transient: false,
                error: format!("the commit task failed: {e}"),
            })),
            Ok(Err(e)) => Ok(Settled::Failed(Halt::store(e))),
            Ok(Ok(true)) => {
                self.documents.staged_committed();
                recovered(
                    self.projections,
                    &self.key,
                    self.version,
                    &mut self.carried.backoff,
                );
                self.projections
                    .build_mut(&self.key, self.version, |build| {
                        build.handled += handled;
                        build.position.send_replace(to);
                    });
                Ok(Settled::Stands)
            }
            Ok(Ok(false)) => {
                tracing::debug!(tenant = %self.tenant, projection = %self.name, version = self.version,
                    from, "a commit lost its checkpoint");
                // Another worker's writes may be in the store now.
                self.documents.forget();
                // Deleted (retired out), or another host sharing the database committed
                // this batch first: go on from where the store says the build is.
                let stored = self
                    .store
                    .projections(Some(&self.tenant))
                    .await
                    .map_err(Halt::store)?
                    .into_iter()
                    .find(|r| r.name == self.name && r.version == self.version);
                let Some(stored) = stored else {
                    return Ok(Settled::Gone);
                };
                let position = stored.position;
                self.position = position;
                self.projections
                    .build_mut(&self.key, self.version, |build| {
                        build.position.send_replace(position);
                    });
                Ok(Settled::Moved)
            }
        }
    }
}

/// A batch's commit, running on its own task while the next batch is handled.
struct Committing {
    /// The checkpoint it moves from and to.
    from: u64,
    /// The checkpoint it moves to.
    to: u64,
    /// Its events, counted in the build's `handled` once committed.
    handled: u64,
    /// The commit itself: `Ok(false)` when the checkpoint had moved (another worker).
    task: tokio::task::JoinHandle<StoreResult<bool>>,
}

/// A building version that reached the head takes over, if the store's rule allows.
async fn promote_if_building(projections: &Arc<Projections>, key: &ProjectionKey, version: u64) {
    let building = projections
        .build_mut(key, version, |b| {
            b.record.status == ProjectionStatus::Building
        })
        .unwrap_or(false);
    if building {
        projections.caught_up(&key.0, &key.1, version).await;
    }
}
