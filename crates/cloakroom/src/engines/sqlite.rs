//! The `db` engine on embedded SQLite, the default: a file beside the app, no server.
//!
//! Tuned for many concurrent readers and one writer: WAL journal, `synchronous = NORMAL`
//! (durable across app crashes; a power cut can lose the last commits, never corrupt), a busy
//! timeout instead of "database is locked" errors.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;

use super::sql::{clear_in_batches, guarded_write, scan_batch, scan_limit, Table, CLEAR_BATCH};
use crate::digits::{push_padded, push_two};
use crate::error::{ConfigError, StoreError};
use crate::store::{
    Batch, ClearExpired, Counts, Created, Record, Scan, SessionStore, Updated, UserIndex,
};

const ENGINE: &str = "sqlite";

/// Sessions in a SQLite table.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Reads (and, for a pool handed in by the app, writes too).
    pool: SqlitePool,
    /// Writes. SQLite lets one writer in at a time; writers that race for the lock wait in its
    /// busy handler, which sleeps for milliseconds. One writing connection queues them in the
    /// pool instead, in microseconds.
    writer: SqlitePool,
    table: Table,
    q: Queries,
}

#[derive(Clone, Debug)]
struct Queries {
    load: String,
    create: String,
    update: String,
    touch: String,
    delete: String,
    exists: String,
    clear: String,
    count: String,
    link: String,
    unlink: String,
    sessions_of: String,
    revoke: String,
}

