//! The statements of a SQL store, written once for the three databases: where they differ
//! (quoting, parameters, a few clauses) is the [`Flavor`] dialect's, in this one file.

use super::{Table, CLEAR_BATCH};

/// The SQL dialect of a store's statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// PostgreSQL: `"t"`, `$1`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
    /// MySQL and MariaDB: `` `t` ``, `?` in binding order (every statement binds its
    /// parameters in the order they appear).
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    MySql,
    /// SQLite: `"t"`, `?1`.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite,
}

impl Flavor {
    /// The compare-and-swap's test that the stored data is `$4`, byte for byte.
    fn same_data(self) -> &'static str {
        match self {
            // Both sides as utf8mb4 bytes: no case folding, no PAD SPACE, whatever the
            // column's charset and collation (see mysql.rs).
            Self::MySql => "CAST(CONVERT(session_data USING utf8mb4) AS BINARY) = CAST(CONVERT($4 USING utf8mb4) AS BINARY)",
            // Byte for byte under PostgreSQL's (deterministic) collations, and SQLite's BINARY.
            Self::Postgres | Self::Sqlite => "session_data = $4",
        }
    }

    /// `touch`'s test that the stored data is what the caller holds (`$3`).
    fn same_digest(self) -> &'static str {
        match self {
            // The server hashes the data it holds and compares it with the caller's digest:
            // the session travels neither way and is not rewritten. `convert_to` hashes the
            // UTF-8 bytes whatever the database encoding; MySQL compares hex digests.
            Self::Postgres => "sha256(convert_to(session_data, 'UTF8')) = $3",
            Self::MySql => "SHA2(CONVERT(session_data USING utf8mb4), 256) = $3",
            // In-process, binding the data costs nothing; it is compared, never rewritten.
            Self::Sqlite => "session_data = $3",
        }
    }

    /// One batch of `clearsessions` from `{t}`, before `$1`.
    fn clear(self) -> &'static str {
        match self {
            // Oldest first along the expiry index; single-table DELETE takes a LIMIT directly.
            Self::MySql => "DELETE FROM {t} WHERE expire_date < $1 ORDER BY expire_date LIMIT {batch}",
            Self::Postgres | Self::Sqlite => "DELETE FROM {t} WHERE session_key IN (SELECT session_key FROM {t} WHERE expire_date < $1 LIMIT {batch})",
        }
    }

    /// One batch of the sweep from `{t}`, before `$1`, naming what went: each deleted
    /// session's key and the user `{u}` linked it to. The user is read before the delete's
    /// `ON DELETE CASCADE` takes the entry: PostgreSQL's data-modifying `WITH` and the
    /// statement around it see one snapshot; MariaDB (10.5+) evaluates `RETURNING` before the
    /// cascade. SQLite evaluates its `RETURNING` after the cascade (the user would be lost), so
    /// it selects the batch here and deletes those keys in the same transaction (`sqlite/`);
    /// MySQL proper (no `RETURNING`) does the same with [`Queries::clear_pick`].
    fn clear_named(self) -> &'static str {
        match self {
            Self::Postgres => "WITH gone AS (DELETE FROM {t} WHERE session_key IN (SELECT session_key FROM {t} WHERE expire_date < $1 LIMIT {batch}) RETURNING session_key) SELECT gone.session_key, u.user_id FROM gone LEFT JOIN {u} u ON u.session_key = gone.session_key",
            Self::MySql => "DELETE FROM {t} WHERE expire_date < $1 ORDER BY expire_date LIMIT {batch} RETURNING session_key, (SELECT u.user_id FROM {u} u WHERE u.session_key = {t}.session_key)",
            Self::Sqlite => "SELECT s.session_key, u.user_id FROM {t} s LEFT JOIN {u} u ON u.session_key = s.session_key WHERE s.expire_date < $1 LIMIT {batch}",
        }
    }

    /// The live (after `$1`) and expired (not after `$2`) counts of `{t}`.
    fn count_both(self) -> &'static str {
        match self {
            Self::Postgres => "SELECT COUNT(*) FILTER (WHERE expire_date > $1), COUNT(*) FILTER (WHERE expire_date <= $2) FROM {t}",
            Self::MySql => "SELECT CAST(COALESCE(SUM(expire_date > $1), 0) AS SIGNED), CAST(COALESCE(SUM(expire_date <= $2), 0) AS SIGNED) FROM {t}",
            Self::Sqlite => "SELECT COALESCE(SUM(expire_date > $1), 0), COALESCE(SUM(expire_date <= $2), 0) FROM {t}",
        }
    }

    /// `name` quoted as an identifier.
    fn quote(self, name: &str) -> String {
        match self {
            Self::MySql => format!("`{name}`"),
            Self::Postgres | Self::Sqlite => format!("\"{name}\""),
        }
    }

    /// The tail of the user index's upsert: refresh all but `created`; MySQL selects the
    /// values `FROM DUAL`.
    fn upsert(self) -> (&'static str, String) {
        let columns = ["user_id", "last_seen", "expire_date", "user_agent", "ip"];
        if self == Self::MySql {
            let set = columns.map(|c| format!("{c} = VALUES({c})"));
            return (
                " FROM DUAL",
                format!("ON DUPLICATE KEY UPDATE {}", set.join(", ")),
            );
        }
        let set = columns.map(|c| format!("{c} = excluded.{c}"));
        (
            "",
            format!("ON CONFLICT (session_key) DO UPDATE SET {}", set.join(", ")),
        )
    }

    /// `sql`, written with `$1`, `$2`, …, with the parameters as this dialect writes them.
    fn params(self, sql: &str) -> String {
        if self == Self::Postgres {
            return sql.to_owned();
        }
        let mut out = String::with_capacity(sql.len());
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' || !chars.peek().is_some_and(char::is_ascii_digit) {
                out.push(c);
                continue;
            }
            out.push('?');
            while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                if self == Self::Sqlite {
                    out.push(digit);
                }
            }
        }
        out
    }
}

