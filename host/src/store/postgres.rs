//! The PostgreSQL backend, for a fleet of hosts sharing one database.
//!
//! Positions stay gap-free and commit-ordered per tenant because an append locks its
//! tenant's row (`SELECT … FOR UPDATE`, then `UPDATE tenants SET head = head + n`) until
//! it commits: the next append of that tenant cannot take a position until the previous
//! one is visible, so a reader of `position > after` never skips an event that commits
//! later. A batch locks its tenants in id order, so concurrent hosts cannot deadlock.
//! The rules live in [`super::plan`] and the statements in `shared.rs`, both shared
//! with SQLite.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use tokio::sync::mpsc;

use super::Notice;
use super::notices;

pub struct PostgresStore {
    /// One pool for reads and writes: PostgreSQL handles concurrent writers itself.
    pool: PgPool,
    /// Whether the last append met a full disk (`/readyz`).
    health: super::health::StoreHealth,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and migrates the database.
    pub async fn open(url: &str) -> anyhow::Result<PostgresStore> {
        let base =
            PgConnectOptions::from_str(url).with_context(|| format!("bad PostgreSQL url {url}"))?;
        // Migrations on a connection of their own, without the bounds below: building
        // an index over a large table may rightly take minutes.
        let mut migrating = PgConnection::connect_with(&base)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&mut migrating)
            .await
            .context("migrating the PostgreSQL database")?;
        migrating.close().await.ok();
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A request that cannot get a connection (the database is gone, or every
            // connection hangs on a frozen one) answers 503 store_unavailable soon.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // No ping before each use: it was a round trip in front of every append
            // transaction (0.9 ms of a 3.5 ms transaction at 64 clients, the appender
            // being the bound). A connection that died meanwhile fails its statement
            // instead and is dropped; its request answers 503 and may be retried.
            .test_before_acquire(false)
            .connect_with(bounded(base))
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        Ok(PostgresStore {
            pool,
            health: Default::default(),
        })
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    /// Listens on the notice channel over a connection of its own, for as long as the
    /// receiver lives. After a lost connection (sqlx reconnects and listens again)
    /// it sends `Resync`: notices sent meanwhile are gone.
    async fn listen(&self) -> anyhow::Result<Option<mpsc::UnboundedReceiver<Notice>>> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .context("connecting the notice listener")?;
        listener.listen(notices::CHANNEL).await?;
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            // Reconnection attempts back off (100 ms doubling to 5 s) while the
            // database stays away.
            let mut backoff = super::retry::Backoff::new();
            loop {
                let notice = match listener.try_recv().await {
                    Ok(Some(message)) => {
                        backoff.succeeded();
                        Notice::from_payload(message.payload())
                    }
                    Ok(None) => {
                        tracing::warn!("the notice listener lost its connection; resynchronising");
                        Some(Notice::Resync)
                    }
                    Err(error) => {
                        let wait = backoff.failed();
                        tracing::warn!("the notice listener failed: {error}; retrying in {wait:?}");
                        tokio::time::sleep(wait).await;
                        Some(Notice::Resync)
                    }
                };
                if let Some(notice) = notice
                    && sender.send(notice).is_err()
                {
                    return;
                }
            }
        });
        Ok(Some(receiver))
    }
}

/// How long a request waits for a pooled connection before it answers 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The session settings that bound what one host's stall can cost the others
/// (docs/operating.md, "Faults"):
///
/// - `idle_in_transaction_session_timeout`: a host paused (SIGSTOP, a frozen network
///   path) between two statements of a transaction holds its tenant's row lock; the
///   server ends that session after 2 s, which rolls it back and frees the lock. No
///   transaction of the host waits on anything but its own statements (an append's
///   statements follow each other within milliseconds), so only a stalled host meets
///   it. Two seconds keeps the others above half their rate through a longer pause.
/// - `lock_timeout`: an append waiting for a tenant row another host holds gives up
///   after 3 s (the transaction fails, the request answers 503 and may be retried).
/// - `statement_timeout`: no statement runs longer than 30 s (catch-up pages and the
///   largest reads take well under a second).
/// - TCP keepalives on the server's side of the socket: a host whose machine vanished
///   is noticed within about 10 s instead of the kernel's two hours.
fn bounded(options: PgConnectOptions) -> PgConnectOptions {
    options.options([
        ("idle_in_transaction_session_timeout", "2s"),
        ("lock_timeout", "3s"),
        ("statement_timeout", "30s"),
        ("tcp_keepalives_idle", "4"),
        ("tcp_keepalives_interval", "2"),
        ("tcp_keepalives_count", "3"),
    ])
}

/// The statements shared with the other backend, compiled for this one.
type Db = sqlx::Postgres;
type DbRow = PgRow;
type Backend = PostgresStore;

// Compiled once per backend on purpose: the same statements over another database.
#[allow(clippy::duplicate_mod)]
#[path = "shared.rs"]
mod shared;

// The plugin registry's statements, shared the same way.
#[allow(clippy::duplicate_mod)]
#[path = "shared_plugins.rs"]
mod shared_plugins;

// The projection builds' statements, shared the same way.
#[allow(clippy::duplicate_mod)]
#[path = "shared_projections.rs"]
mod shared_projections;

// The hosts table's statements, shared the same way.
#[allow(clippy::duplicate_mod)]
#[path = "shared_hosts.rs"]
mod shared_hosts;
