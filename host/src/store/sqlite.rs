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
        Ok(SqliteStore { writer, reader })
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
