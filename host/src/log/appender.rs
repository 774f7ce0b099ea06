//! Group commit: every append in the host goes through one queue, and a writer task
//! drains it into batches that the store commits in one transaction each.
//!
//! A commit (an fsync) costs far more than inserting a few rows, so under load many
//! commands share one. Nobody waits for a batch to fill: the writer takes whatever is
//! queued the moment the previous commit finishes, so a lone command commits at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use crate::log::live::Live;
use crate::metrics::Metrics;
use crate::store::{AppendError, AppendOutcome, AppendRequest, EventStore, TenantId};

/// The most requests one transaction carries.
const MAX_BATCH: usize = 256;

/// The most appends the writer holds out of its queue while it forms batches.
const MAX_WAITING: usize = MAX_BATCH * 4;

/// The longest the writer waits for one batch's transaction. PostgreSQL's own bounds
/// (`store/postgres.rs`: idle-in-transaction and lock timeouts of 2 and 3 s) end most stalls
/// sooner; this one covers a database that does not answer at all.
const COMMIT_BOUND: std::time::Duration = std::time::Duration::from_secs(10);

/// What a caller queued: one append, or an atomic group that the writer keeps in one
/// transaction.
enum Pending {
    One {
        request: AppendRequest,
        reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
    },
    Group {
        requests: Vec<AppendRequest>,
        reply: oneshot::Sender<Vec<Result<AppendOutcome, AppendError>>>,
    },
}

/// The front door for appends (cheap to clone).
#[derive(Clone)]
pub struct Appender {
    queue: mpsc::Sender<Pending>,
}

impl Appender {
    /// Starts the writer on its own thread (see below).
    pub fn start(
        store: Arc<dyn EventStore>,
        heads: Arc<LogHeads>,
        live: Arc<Live>,
        metrics: Arc<Metrics>,
    ) -> Appender {
        let (queue, inbox) = mpsc::channel(MAX_BATCH * 8);
        // The writer runs on a thread of its own, not among the request tasks: each of
        // a transaction's statements wakes it, and behind dozens of ready HTTP tasks in
        // the shared run queues each wake-up waited its turn, which made a commit of a
        // few dozen appends take twice as long under load as alone. A commit's length
        // is what bounds commands/s (every command waits for one), so the thread that
        // drives it must not queue. It uses little CPU: the SQL itself runs in sqlx's
        // SQLite thread or in PostgreSQL.
        std::thread::Builder::new()
            .name("cairn-writer".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the writer's runtime starts");
                runtime.block_on(write_loop(store, heads, live, metrics, inbox));
            })
            .expect("the writer thread starts");
        Appender { queue }
    }

    /// Appends and waits for the commit.
    pub async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending::One { request, reply })
            .await
            .map_err(|_| AppendError::not_reached("the writer has stopped"))?;
        answer
            .await
            .map_err(|_| AppendError::not_reached("the writer dropped the request"))?
    }
}

