//! Live subscribers, fanned out from memory: the appender publishes every committed
//! event (after its commit, in position order) into a bounded broadcast per tenant,
//! and each subscriber follows that feed without touching the store while it keeps up.
//!
//! A subscriber reads the store only for what the feed cannot give it: the backlog it
//! asked for, the range it missed when it fell more than the buffer behind (`Lagged`),
//! and events committed by other hosts sharing the database (seen as a gap in
//! positions, or announced by the feed's poller). Those reads take a host-wide read
//! slot, so laggards never crowd writers out of the pool. A subscriber that is too far
//! behind when it lags is dropped, told so, and may resume with `Last-Event-ID`.
//!
//! Positions are per tenant, gap-free and in commit order (ARCHITECTURE.md, invariant
//! 2), so "deliver what is above `after`, read the store for any hole" gives every
//! event exactly once, in order.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Semaphore, broadcast, watch};

use crate::metrics::Metrics;
use crate::store::{EventStore, RecordedEvent, StoreResult, TenantId};

/// Events one read of other hosts' commits takes at most (`read_remote`).
const REMOTE_PAGE: u64 = 1_000;

/// Events read from the store per page while a subscriber catches up.
const CATCH_UP_PAGE: u32 = 500;
/// Store reads by subscribers at once across the host: below every pool's size, so
/// catching up never takes the connections appends and commands need.
const READ_SLOTS: usize = 2;

/// Fan-out settings, from `cairn serve`.
#[derive(Clone, Copy, Debug)]
pub struct LiveSettings {
    /// Commits each tenant's broadcast holds (each carries that tenant's events of one
    /// group commit); a subscriber further behind lags and catches up from the store.
    pub buffer: usize,
    /// A subscriber that lags while more than this many events behind the newest is
    /// dropped instead of catching up.
    pub max_behind: u64,
    /// How often a tenant's feed asks the store for its head: a safety net behind the
    /// notices other hosts' appends send (this host's own appends are published
    /// directly).
    pub poll_every: Duration,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            buffer: 1024,
            max_behind: 100_000,
            poll_every: Duration::from_secs(2),
        }
    }
}

/// A committed event as subscribers share it (one allocation, however many read it).
pub struct LiveEvent {
    pub event: RecordedEvent,
    /// The event as the wire shows it, rendered by the first subscriber that sends it;
    /// the others send the same reference-counted bytes.
    rendered: OnceLock<bytes::Bytes>,
}

impl LiveEvent {
    fn new(event: RecordedEvent) -> Arc<LiveEvent> {
        Arc::new(LiveEvent {
            event,
            rendered: OnceLock::new(),
        })
    }

    /// The rendering, computed once by `render`.
    pub fn rendered(&self, render: impl FnOnce(&RecordedEvent) -> bytes::Bytes) -> bytes::Bytes {
        self.rendered.get_or_init(|| render(&self.event)).clone()
    }
}

/// What a feed carries.
#[derive(Clone)]
enum Item {
    /// One tenant's events of one commit of this host's appender, in position order:
    /// one send (and one wake-up per subscriber) per commit, not per event.
    Events(Arc<[Arc<LiveEvent>]>),
    /// The store's head moved to this position without this host appending (another
    /// host did): subscribers below it read the store.
    Head(u64),
}

/// One tenant's broadcast.
struct Feed {
    sender: broadcast::Sender<Item>,
    /// The newest position published or announced; also what "behind" is measured
    /// against. A std `Mutex` held for a send: it keeps publishing in position order.
    published: Mutex<u64>,
    /// Live subscribers of this tenant, for `max_subscribers`.
    subscribers: AtomicUsize,
    /// The newest position other hosts are known to have committed; the feed's
    /// remote reader (`read_remote`) reads up to it once and publishes what it read to
    /// every subscriber, instead of each subscriber reading the store.
    remote_head: watch::Sender<u64>,
}

/// The fan-out hub: one feed per tenant with subscribers.
pub struct Live {
    settings: LiveSettings,
    store: Arc<dyn EventStore>,
    /// Feeds by tenant. A std `Mutex`: held for a lookup.
    feeds: Mutex<HashMap<TenantId, Arc<Feed>>>,
    /// Bounds subscribers' store reads (backlog, catch-up) across the host.
    reads: Arc<Semaphore>,
    /// Live subscribers of every tenant: how often each may write (see
    /// `api/live.rs`) depends on how many share the host's CPU.
    total: AtomicUsize,
    /// Where the store reads are counted.
    metrics: Arc<Metrics>,
}