impl Queries {
    fn new(t: &str) -> Self {
        Self {
            load: format!(
                r#"SELECT session_data, expire_date FROM "{t}" WHERE session_key = ?1 AND expire_date > ?2"#
            ),
            create: format!(
                r#"INSERT INTO "{t}" (session_key, session_data, expire_date) VALUES (?1, ?2, ?3)"#
            ),
            update: format!(
                r#"UPDATE "{t}" SET session_data = ?1, expire_date = ?2 WHERE session_key = ?3 AND session_data = ?4 AND expire_date > ?5"#
            ),
            // The data is compared, never rewritten; binding it costs nothing in-process.
            touch: format!(
                r#"UPDATE "{t}" SET expire_date = ?1 WHERE session_key = ?2 AND session_data = ?3 AND expire_date > ?4"#
            ),
            delete: format!(r#"DELETE FROM "{t}" WHERE session_key = ?1"#),
            exists: format!(r#"SELECT 1 FROM "{t}" WHERE session_key = ?1"#),
            clear: format!(
                r#"DELETE FROM "{t}" WHERE session_key IN (SELECT session_key FROM "{t}" WHERE expire_date < ?1 LIMIT {CLEAR_BATCH})"#
            ),
            count: format!(r#"SELECT COUNT(*) FROM "{t}" WHERE expire_date > ?1"#),
            // Only while the session is there (a concurrent logout may have deleted it); an
            // existing entry keeps its `created`.
            link: format!(
                r#"INSERT INTO "{t}_user" (session_key, user_id, created, last_seen, expire_date, user_agent, ip)
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS (SELECT 1 FROM "{t}" WHERE session_key = ?8)
ON CONFLICT (session_key) DO UPDATE SET user_id = excluded.user_id, last_seen = excluded.last_seen, expire_date = excluded.expire_date, user_agent = excluded.user_agent, ip = excluded.ip"#
            ),
            unlink: format!(r#"DELETE FROM "{t}_user" WHERE user_id = ?1 AND session_key = ?2"#),
            // The session's own expiry decides (Django may have saved it since our last link).
            sessions_of: format!(
                r#"SELECT u.session_key, u.user_id, u.created, u.last_seen, s.expire_date, u.user_agent, u.ip FROM "{t}_user" u JOIN "{t}" s ON s.session_key = u.session_key WHERE u.user_id = ?1 AND s.expire_date > ?2 ORDER BY u.created DESC, u.session_key"#
            ),
            revoke: format!(
                r#"DELETE FROM "{t}" WHERE session_key IN (SELECT session_key FROM "{t}_user" WHERE user_id = ?1 AND session_key = ?2)"#
            ),
        }
    }
}

/// Formats an instant as Django stores `expire_date` in SQLite: the UTC wall clock as text,
/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, fraction omitted when zero. Expiry filters compare this text.
pub fn django_datetime(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let mut out = String::with_capacity(26);
    // Written by hand: three of these per counter request cost 12k instructions via format!.
    let year = at.year();
    if year < 0 {
        out.push('-');
        push_padded(&mut out, u64::from(year.unsigned_abs()), 3);
    } else {
        push_padded(&mut out, u64::from(year.unsigned_abs()), 4);
    }
    for (sep, n) in [
        ('-', u8::from(at.month())),
        ('-', at.day()),
        (' ', at.hour()),
        (':', at.minute()),
        (':', at.second()),
    ] {
        out.push(sep);
        push_two(&mut out, n);
    }
    if let us @ 1.. = at.microsecond() {
        out.push('.');
        push_padded(&mut out, u64::from(us), 6);
    }
    out
}

fn parse_django_datetime(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    time::PrimitiveDateTime::parse(text, format)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

fn store_error(table: &Table, e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        // SQLite reports a missing table only as a generic error with this message.
        if db.message().starts_with("no such table") {
            return StoreError::MissingTable {
                table: table.name().to_owned(),
            };
        }
    }
    StoreError::backend(ENGINE, e)
}

impl SqliteStore {
    /// Opens (creating if needed) the SQLite database at `url` (`sqlite://path` or
    /// `sqlite::memory:`), with WAL, `synchronous = NORMAL` and a 5 s busy timeout, and keeps
    /// sessions in the default table.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the file cannot be opened.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::backend(ENGINE, e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .statement_cache_capacity(32);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            // Switching a new file to WAL needs an exclusive lock, and SQLite answers "database
            // is locked" at once (without the busy timeout) when two new connections race to do
            // it; so one connection does it before the pool opens the others.
            use sqlx::Connection as _;
            let conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .map_err(|e| StoreError::backend(ENGINE, e))?;
            conn.close()
                .await
                .map_err(|e| StoreError::backend(ENGINE, e))?;
        }
        let open = |max: u32| {
            SqlitePoolOptions::new()
                .max_connections(max)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                // sqlx pings a connection before every use by default: for SQLite that is a
                // hand-off to the connection's thread and back before each query, two per
                // counter request, for a connection to a local file that cannot go away.
                .test_before_acquire(false)
                .connect_with(options.clone())
        };
        if in_memory {
            // An in-memory database lives as long as one connection: keep exactly one.
            let pool = open(1).await.map_err(|e| StoreError::backend(ENGINE, e))?;
            return Self::new(pool, crate::config::DEFAULT_TABLE)
                .map_err(|e| StoreError::backend(ENGINE, e));
        }
        // WAL readers never block each other or the writer; more of them than cores only adds
        // thread switches (each sqlx connection is a thread).
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let readers = u32::try_from(cores.clamp(2, 8)).unwrap_or(8);
        let pool = open(readers)
            .await
            .map_err(|e| StoreError::backend(ENGINE, e))?;
        let writer = open(1).await.map_err(|e| StoreError::backend(ENGINE, e))?;
        let mut store = Self::new(pool, crate::config::DEFAULT_TABLE)
            .map_err(|e| StoreError::backend(ENGINE, e))?;
        store.writer = writer;
        Ok(store)
    }

    /// Sessions in `table` of an existing pool.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `table` is not a plain identifier.
    pub fn new(pool: SqlitePool, table: &str) -> Result<Self, ConfigError> {
        let table = Table::new(table)?;
        Ok(Self {
            q: Queries::new(table.name()),
            writer: pool.clone(),
            pool,
            table,
        })
    }

    /// The same database, another table.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `table` is not a plain identifier.
    pub fn with_table(self, table: &str) -> Result<Self, ConfigError> {
        let table = Table::new(table)?;
        Ok(Self {
            q: Queries::new(table.name()),
            table,
            ..self
        })
    }

    /// The pool, for the application's own queries.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates the table and its expiry index, and the user index table beside it
    /// ([`Table::user_table`]), unless they exist (idempotent).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database refuses.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let t = self.table.name();
        let index = self.table.expiry_index();
        let users = self.table.user_table();
        let user_index = self.table.user_id_index();
        let ddl = format!(
            r#"CREATE TABLE IF NOT EXISTS "{t}" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" datetime NOT NULL);
CREATE INDEX IF NOT EXISTS "{index}" ON "{t}" ("expire_date");
CREATE TABLE IF NOT EXISTS "{users}" ("session_key" varchar(40) NOT NULL PRIMARY KEY REFERENCES "{t}" ("session_key") ON DELETE CASCADE, "user_id" varchar(255) NOT NULL, "created" datetime NOT NULL, "last_seen" datetime NOT NULL, "expire_date" datetime NOT NULL, "user_agent" varchar(512) NULL, "ip" varchar(64) NULL);
CREATE INDEX IF NOT EXISTS "{user_index}" ON "{users}" ("user_id");"#
        );
        sqlx::raw_sql(&ddl)
            .execute(&self.writer)
            .await
            .map_err(|e| store_error(&self.table, e))?;
        Ok(())
    }

    /// How many live sessions the table holds.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub async fn count_live(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&self.q.count)
            .bind(django_datetime(now))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| store_error(&self.table, e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn record(&self, row: &sqlx::sqlite::SqliteRow) -> Result<Record, StoreError> {
        let data: String = row.try_get(0).map_err(|e| store_error(&self.table, e))?;
        let expire: String = row.try_get(1).map_err(|e| store_error(&self.table, e))?;
        let expires_at = parse_django_datetime(&expire).ok_or_else(|| {
            StoreError::backend(ENGINE, format!("unreadable expire_date `{expire}`"))
        })?;
        Ok(Record { data, expires_at })
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(&self.q.load)
            .bind(key)
            .bind(django_datetime(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(&self.table, e))?;
        row.map(|row| self.record(&row)).transpose()
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let result = sqlx::query(&self.q.create)
            .bind(key)
            .bind(&record.data)
            .bind(django_datetime(record.expires_at))
            .execute(&self.writer)
            .await;
        match result {
            Ok(_) => Ok(Created::Stored),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(Created::Taken),
            Err(e) => Err(store_error(&self.table, e)),
        }
    }

    async fn update(
        &self,
        key: &str,
        expected: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let done = sqlx::query(&self.q.update)
            .bind(&record.data)
            .bind(django_datetime(record.expires_at))
            .bind(key)
            .bind(expected)
            .bind(django_datetime(now))
            .execute(&self.writer)
            .await
            .map_err(|e| store_error(&self.table, e))?;
        guarded_write(done.rows_affected(), self.load(key, now)).await
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let done = sqlx::query(&self.q.touch)
            .bind(django_datetime(record.expires_at))
            .bind(key)
            .bind(&record.data)
            .bind(django_datetime(now))
            .execute(&self.writer)
            .await
            .map_err(|e| store_error(&self.table, e))?;
        guarded_write(done.rows_affected(), self.load(key, now)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query(&self.q.delete)
            .bind(key)
            .execute(&self.writer)
            .await
            .map_err(|e| store_error(&self.table, e))?;
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(&self.q.exists)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(&self.table, e))?;
        Ok(row.is_some())
    }

    fn users(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }
}

// In `<table>_user` (see `Table::user_table`). sqlx turns SQLite's foreign keys on for its
// connections, so deleting a session deletes its entry.
super::sql::sql_user_index!(
    SqliteStore,
    writer: writer,
    bind: django_datetime,
    read: |row: &sqlx::sqlite::SqliteRow, i: usize| -> Result<OffsetDateTime, sqlx::Error> {
        let text: String = row.try_get(i)?;
        parse_django_datetime(&text)
            .ok_or_else(|| sqlx::Error::Decode(format!("unreadable datetime `{text}`").into()))
    }
);

#[async_trait]
impl ClearExpired for SqliteStore {
    async fn clear_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        clear_in_batches(|| self.clear_expired_batch(now)).await
    }

    async fn clear_expired_batch(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.q.clear)
            .bind(django_datetime(now))
            .execute(&self.writer)
            .await
            .map_err(|e| store_error(&self.table, e))?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl Scan for SqliteStore {
    async fn scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Batch, StoreError> {
        let t = self.table.name();
        let limit = scan_limit(limit);
        let rows = sqlx::query(&format!(
            r#"SELECT session_data, expire_date, session_key FROM "{t}" WHERE session_key > ?1 AND expire_date > ?2 ORDER BY session_key LIMIT ?3"#
        ))
        .bind(cursor.unwrap_or(""))
        .bind(django_datetime(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error(&self.table, e))?;
        scan_batch(&rows, limit, |row| {
            let key: String = row.try_get(2).map_err(|e| store_error(&self.table, e))?;
            Ok((key, self.record(row)?))
        })
    }

    async fn count(&self, now: OffsetDateTime) -> Result<Counts, StoreError> {
        let t = self.table.name();
        let (live, expired): (i64, i64) = sqlx::query_as(&format!(
            r#"SELECT COALESCE(SUM(expire_date > ?1), 0), COALESCE(SUM(expire_date <= ?1), 0) FROM "{t}""#
        ))
        .bind(django_datetime(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| store_error(&self.table, e))?;
        Ok(Counts {
            live: u64::try_from(live).unwrap_or(0),
            expired: u64::try_from(expired).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn datetimes_are_djangos_sqlite_text() {
        assert_eq!(
            django_datetime(datetime!(2025-01-15 00:00:00.25 UTC)),
            "2025-01-15 00:00:00.250000"
        );
        assert_eq!(
            django_datetime(datetime!(2099-01-01 00:00:00 UTC)),
            "2099-01-01 00:00:00"
        );
        assert_eq!(
            django_datetime(datetime!(0987-12-31 23:59:09.000001 +01:00)),
            "0987-12-31 22:59:09.000001"
        );
        assert_eq!(
            parse_django_datetime("2025-01-15 00:00:00.250000"),
            Some(datetime!(2025-01-15 00:00:00.25 UTC))
        );
    }
}