/// The statements of a SQL store on one table, in its dialect.
#[derive(Debug, Clone)]
pub struct Queries {
    pub load: String,
    pub create: String,
    pub update: String,
    pub touch: String,
    pub delete: String,
    pub exists: String,
    pub clear: String,
    /// The sweep's batch that names what it deletes (see `Flavor::clear_named`).
    pub clear_named: String,
    /// MySQL without `RETURNING`: a batch of expired keys and their users, locked for the
    /// delete that follows in the same transaction.
    pub clear_pick: String,
    pub count: String,
    pub count_both: String,
    pub scan: String,
    /// Inserts an index entry only while the session row exists (a concurrent logout may
    /// have deleted it); an existing entry keeps its `created`.
    pub link: String,
    pub unlink: String,
    /// The session's own expiry decides (Django may have saved it since our last link).
    pub sessions_of: String,
    /// Whether the index holds a session for a user.
    pub holds: String,
    /// Deletes the session only if the index says it is this user's.
    pub revoke: String,
}

impl Queries {
    /// The statements on `table` in `dialect`.
    pub fn new(table: &Table, dialect: Flavor) -> Self {
        let (t, u) = (
            dialect.quote(table.name()),
            dialect.quote(&table.user_table()),
        );
        let (dual, upsert) = dialect.upsert();
        let (same_data, same_digest) = (dialect.same_data(), dialect.same_digest());
        let sql = |text: String| dialect.params(&text.replace("{t}", &t).replace("{u}", &u));
        let batch = CLEAR_BATCH.to_string();
        Self {
            load: sql(format!("SELECT session_data, expire_date FROM {t} WHERE session_key = $1 AND expire_date > $2")),
            create: sql(format!("INSERT INTO {t} (session_key, session_data, expire_date) VALUES ($1, $2, $3)")),
            update: sql(format!("UPDATE {t} SET session_data = $1, expire_date = $2 WHERE session_key = $3 AND {same_data} AND expire_date > $5")),
            touch: sql(format!("UPDATE {t} SET expire_date = $1 WHERE session_key = $2 AND {same_digest} AND expire_date > $4")),
            delete: sql(format!("DELETE FROM {t} WHERE session_key = $1")),
            exists: sql(format!("SELECT 1 FROM {t} WHERE session_key = $1")),
            clear: sql(dialect.clear().replace("{batch}", &batch)),
            clear_named: sql(dialect.clear_named().replace("{batch}", &batch)),
            clear_pick: sql(format!("SELECT s.session_key, u.user_id FROM {t} s LEFT JOIN {u} u ON u.session_key = s.session_key WHERE s.expire_date < $1 ORDER BY s.expire_date LIMIT {batch} FOR UPDATE")),
            count: sql(format!("SELECT COUNT(*) FROM {t} WHERE expire_date > $1")),
            count_both: sql(dialect.count_both().to_owned()),
            scan: sql(format!("SELECT session_data, expire_date, session_key FROM {t} WHERE session_key > $1 AND expire_date > $2 ORDER BY session_key LIMIT $3")),
            link: sql(format!("INSERT INTO {u} (session_key, user_id, created, last_seen, expire_date, user_agent, ip) SELECT $1, $2, $3, $4, $5, $6, $7{dual} WHERE EXISTS (SELECT 1 FROM {t} WHERE session_key = $8) {upsert}")),
            unlink: sql(format!("DELETE FROM {u} WHERE user_id = $1 AND session_key = $2")),
            sessions_of: sql(format!("SELECT u.session_key, u.user_id, u.created, u.last_seen, s.expire_date, u.user_agent, u.ip FROM {u} u JOIN {t} s ON s.session_key = u.session_key WHERE u.user_id = $1 AND s.expire_date > $2 ORDER BY u.created DESC, u.session_key")),
            holds: sql(format!("SELECT 1 FROM {u} WHERE user_id = $1 AND session_key = $2")),
            revoke: sql(format!("DELETE FROM {t} WHERE session_key IN (SELECT session_key FROM {u} WHERE user_id = $1 AND session_key = $2)")),
        }
    }
}

impl Queries {
    /// One `INSERT` of `rows` sessions into `table` (`rows` ≥ 1), binding key, data and
    /// expiry of each in turn: [`SqlStore::create_many`](super::SqlStore)'s statement.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub fn create_rows(table: &Table, dialect: Flavor, rows: usize) -> String {
        let values: Vec<String> = (0..rows)
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        dialect.params(&format!(
            "INSERT INTO {} (session_key, session_data, expire_date) VALUES {}",
            dialect.quote(table.name()),
            values.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_rows_go_in_one_insert() {
        let table = Table::new("s").unwrap();
        assert_eq!(
            Queries::create_rows(&table, Flavor::Postgres, 2),
            "INSERT INTO \"s\" (session_key, session_data, expire_date) VALUES ($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(
            Queries::create_rows(&table, Flavor::MySql, 1),
            "INSERT INTO `s` (session_key, session_data, expire_date) VALUES (?, ?, ?)"
        );
    }

    #[test]
    fn parameters_are_written_in_each_dialects_style() {
        let sql = "a = $1 AND b = $2 AND c = $12 AND d = '$'";
        assert_eq!(Flavor::Postgres.params(sql), sql);
        assert_eq!(
            Flavor::Sqlite.params(sql),
            "a = ?1 AND b = ?2 AND c = ?12 AND d = '$'"
        );
        assert_eq!(
            Flavor::MySql.params(sql),
            "a = ? AND b = ? AND c = ? AND d = '$'"
        );
    }
}