impl Live {
    pub fn new(
        store: Arc<dyn EventStore>,
        settings: LiveSettings,
        metrics: Arc<Metrics>,
    ) -> Arc<Live> {
        Arc::new(Live {
            metrics,
            settings,
            store,
            feeds: Mutex::new(HashMap::new()),
            reads: Arc::new(Semaphore::new(READ_SLOTS)),
            total: AtomicUsize::new(0),
        })
    }

    /// Publishes the events of one commit (each tenant's in position order). Called
    /// by the appender's writer after the commit; never blocks on subscribers.
    pub fn publish<'a>(
        &self,
        committed: impl Iterator<Item = (&'a TenantId, &'a [RecordedEvent])>,
    ) {
        let mut by_tenant: Vec<(Arc<Feed>, Vec<Arc<LiveEvent>>, u64)> = Vec::new();
        {
            let feeds = self.feeds.lock().expect("feeds lock");
            for (tenant, events) in committed {
                let (Some(feed), Some(last)) = (feeds.get(tenant), events.last()) else {
                    continue;
                };
                let at = match by_tenant.iter().position(|(f, _, _)| Arc::ptr_eq(f, feed)) {
                    Some(at) => at,
                    None => {
                        by_tenant.push((feed.clone(), Vec::new(), 0));
                        by_tenant.len() - 1
                    }
                };
                let entry = &mut by_tenant[at];
                entry.2 = last.position;
                // Nobody listens: nothing to copy.
                if entry.0.sender.receiver_count() > 0 {
                    entry.1.extend(events.iter().cloned().map(LiveEvent::new));
                }
            }
        }
        for (feed, events, last) in by_tenant {
            let mut published = feed.published.lock().expect("published lock");
            if !events.is_empty() {
                // `send` fails only when every receiver is gone: no one to tell.
                let _ = feed.sender.send(Item::Events(events.into()));
            }
            *published = (*published).max(last);
        }
    }

    /// A new subscriber of `tenant` that has delivered everything up to `after`;
    /// 429 past the tenant's `max_subscribers`.
    pub fn subscribe(
        self: &Arc<Self>,
        tenant: &TenantId,
        max_subscribers: u32,
        after: u64,
        types: Vec<String>,
    ) -> Result<Subscription, SubscribeError> {
        let (feed, fresh) = {
            let mut feeds = self.feeds.lock().expect("feeds lock");
            let mut fresh = false;
            let feed = feeds
                .entry(tenant.clone())
                .or_insert_with(|| {
                    fresh = true;
                    Arc::new(Feed {
                        sender: broadcast::channel(self.settings.buffer.max(1)).0,
                        published: Mutex::new(0),
                        subscribers: AtomicUsize::new(0),
                        remote_head: watch::channel(0).0,
                    })
                })
                .clone();
            // Counted under the map lock, so the poller never retires a feed that is
            // gaining a subscriber.
            let count = feed.subscribers.fetch_add(1, Ordering::SeqCst);
            if count >= max_subscribers as usize {
                feed.subscribers.fetch_sub(1, Ordering::SeqCst);
                return Err(SubscribeError::TooMany {
                    count,
                    max_subscribers,
                });
            }
            (feed, fresh)
        };
        if fresh {
            tokio::spawn(poll_head(self.clone(), tenant.clone(), feed.clone()));
            tokio::spawn(read_remote(self.clone(), tenant.clone(), feed.clone()));
        }
        // Counted from here on; given back by the subscription's `Drop`.
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Subscription {
            receiver: feed.sender.subscribe(),
            feed,
            live: self.clone(),
            tenant: tenant.clone(),
            types,
            after,
            catch_up: Some(CatchUp::ToHead),
            caught_up: false,
            pending: VecDeque::new(),
            ended: false,
        })
    }

    /// Another host's append reached `position`: the feed's remote reader reads it
    /// now (once for every subscriber on this host), instead of at the next poll.
    pub fn announce(&self, tenant: &TenantId, position: u64) {
        let Some(feed) = self.feeds.lock().expect("feeds lock").get(tenant).cloned() else {
            return;
        };
        feed.remote_head.send_if_modified(|head| {
            let moved = position > *head;
            if moved {
                *head = position;
            }
            moved
        });
    }

    /// Forgets a deleted tenant's feed (its subscribers end when they next wake).
    pub fn remove(&self, tenant: &TenantId) {
        self.feeds.lock().expect("feeds lock").remove(tenant);
    }
}

