//! The PostgreSQL backend, for a fleet of hosts sharing one database.
//!
//! Positions stay gap-free and commit-ordered per tenant because an append locks its
//! tenant's row (`SELECT … FOR UPDATE`, then `UPDATE tenants SET head = head + n`) until
//! it commits: the next append of that tenant cannot take a position until the previous
//! one is visible, so a reader of `position > after` never skips an event that commits
//! later. A batch locks its tenants in id order, so concurrent hosts cannot deadlock.
//! The rules live in [`super::plan`] and the statements in `shared.rs`, both shared
//! with SQLite.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use tokio::sync::mpsc;

use super::Notice;
use super::notices;

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
            // No ping before each use: it was a round trip in front of every append
            // transaction (0.9 ms of a 3.5 ms transaction at 64 clients, the appender
            // being the bound). A connection that died meanwhile fails its statement
            // instead and is dropped; the appender retries the batch request by
            // request, on another connection.
            .test_before_acquire(false)
            .connect(url)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .context("migrating the PostgreSQL database")?;
        Ok(PostgresStore { pool })
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
