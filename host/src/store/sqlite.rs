//! The embedded SQLite backend: one file in the data directory, WAL, fsync on commit.
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly one
//! connection: writers queue in-process instead of failing with `SQLITE_BUSY`, and
//! the single writer is what makes positions gap-free and commit-ordered. Reads use
//! their own pool and never wait for writers (WAL). The statements themselves are
//! in `shared.rs`, shared with PostgreSQL.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

pub struct SqliteStore {
    /// The only connection that writes (see the module comment).
    writer: SqlitePool,
    /// Connections for reads, which WAL lets run beside the writer.
    reader: SqlitePool,
    /// Whether the last append met a full disk (`/readyz`).
    health: super::health::StoreHealth,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path`) and migrates it.
    pub async fn open(url: &str) -> anyhow::Result<SqliteStore> {
        super::sqlite_memory::configure();
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("bad SQLite url {url}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged append survives a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .before_acquire(|connection, _| Box::pin(clean_between_transactions(connection)))
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open {url}"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .context("migrating the SQLite database")?;
        // Eight: up to four builds catch up at once across the host, each reading up
        // to two pages ahead (see `projection/worker.rs`). The pool hands connections
        // out in turn, so a state load or an API read waits at most for one page read
        // even then.
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            // A page of a catch-up (5,000 events) fits whole: the connection's thread
            // never waits for the reading task to take rows out, one wake-up each.
            .connect_with(options.read_only(true).row_buffer_size(8192))
            .await?;
        Ok(SqliteStore {
            writer,
            reader,
            health: Default::default(),
        })
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// One process owns the file: no other host to hear from.
    async fn listen(
        &self,
    ) -> anyhow::Result<Option<tokio::sync::mpsc::UnboundedReceiver<super::Notice>>> {
        Ok(None)
    }
}

/// Whether the writer connection may be handed out again: it must be outside any
/// transaction, both by SQLite's own account and by sqlx's.
///
/// A write that fails with `SQLITE_FULL` or `SQLITE_IOERR` may make SQLite roll the
/// whole transaction back by itself; sqlx's rollback on drop then fails ("no
/// transaction is active") and its count of open transactions stays at one, so its
/// next `begin` issues a `SAVEPOINT` and a later `ROLLBACK TO` leaves a real
/// transaction open under every later "commit" (a `RELEASE`, which then commits
/// nothing). That is how a full disk once made the host acknowledge hundreds of
/// appends that never reached the file. A connection in any such state is closed
/// (which rolls back whatever it holds) and the pool opens a fresh one.
async fn clean_between_transactions(
    connection: &mut sqlx::SqliteConnection,
) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if connection.is_in_transaction() {
        tracing::warn!("the SQLite writer was left inside a transaction; reopening it");
        return Ok(false);
    }
    let mut handle = connection.lock_handle().await?;
    // SAFETY: the handle is locked for this call (no other statement runs on it), and
    // sqlite3_get_autocommit only reads the connection's flag.
    let autocommit =
        unsafe { libsqlite3_sys::sqlite3_get_autocommit(handle.as_raw_handle().as_ptr()) };
    if autocommit == 0 {
        tracing::warn!("the SQLite writer holds an open transaction; reopening it");
        return Ok(false);
    }
    Ok(true)
}

/// The statements shared with the other backend, compiled for this one.
type Db = sqlx::Sqlite;
type DbRow = SqliteRow;
type Backend = SqliteStore;

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