/// Announces appends made by other hosts, one head read per tenant every few seconds
/// however many subscribers it has; retires the feed when its last subscriber leaves.
async fn poll_head(live: Arc<Live>, tenant: TenantId, feed: Arc<Feed>) {
    loop {
        tokio::time::sleep(live.settings.poll_every).await;
        {
            let mut feeds = live.feeds.lock().expect("feeds lock");
            let current = feeds.get(&tenant).is_some_and(|f| Arc::ptr_eq(f, &feed));
            if !current {
                return;
            }
            if feed.subscribers.load(Ordering::SeqCst) == 0 {
                feeds.remove(&tenant);
                return;
            }
        }
        let Ok(head) = live.store.head(&tenant).await else {
            continue;
        };
        live.announce(&tenant, head);
    }
}

/// Reads what other hosts committed, once per feed, and publishes it to the feed like
/// this host's own commits: a remote commit costs one store read per host, not one per
/// subscriber. Should this host publish a later position of its own first, the events
/// read are below it and dropped here; subscribers then see a hole and read it from
/// the store themselves (invariant 15), so nothing is lost either way. A read that
/// fails falls back to announcing the head, which has each subscriber read.
async fn read_remote(live: Arc<Live>, tenant: TenantId, feed: Arc<Feed>) {
    let mut remote_head = feed.remote_head.subscribe();
    loop {
        // Wakes on each announcement, and now and then to notice a retired feed.
        let _ = tokio::time::timeout(live.settings.poll_every, remote_head.changed()).await;
        let retired = !live
            .feeds
            .lock()
            .expect("feeds lock")
            .get(&tenant)
            .is_some_and(|f| Arc::ptr_eq(f, &feed));
        if retired {
            return;
        }
        loop {
            let target = *remote_head.borrow_and_update();
            let from = *feed.published.lock().expect("published lock");
            if target <= from {
                break;
            }
            let limit = (target - from).min(REMOTE_PAGE) as u32;
            let read = {
                let _slot = live.reads.acquire().await.expect("never closed");
                Metrics::add(&live.metrics.live_remote_reads, 1);
                live.store.read_log(&tenant, from, limit, &[]).await
            };
            let mut published = feed.published.lock().expect("published lock");
            match read {
                Ok(events) if !events.is_empty() => {
                    let fresh: Vec<Arc<LiveEvent>> = events
                        .into_iter()
                        .filter(|e| e.position > *published)
                        .map(LiveEvent::new)
                        .collect();
                    if let Some(last) = fresh.last().map(|e| e.event.position) {
                        let _ = feed.sender.send(Item::Events(fresh.into()));
                        *published = last;
                    }
                }
                // Not visible yet, or the store failed: each subscriber reads for itself.
                _ => {
                    if target > *published {
                        let _ = feed.sender.send(Item::Head(target));
                        *published = target;
                    }
                    break;
                }
            }
        }
    }
}

/// What a subscriber is given next.
pub enum Delivery {
    Event(Arc<LiveEvent>),
    /// The backlog asked for is delivered; the position reached.
    CaughtUp(u64),
    /// The subscription ends here: why, and the last position delivered (where to
    /// resume from).
    Dropped {
        reason: &'static str,
        position: u64,
    },
}

/// How far a subscriber must read the store before following the feed again.
#[derive(Clone, Copy)]
enum CatchUp {
    /// Until a short page: everything committed when the read ends.
    ToHead,
    /// Up to and including this position.
    To(u64),
}

/// One live subscriber.
pub struct Subscription {
    receiver: broadcast::Receiver<Item>,
    feed: Arc<Feed>,
    /// The store and the read slots, for catching up.
    live: Arc<Live>,
    tenant: TenantId,
    /// Stored types to deliver; empty delivers all.
    types: Vec<String>,
    /// The last position delivered or skipped by the type filter.
    after: u64,
    /// The store range still to read before the feed is followed again.
    catch_up: Option<CatchUp>,
    /// Whether `caught-up` was delivered (it is, once, after the backlog).
    caught_up: bool,
    /// Deliveries decided but not yet taken (at most one store page).
    pending: VecDeque<Delivery>,
    /// Set once `Dropped` is queued or the store failed: nothing follows.
    ended: bool,
}

