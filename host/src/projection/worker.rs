//! The worker of one projection build: catch up from its checkpoint, then follow the
//! live tail, woken by appends. A plugin failure is retried with backoff, then parks
//! the build; a store failure ends the run and `supervisor.rs` decides (retry or park).
//! Asked to stop, a worker finishes the batch it is in and returns.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::committed::CommittedDocuments;
use super::supervisor::{Carried, Halt, recovered};
use super::{ProjectionKey, Projections};
use crate::gate::Stored;
use crate::runtime::sandbox::FailureReason;
use crate::store::retry::Transient;
use crate::store::{
    DocumentWrites, EventStore, ProjectionRecord, ProjectionStatus, RecordedEvent, StoreResult,
    TenantId,
};

/// Events per `handle` call at most: big enough to amortise the boundary crossing and
/// the commit, small enough to stay well inside one call's time budget. A batch that
/// runs out of CPU time is halved at once (no attempt counted, no back-off) and the
/// size grows back by doubling after `GROW_AFTER` clean batches, so a slow component
/// or a busy machine settles on what fits the budget instead of stalling the build.
pub(super) const BATCH: u32 = super::CATCH_UP_PAGE;
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
    let ProjectionRecord {
        tenant,
        name,
        version,
        digest,
        mut position,
        plugin_version: record_plugin_version,
        ..
    } = record.clone();
    let key: ProjectionKey = (tenant.clone(), name.clone());
    let store = projections.store.clone();
    if reload {
        let stored = store
            .projections(Some(&tenant))
            .await
            .map_err(Halt::store)?
            .into_iter()
            .find(|r| r.name == name && r.version == version);
        // Deleted, or parked by another host meanwhile: nothing to run.
        let Some(stored) = stored.filter(|r| r.error.is_none()) else {
            return Ok(());
        };
        position = stored.position;
        projections.build_mut(&key, version, |build| {
            build.position.send_if_modified(|at| {
                let moved = position > *at;
                if moved {
                    *at = position;
                }
                moved
            });
        });
    }
    let gate = |tenant: &TenantId| {
        let (tenants, tenant) = (projections.tenants.clone(), tenant.clone());
        async move { tenants.gate(&tenant).await.map_err(|e| Halt::api("", e)) }
    };
    let limits = gate(&tenant).await?.call_limits();
    let plugin_store = store.clone();
    let plugin_tenant = tenant.clone();
    let plugin_digest = digest.clone();
    let component = projections
        .runtime
        .load(&digest, || async move {
            plugin_store
                .plugin_wasm(&plugin_tenant, &plugin_digest)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the bytes of {plugin_digest} are missing"))
        })
        .await
        .map_err(|e| {
            if e.is_transient() {
                Halt::store(e)
            } else {
                Halt::Build(format!("cannot load the component: {e:#}"))
            }
        })?;
    let wanted = {
        // Under the tenant's call slots like every plugin call: a guest that blocks
        // here must not hold more than its tenant's share.
        let gate = gate(&tenant).await?;
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
    // The upcasters pinned to the plugin version this build runs: its events are read
    // through them. The log is filtered on stored types, so the types the upcasters
    // rewrite are read too, and the projection's own filter applies after upcasting.
    let upcasters = projections
        .plugins
        .projection_upcasters(&tenant, &name, record_plugin_version)
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
    let mut heads = projections.heads.watch(&tenant);
    let Carried {
        backoff,
        attempt,
        // After a failed batch, events up to its end are retried one at a time, so the
        // good ones commit and a failure names the exact event that causes it.
        isolate_until,
        batch,
        clean_batches,
    } = carried;
    let event_types: Arc<[String]> = event_types.into();
    // The next pages, read while this one is handled (see `READ_AHEAD`).
    let mut ahead: std::collections::VecDeque<ReadAhead> = std::collections::VecDeque::new();
    // The batch whose commit runs while the next one is handled.
    let mut committing: Option<Committing> = None;
    // Waits for the commit under way, if any: `Ok(true)` when the checkpoint is where
    // this worker thinks it is, `Ok(false)` when another worker moved it (then
    // `position` is reloaded and everything handled since must be dropped).
    macro_rules! settle {
        () => {
            match committing.take() {
                None => Ok(true),
                Some(commit) => {
                    let (from, to, handled) = (commit.from, commit.to, commit.handled);
                    match commit.task.await {
                        Err(e) => Err(Halt::Store {
                            transient: false,
                            error: format!("the commit task failed: {e}"),
                        }),
                        Ok(Err(e)) => Err(Halt::store(e)),
                        Ok(Ok(true)) => {
                            documents.staged_committed();
                            recovered(projections, &key, version, backoff);
                            projections.build_mut(&key, version, |build| {
                                build.handled += handled;
                                build.position.send_replace(to);
                            });
                            Ok(true)
                        }
                        Ok(Ok(false)) => {
                            tracing::debug!(%tenant, projection = %name, version, from, "a commit lost its checkpoint");
                            // Another worker's writes may be in the store now.
                            documents.forget();
                            // Deleted (retired out), or another host sharing the
                            // database committed this batch first: go on from where
                            // the store says the build is.
                            let stored = store
                                .projections(Some(&tenant))
                                .await
                                .map_err(Halt::store)?
                                .into_iter()
                                .find(|r| r.name == name && r.version == version);
                            let Some(stored) = stored else {
                                return Ok(());
                            };
                            position = stored.position;
                            projections.build_mut(&key, version, |build| {
                                build.position.send_replace(position);
                            });
                            Ok(false)
                        }
                    }
                }
            }
        };
    }
    loop {
        if stopping(stop) {
            // The batch being committed finishes, as a stop always let it.
            let _ = settle!();
            return Ok(());
        }
        heads.borrow_and_update();
        let limit = if position < *isolate_until { 1 } else { *batch };
        let (head, events) = match ahead.pop_front() {
            Some(page) if page.after == position && page.limit == limit => page.take().await,
            _ => {
                // Read for another start (a retry, a smaller batch, a moved
                // checkpoint): every page queued after it is wrong too.
                ahead.clear();
                read_page(
                    store.clone(),
                    tenant.clone(),
                    position,
                    limit,
                    event_types.clone(),
                )
                .await
            }
        }
        .map_err(Halt::store)?;
        if position >= head {
            // Caught up once the last batch's commit stands.
            if !settle!()? {
                continue;
            }
            recovered(projections, &key, version, backoff);
            promote_if_building(projections, &key, version).await;
            // Woken by an append in this host or another host's notice of one; the
            // poll is the safety net.
            tokio::select! {
                _ = tokio::time::timeout(projections.poll_every, heads.changed()) => {}
                _ = stop_requested(stop) => {}
            }
            continue;
        }
        let _slot = tokio::select! {
            slot = projections.batch_turn(&tenant) => slot,
            _ = stop_requested(stop) => {
                let _ = settle!();
                return Ok(());
            }
        };
        // A short page means nothing else of interest exists up to the head, so the
        // checkpoint can move to the head even past events the filter skipped.
        let to = if events.len() < limit as usize {
            head
        } else {
            events.last().map_or(head, |e| e.position)
        };
        // A full page means more to catch up on: read the next pages while this one is
        // handled and committed (used only if this batch commits as planned).
        if events.len() == limit as usize {
            // Where the next page starts is known: where this one ends. Past it, only
            // when every position was of interest (a page of `limit` events spanning
            // `limit` positions; the log has no gaps): then each page after it starts
            // `limit` further on, and the reads can overlap.
            let dense = to - position == u64::from(limit);
            // What is queued was read for the pages right after this one, one page
            // apart; anything else is dropped.
            if ahead
                .front()
                .is_none_or(|page| page.after != to || page.limit != limit)
            {
                ahead.clear();
            }
            let wanted = if dense { READ_AHEAD } else { 1 };
            let mut after = ahead
                .back()
                .map_or(to, |page| page.after + u64::from(limit));
            while ahead.len() < wanted && after < head {
                ahead.push_back(ReadAhead::start(
                    store.clone(),
                    tenant.clone(),
                    after,
                    limit,
                    event_types.clone(),
                ));
                after += u64::from(limit);
            }
        } else {
            ahead.clear();
        }
        // What the rest of the batch needs of its events once they are handed over.
        let count = events.len();
        let first = events.first().map_or(position + 1, |e| e.position);
        let last = events.last().map_or(first, |e| e.position);
        let writes = if events.is_empty() {
            DocumentWrites::new()
        } else {
            // The tenant's gate, fresh each batch so changed limits apply at once.
            let gate = gate(&tenant).await?;
            let handled = async {
                let _tenant_slot = gate.call_slot().await;
                // Upcasters run here, inside this build's batch slot, with no instance
                // slot of their own (see `Runtime::upcaster`).
                let seen = upcasters
                    .apply(&projections.runtime, gate.call_limits(), events)
                    .await
                    .map_err(|e| {
                        let mut failure = e.failure;
                        failure.message = format!("upcaster {}: {}", e.upcaster, failure.message);
                        failure
                    })?;
                let seen: Vec<_> = if wanted.is_empty() || upcasters.is_empty() {
                    seen
                } else {
                    seen.into_iter()
                        .filter(|e| wanted.contains(&e.event_type))
                        .collect()
                };
                if seen.is_empty() {
                    return Ok(DocumentWrites::new());
                }
                let (mut instance, _call) = projections
                    .runtime
                    .projection(&component, gate.call_limits())
                    .await?;
                let started = std::time::Instant::now();
                let writes = instance
                    .handle(seen, documents.clone(), MAX_BATCH_WRITE_BYTES)
                    .await;
                gate.usage.plugin_call(&name, "handle", started.elapsed());
                gate.logs.record(tenant.as_str(), &name, &instance.output());
                writes
            }
            .await;
            if let Err(failure) = &handled {
                gate.usage.failure(failure);
                // A failure is acted on from a settled checkpoint.
                if !settle!()? {
                    continue;
                }
            }
            match handled {
                Ok(writes) => writes,
                Err(failure) if failure.reason == FailureReason::Deadline && count > 1 => {
                    // Too much work for one call's budget, not a broken event: retry
                    // the same events in a smaller batch right away.
                    *batch = (count as u32 / 2).max(1);
                    *clean_batches = 0;
                    tracing::debug!(%tenant, projection = %name, version, batch, "a batch ran out of time; halving");
                    continue;
                }
                Err(failure) => {
                    *attempt += 1;
                    let message = if count == 1 {
                        format!("event at position {first}: {failure}")
                    } else {
                        format!("batch of positions {first}..={last}: {failure}")
                    };
                    if count > 1 {
                        // Split the batch before counting attempts against the event.
                        *isolate_until = last;
                        *attempt = 0;
                    }
                    if *attempt >= MAX_ATTEMPTS {
                        return Err(Halt::Build(message));
                    }
                    tracing::warn!(%tenant, projection = %name, version, attempt, "{message}");
                    drop(_slot);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(*attempt))) => {}
                        _ = stop_requested(stop) => return Ok(()),
                    }
                    continue;
                }
            }
        };
        // Documents count in the tenant's storage: a build that would pass its quota
        // stops here with the quota's message, rather than write past it.
        let document_bytes = writes
            .iter()
            .map(|(key, doc)| (key.len() + doc.as_ref().map_or(0, Vec::len)) as u64)
            .sum();
        if document_bytes > 0 {
            gate(&tenant)
                .await?
                .reserve_storage(&store, &tenant, Stored::Documents(document_bytes))
                .await
                .map_err(|e| Halt::api("", e))?;
        }
        // This batch was handled on top of the previous one's writes: it may commit
        // only once that commit stands.
        if !settle!()? {
            continue;
        }
        documents.stage(&writes);
        let commit_store = store.clone();
        let (commit_tenant, commit_name) = (tenant.clone(), name.clone());
        let from = position;
        committing = Some(Committing {
            from,
            to,
            handled: count as u64,
            task: tokio::spawn(async move {
                commit_store
                    .commit_projection_batch(
                        &commit_tenant,
                        &commit_name,
                        version,
                        from,
                        to,
                        &writes,
                    )
                    .await
            }),
        });
        *attempt = 0;
        position = to;
        if limit == *batch && *batch < BATCH {
            *clean_batches += 1;
            if *clean_batches >= GROW_AFTER {
                *batch = (*batch * 2).min(BATCH);
                *clean_batches = 0;
            }
        }
    }
}

