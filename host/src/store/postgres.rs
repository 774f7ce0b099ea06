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
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};

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

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
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