impl Subscription {
    /// The next delivery; `None` ends the subscription (after `Dropped`).
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.pending.pop_front() {
                return Some(delivery);
            }
            if self.ended {
                return None;
            }
            if let Some(target) = self.catch_up {
                if let Err(error) = self.read_page(target).await {
                    // Told, like a subscriber too far behind: it resumes from `position`
                    // with `Last-Event-ID` once the store answers again.
                    tracing::warn!(tenant = %self.tenant, "live subscription stopped: {error:#}");
                    self.pending.push_back(Delivery::Dropped {
                        reason: "store_unavailable",
                        position: self.after,
                    });
                    self.ended = true;
                }
                continue;
            }
            let item = self.receiver.recv().await;
            if !self.take(item) {
                return None;
            }
        }
    }

    /// Live subscribers on this host, of every tenant (this one included).
    pub fn subscribers_on_host(&self) -> usize {
        self.live.total.load(Ordering::Relaxed)
    }

    /// Whether it is reading the store (backlog or catch-up) rather than the feed.
    pub fn is_catching_up(&self) -> bool {
        self.catch_up.is_some()
    }

    /// A delivery that is ready now (queued, or on the feed), without waiting or
    /// reading the store: lets a writer send several in one frame.
    pub fn next_ready(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.pending.pop_front() {
                return Some(delivery);
            }
            if self.ended || self.catch_up.is_some() {
                return None;
            }
            let item = match self.receiver.try_recv() {
                Ok(item) => Ok(item),
                Err(broadcast::error::TryRecvError::Empty) => return None,
                Err(broadcast::error::TryRecvError::Closed) => Err(RecvError::Closed),
                Err(broadcast::error::TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
            };
            if !self.take(item) {
                return None;
            }
        }
    }

    /// Acts on what the feed gave; false when the feed is closed.
    fn take(&mut self, item: Result<Item, RecvError>) -> bool {
        match item {
            Ok(Item::Events(events)) => {
                for event in events.iter() {
                    let position = event.event.position;
                    if position <= self.after {
                        continue; // already read from the store
                    }
                    if position > self.after + 1 {
                        // A hole (another host's events, or some missed while catching
                        // up): read up to the end of this commit from the store.
                        let last = events.last().map_or(position, |e| e.event.position);
                        self.catch_up = Some(CatchUp::To(last));
                        break;
                    }
                    self.offer(event.clone());
                }
            }
            Ok(Item::Head(head)) => {
                if head > self.after {
                    self.catch_up = Some(CatchUp::To(head));
                }
            }
            Err(RecvError::Lagged(_)) => {
                let newest = *self.feed.published.lock().expect("published lock");
                let behind = newest.saturating_sub(self.after);
                if behind > self.live.settings.max_behind {
                    tracing::info!(tenant = %self.tenant, behind, "a live subscriber too far behind was dropped");
                    self.pending.push_back(Delivery::Dropped {
                        reason: "too_far_behind",
                        position: self.after,
                    });
                    self.ended = true;
                } else {
                    tracing::debug!(tenant = %self.tenant, behind, "a live subscriber lagged: catching up from the store");
                    self.catch_up = Some(CatchUp::ToHead);
                }
            }
            // The feed was retired (tenant deleted).
            Err(RecvError::Closed) => return false,
        }
        true
    }

    /// Queues an event above `after` (if the filter wants it) and moves past it.
    fn offer(&mut self, event: Arc<LiveEvent>) {
        self.after = event.event.position;
        if self.types.is_empty() || self.types.contains(&event.event.event_type) {
            self.pending.push_back(Delivery::Event(event));
        }
    }

    /// Reads one store page towards `target` under a read slot.
    async fn read_page(&mut self, target: CatchUp) -> StoreResult<()> {
        let page = {
            let _slot = self.live.reads.acquire().await.expect("never closed");
            Metrics::add(&self.live.metrics.live_subscriber_reads, 1);
            self.live
                .store
                .read_log(&self.tenant, self.after, CATCH_UP_PAGE, &[])
                .await?
        };
        let short = page.len() < CATCH_UP_PAGE as usize;
        let mut reached = short;
        for event in page {
            if let CatchUp::To(last) = target
                && event.position > last
            {
                reached = true;
                break;
            }
            self.offer(LiveEvent::new(event));
        }
        if let CatchUp::To(last) = target
            && self.after >= last
        {
            reached = true;
        }
        if reached {
            self.catch_up = None;
            if !self.caught_up {
                self.caught_up = true;
                self.pending.push_back(Delivery::CaughtUp(self.after));
            }
        }
        Ok(())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.feed.subscribers.fetch_sub(1, Ordering::SeqCst);
        self.live.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a live subscription was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The tenant has as many live subscribers as its limit allows (`429 over_limit`).
    #[error(
        "this tenant has {count} live subscribers, its limit (max_subscribers); close one first"
    )]
    TooMany {
        /// Subscribers the tenant has.
        count: usize,
        /// Its limit.
        max_subscribers: u32,
    },
}