/// A batch's commit, running on its own task while the next batch is handled.
struct Committing {
    /// The checkpoint it moves from and to.
    from: u64,
    to: u64,
    /// Its events, counted in the build's `handled` once committed.
    handled: u64,
    task: tokio::task::JoinHandle<StoreResult<bool>>,
}

/// The log's head, and the events of interest after it up to the head.
type Page = (u64, Vec<RecordedEvent>);

/// The log's head, and the events of interest after `after` up to it (at most
/// `limit`, in log order).
async fn read_page(
    store: Arc<dyn EventStore>,
    tenant: TenantId,
    after: u64,
    limit: u32,
    types: Arc<[String]>,
) -> StoreResult<Page> {
    let head = store.head(&tenant).await?;
    if after >= head {
        return Ok((head, Vec::new()));
    }
    let mut events = store.read_log(&tenant, after, limit, &types).await?;
    events.retain(|e| e.position <= head);
    Ok((head, events))
}

/// The next page of a catch-up, read on its own task while the current batch is
/// handled and committed: the read then costs the build no time. Aborted if dropped
/// unused (the batch failed, shrank, lost its commit, or the worker stopped).
struct ReadAhead {
    after: u64,
    limit: u32,
    page: Option<tokio::task::JoinHandle<StoreResult<Page>>>,
}

impl ReadAhead {
    fn start(
        store: Arc<dyn EventStore>,
        tenant: TenantId,
        after: u64,
        limit: u32,
        types: Arc<[String]>,
    ) -> ReadAhead {
        let page = tokio::spawn(read_page(store, tenant, after, limit, types));
        ReadAhead {
            after,
            limit,
            page: Some(page),
        }
    }

    async fn take(mut self) -> StoreResult<Page> {
        let page = self.page.take().expect("taken once");
        page.await
            .map_err(|e| anyhow::anyhow!("the read-ahead task failed: {e}"))?
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let Some(page) = &self.page {
            page.abort();
        }
    }
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
