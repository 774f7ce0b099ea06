//! What kind of failure a store error is, so that callers can tell a client the
//! truth: the host's disk is full (retry once space returns), the database cannot be
//! reached right now (retry), or something is broken (a bug: 500).
//!
//! The store speaks `anyhow` (and `sqlx::Error` inside it); this module reads the
//! chain once, at the edge where an answer is chosen, instead of every backend
//! wrapping every statement. SQLite reports its result codes as decimal numbers
//! (primary code in the low byte), PostgreSQL as five-character SQLSTATEs.

/// The kind of a store failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFault {
    /// No room to write: SQLite's `SQLITE_FULL`, PostgreSQL's `disk_full` (53100),
    /// `ENOSPC`/`EDQUOT` from a file the host writes (plugin artifacts). Reads still
    /// work; a write succeeds again once space returns.
    Full,
    /// The database is down, restarting, unreachable or frozen (a timeout), or it
    /// refused for a passing reason (serialization failure, deadlock, lock or
    /// statement timeout, a terminated connection, a busy file). Safe to retry: a
    /// failed append wrote nothing, or (a commit whose answer was lost) wrote exactly
    /// what a retry with the same command id gets back.
    Unavailable,
    /// Anything else: a bug or a broken schema.
    Other,
}

impl StoreFault {
    /// Whether the same request may succeed later unchanged.
    pub fn is_retryable(self) -> bool {
        !matches!(self, StoreFault::Other)
    }
}

/// The kind of the first error in `error`'s chain that this module recognises.
pub fn classify(error: &anyhow::Error) -> StoreFault {
    for cause in error.chain() {
        if let Some(classified) = cause.downcast_ref::<Classified>() {
            return classified.fault;
        }
        if let Some(sqlx) = cause.downcast_ref::<sqlx::Error>() {
            return classify_sqlx(sqlx);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return classify_io(io);
        }
        if cause
            .downcast_ref::<tokio::time::error::Elapsed>()
            .is_some()
            || cause.downcast_ref::<StoreTimeout>().is_some()
        {
            return StoreFault::Unavailable;
        }
    }
    StoreFault::Other
}

/// The kind of one `sqlx` error.
pub fn classify_sqlx(error: &sqlx::Error) -> StoreFault {
    match error {
        sqlx::Error::Database(database) => match database.code() {
            Some(code) => classify_code(&code),
            None => StoreFault::Other,
        },
        sqlx::Error::Io(io) => match classify_io(io) {
            StoreFault::Full => StoreFault::Full,
            _ => StoreFault::Unavailable,
        },
        sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreFault::Unavailable,
        _ => StoreFault::Other,
    }
}

/// A database's own error code: a SQLSTATE (five characters) from PostgreSQL, an
/// extended result code (decimal) from SQLite.
fn classify_code(code: &str) -> StoreFault {
    if code.len() == 5 {
        return match code {
            "53100" => StoreFault::Full,
            // insufficient resources (out of memory, too many connections), connection
            // exceptions, serialization failures and deadlocks, lock_not_available,
            // query_canceled (statement_timeout), admin/crash shutdown, cannot connect
            // now, idle-in-transaction timeout, I/O error.
            _ if code.starts_with("53") || code.starts_with("08") || code.starts_with("40") => {
                StoreFault::Unavailable
            }
            // 55000 at connect: "database is not currently accepting connections"
            // (ALLOW_CONNECTIONS false during maintenance); no statement of the
            // host's own raises it otherwise.
            "55000" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" | "57P05" | "25P03"
            | "58030" => StoreFault::Unavailable,
            _ => StoreFault::Other,
        };
    }
    let Ok(extended) = code.parse::<i32>() else {
        return StoreFault::Other;
    };
    match extended & 0xff {
        // SQLITE_FULL
        13 => StoreFault::Full,
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_IOERR, SQLITE_CANTOPEN,
        // SQLITE_PROTOCOL
        5 | 6 | 7 | 10 | 14 | 15 => StoreFault::Unavailable,
        _ => StoreFault::Other,
    }
}

fn classify_io(error: &std::io::Error) -> StoreFault {
    match error.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => StoreFault::Full,
        _ if error.kind() == std::io::ErrorKind::StorageFull => StoreFault::Full,
        _ => StoreFault::Other,
    }
}

/// A store error already read, for where the error itself cannot travel (one result
/// shared by several waiters; an answer for a client, `ApiError`, turned back into an
/// error a background worker handles, which must still tell a passing failure from a
/// lasting one): its kind and its text.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct Classified {
    pub fault: StoreFault,
    pub message: String,
}

impl Classified {
    pub fn of(error: &anyhow::Error) -> Classified {
        Classified {
            fault: classify(error),
            message: format!("{error:#}"),
        }
    }
}

/// A store call that did not answer within its bound (the database is frozen or the
/// network path to it stalled).
#[derive(Debug, thiserror::Error)]
#[error("the store did not answer within {0:?}")]
pub struct StoreTimeout(pub std::time::Duration);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_per_engine() {
        assert_eq!(classify_code("13"), StoreFault::Full);
        // SQLITE_IOERR_WRITE (10 | 3 << 8)
        assert_eq!(classify_code("778"), StoreFault::Unavailable);
        // SQLITE_CONSTRAINT_UNIQUE
        assert_eq!(classify_code("2067"), StoreFault::Other);
        assert_eq!(classify_code("53100"), StoreFault::Full);
        assert_eq!(classify_code("57P01"), StoreFault::Unavailable);
        assert_eq!(classify_code("40001"), StoreFault::Unavailable);
        assert_eq!(classify_code("08006"), StoreFault::Unavailable);
        assert_eq!(classify_code("55000"), StoreFault::Unavailable);
        assert_eq!(classify_code("23505"), StoreFault::Other);
    }

    #[test]
    fn the_chain_is_searched() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let error = anyhow::Error::new(full).context("writing the artifact");
        assert_eq!(classify(&error), StoreFault::Full);
        let pool = anyhow::Error::new(sqlx::Error::PoolTimedOut).context("reading");
        assert_eq!(classify(&pool), StoreFault::Unavailable);
        assert_eq!(classify(&anyhow::anyhow!("a bug")), StoreFault::Other);
        let classified = Classified {
            fault: StoreFault::Unavailable,
            message: "the database is unavailable".to_owned(),
        };
        let error = anyhow::Error::new(classified).context("verifying");
        assert_eq!(classify(&error), StoreFault::Unavailable);
    }
}
