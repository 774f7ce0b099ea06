//! What differs between the SQL engines, for the shared statements in `shared.rs`:
//! placeholders (`?` for SQLite, `$1`, `$2`… for PostgreSQL) and row locking.

/// What differs between the SQL engines.
pub trait Dialect {
    /// Appended to the read of a tenant's head inside an append, to lock that row
    /// until commit where the engine has row locks.
    const LOCK_ROW: &'static str;
    /// Whether several hosts may share one database of this engine, so a host must
    /// ask the store about changes it did not make itself.
    const SHARED_BY_HOSTS: bool;
    /// The statement that announces a payload to the other hosts, where they exist.
    const NOTIFY: Option<&'static str>;
    /// Whether `WITH … AS (INSERT …)` works, so an append's rows, heads and notices go
    /// to the server in one statement: one round trip instead of four, which matters
    /// where each statement crosses a socket.
    const WRITING_CTES: bool;
    /// How an append transaction's inserts begin. Any failed statement there drops
    /// the whole transaction (the batch is then retried request by request), so the
    /// engine never has to undo one statement alone while keeping the rest.
    const INSERT_IN_APPEND: &'static str;
    /// A `FROM` item turning one bound JSON array of strings into rows of one column,
    /// `value`: a list of any length in a statement whose text never changes, so the
    /// engine prepares and plans it once.
    const JSON_STRINGS: &'static str;
    /// The statement with this engine's placeholders.
    fn sql(text: &str) -> String;
}

impl Dialect for sqlx::Sqlite {
    // SQLite has a single writer: the whole database is locked already.
    const LOCK_ROW: &'static str = "";
    // One process owns the file (its single writer connection holds the write lock).
    const SHARED_BY_HOSTS: bool = false;
    const NOTIFY: Option<&'static str> = None;
    // Not in SQLite, and in-process statements cost no round trip anyway.
    const WRITING_CTES: bool = false;
    // SQLite's default conflict handling (ABORT) undoes the one failing statement,
    // so it copies every page a multi-row insert touches to a statement journal
    // first, spilling to a temporary file past 64 KiB: 6% of the server's samples
    // under load. FAIL stops at the conflict without undoing, which needs no journal.
    const INSERT_IN_APPEND: &'static str = "INSERT OR FAIL";
    const JSON_STRINGS: &'static str = "json_each(?)";

    fn sql(text: &str) -> String {
        text.to_owned()
    }
}

impl Dialect for sqlx::Postgres {
    const LOCK_ROW: &'static str = " FOR UPDATE";
    const SHARED_BY_HOSTS: bool = true;
    const NOTIFY: Option<&'static str> = Some("SELECT pg_notify('cairn', ?)");
    const WRITING_CTES: bool = true;
    const INSERT_IN_APPEND: &'static str = "INSERT";
    const JSON_STRINGS: &'static str = "jsonb_array_elements_text(CAST(? AS jsonb)) AS j(value)";

    fn sql(text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 8);
        let mut n = 0;
        for c in text.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Dialect;

    #[test]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(
            <sqlx::Postgres as Dialect>::sql("a = ? AND b IN (?, ?)"),
            "a = $1 AND b IN ($2, $3)"
        );
        assert_eq!(<sqlx::Sqlite as Dialect>::sql("a = ?"), "a = ?");
    }
}