impl Appender {
    /// Appends each request in order and waits for all of them: they are queued
    /// back to back, so the writer commits them together in as few transactions as
    /// its batch size allows (a bulk import's path). Results are in request order.
    pub async fn append_all(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, AppendError>> {
        let mut answers = Vec::with_capacity(requests.len());
        for request in requests {
            let (reply, answer) = oneshot::channel();
            let sent = self.queue.send(Pending::One { request, reply }).await;
            answers.push(sent.ok().map(|()| answer));
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(match answer {
                None => Err(AppendError::not_reached("the writer has stopped")),
                Some(answer) => answer.await.unwrap_or_else(|_| {
                    Err(AppendError::not_reached("the writer dropped the request"))
                }),
            });
        }
        results
    }
}

impl Appender {
    /// Appends to several streams all or nothing: every request's expectation holds and
    /// all are written in one transaction, or none is (the refused ones carry their
    /// reason, the others `GroupRefused`). Results are in request order.
    pub async fn append_atomically(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, AppendError>> {
        let count = requests.len();
        let (reply, answer) = oneshot::channel();
        let failed = |why: &str| {
            (0..count)
                .map(|_| Err(AppendError::not_reached(why)))
                .collect()
        };
        if self
            .queue
            .send(Pending::Group { requests, reply })
            .await
            .is_err()
        {
            return failed("the writer has stopped");
        }
        answer
            .await
            .unwrap_or_else(|_| failed("the writer dropped the request"))
    }
}

/// Where a request's result goes back to.
enum Reply {
    One(oneshot::Sender<Result<AppendOutcome, AppendError>>),
    /// A group's reply, sent once its `count` results are in.
    Group(
        oneshot::Sender<Vec<Result<AppendOutcome, AppendError>>>,
        usize,
    ),
}

async fn write_loop(
    store: Arc<dyn EventStore>,
    heads: Arc<LogHeads>,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    mut inbox: mpsc::Receiver<Pending>,
) {
    // Appends taken from the queue and not yet committed: whatever is queued may share
    // the next batch, each tenant its share (`fair_batch.rs`), up to this many held here
    // (beyond, callers wait in the queue as before).
    let mut waiting: std::collections::VecDeque<Pending> = Default::default();
    let mut fresh = Vec::with_capacity(MAX_BATCH);
    loop {
        if waiting.is_empty() && inbox.recv_many(&mut fresh, MAX_BATCH).await == 0 {
            break;
        }
        waiting.extend(fresh.drain(..));
        while waiting.len() < MAX_WAITING {
            match inbox.try_recv() {
                Ok(pending) => waiting.push_back(pending),
                Err(_) => break,
            }
        }
        let batch =
            crate::log::fair_batch::take(&mut waiting, MAX_BATCH, |pending| match pending {
                Pending::One { request, .. } => (Some(request.tenant.clone()), 1),
                Pending::Group { requests, .. } => {
                    (requests.first().map(|r| r.tenant.clone()), requests.len())
                }
            });
        // Groups arrive whole (one message each), so a batch never splits one.
        let mut requests = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for (group, pending) in batch.into_iter().enumerate() {
            match pending {
                Pending::One { request, reply } => {
                    requests.push(request);
                    replies.push(Reply::One(reply));
                }
                Pending::Group {
                    requests: members,
                    reply,
                } => {
                    replies.push(Reply::Group(reply, members.len()));
                    requests.extend(members.into_iter().map(|mut r| {
                        r.atomic_group = Some(group as u32);
                        r
                    }));
                }
            }
        }
        let tenants: Vec<TenantId> = requests.iter().map(|r| r.tenant.clone()).collect();
        let started = std::time::Instant::now();
        Metrics::add(&metrics.append_requests, requests.len() as u64);
        let count = requests.len();
        let results = match tokio::time::timeout(COMMIT_BOUND, store.append_batch(requests)).await {
            Ok(results) => results,
            // A frozen database or network path: the batch's callers answer 503 at once
            // instead of hanging. What the store does with the abandoned transaction
            // (most likely rolled back; at worst committed once the database wakes) is
            // what a lost commit answer always is: a retry with the same command id
            // finds it. Nothing is published or cached for it here.
            Err(_) => {
                let why = format!("the store did not commit within {COMMIT_BOUND:?}");
                (0..count)
                    .map(|_| Err(AppendError::not_reached(&why)))
                    .collect()
            }
        };
        Metrics::add(&metrics.append_transactions, 1);
        Metrics::add(
            &metrics.append_transaction_micros,
            started.elapsed().as_micros() as u64,
        );
        // In request order, which is commit order: each tenant's positions rise.
        live.publish(
            tenants
                .iter()
                .zip(&results)
                .filter_map(|(tenant, result)| match result {
                    Ok(outcome) if !outcome.replayed => Some((tenant, outcome.events.as_slice())),
                    _ => None,
                }),
        );
        for (tenant, result) in tenants.iter().zip(&results) {
            if let Ok(outcome) = result
                && let Some(last) = outcome.events.last()
                && !outcome.replayed
            {
                heads.advance(tenant, last.position);
            }
        }
        // The caller may have gone away (client disconnected): the append stands.
        let mut results = results.into_iter();
        for reply in replies {
            match reply {
                Reply::One(reply) => {
                    if let Some(result) = results.next() {
                        let _ = reply.send(result);
                    }
                }
                Reply::Group(reply, count) => {
                    let _ = reply.send(results.by_ref().take(count).collect());
                }
            }
        }
    }
}

/// The newest committed position per tenant, for whoever waits on new events
/// (projection workers, read-your-writes). Live subscribers follow [`Live`] instead,
/// which carries the events themselves.
///
/// A std `Mutex`: it guards a map lookup and is never held across an await.
#[derive(Default)]
pub struct LogHeads {
    heads: Mutex<HashMap<TenantId, watch::Sender<u64>>>,
}

impl LogHeads {
    /// Records that the tenant's log reached `position` (never moves backwards).
    pub fn advance(&self, tenant: &TenantId, position: u64) {
        let mut heads = self.heads.lock().expect("log heads lock");
        let sender = heads
            .entry(tenant.clone())
            .or_insert_with(|| watch::channel(0).0);
        sender.send_if_modified(|head| {
            let moved = position > *head;
            if moved {
                *head = position;
            }
            moved
        });
    }

    /// A receiver that wakes whenever the tenant's head advances.
    pub fn watch(&self, tenant: &TenantId) -> watch::Receiver<u64> {
        let mut heads = self.heads.lock().expect("log heads lock");
        heads
            .entry(tenant.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Forgets a deleted tenant.
    pub fn remove(&self, tenant: &TenantId) {
        self.heads.lock().expect("log heads lock").remove(tenant);
    }
}
