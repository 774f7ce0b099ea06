//! What differs between the SQL engines, for the shared statements in `shared.rs`:
//! placeholders (`?` for SQLite, `$1`, `$2`… for PostgreSQL) and row locking.

/// What differs between the SQL engines.
pub trait Dialect {
    /// Appended to the read of a tenant's head inside an append, to lock that row
    /// until commit where the engine has row locks.
    const LOCK_ROW: &'static str;
    /// The statement with this engine's placeholders.
    fn sql(text: &str) -> String;
}

impl Dialect for sqlx::Sqlite {
    // SQLite has a single writer: the whole database is locked already.
    const LOCK_ROW: &'static str = "";

    fn sql(text: &str) -> String {
        text.to_owned()
    }
}

impl Dialect for sqlx::Postgres {
    const LOCK_ROW: &'static str = " FOR UPDATE";

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
