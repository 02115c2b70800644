//! The `db` engine on PostgreSQL, in Django's `django_session` layout so that a Django app and
//! a cloakroom app can share one table.
//!
//! `expire_date` is `timestamp with time zone`, so instants round-trip whatever the server's or
//! the connection's `TimeZone` is. The compare-and-swap compares `session_data` with `=`, which
//! is byte-for-byte under PostgreSQL's (deterministic) collations.
//!
//! Pool defaults, chosen for a store that sits on every request's path:
//! - at most 10 connections, one kept open;
//! - a 3 s acquire timeout (sqlx's is 30 s), so an exhausted pool fails within the core's
//!   default `store_timeout` instead of queueing requests;
//! - a connection idle for more than 10 s is pinged before use (sqlx pings before *every* use
//!   by default, a round trip per query), and so is one that was idle when a query last failed
//!   on what may be a dead connection: after a server restart only the request that met the
//!   first dead connection fails, and the rest are replaced as they are taken;
//! - idle connections close after 10 min and every connection is recycled after 30 min, to
//!   follow failovers;
//! - sqlx's prepared-statement cache (100 statements per connection; set
//!   `?statement-cache-capacity=` in the URL to change it), so each query is parsed once per
//!   connection;
//! - `application_name = cloakroom` unless the URL or `PGAPPNAME` names one, so the sessions'
//!   connections are recognisable in `pg_stat_activity`.
//!
//! Build your own pool and pass it to [`PostgresStore::new`] to choose otherwise.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use super::sql::{
    clear_in_batches, connect_pool, data_digest, guarded_write, scan_batch, scan_limit, Breakage,
    Table, CLEAR_BATCH,
};
use crate::error::{ConfigError, OpenError, StoreError};
use crate::store::{
    Batch, ClearExpired, Counts, Created, Record, Scan, SessionStore, Updated, UserIndex,
};

const ENGINE: &str = "postgres";

/// PostgreSQL's SQLSTATE for "relation does not exist" (`undefined_table`).
const UNDEFINED_TABLE: &str = "42P01";

/// The advisory lock `migrate` holds, so that app servers migrating at once do not race on
/// `CREATE TABLE IF NOT EXISTS` (which is not safe under concurrency in PostgreSQL).
/// The bytes spell "cloakroo".
const MIGRATE_LOCK: i64 = 0x636c_6f61_6b72_6f6f;

/// Sessions in a PostgreSQL table.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    table: Table,
    q: Queries,
    /// Failures that may have killed pooled connections (see [`Breakage`]).
    breakage: Breakage,
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
                r#"SELECT session_data, expire_date FROM "{t}" WHERE session_key = $1 AND expire_date > $2"#
            ),
            create: format!(
                r#"INSERT INTO "{t}" (session_key, session_data, expire_date) VALUES ($1, $2, $3)"#
            ),
            update: format!(
                r#"UPDATE "{t}" SET session_data = $1, expire_date = $2 WHERE session_key = $3 AND session_data = $4 AND expire_date > $5"#
            ),
            // The server hashes the data it holds and compares it with the caller's digest: the
            // session travels neither way and is not rewritten. `convert_to` hashes the UTF-8
            // bytes whatever the database encoding.
            touch: format!(
                r#"UPDATE "{t}" SET expire_date = $1 WHERE session_key = $2 AND sha256(convert_to(session_data, 'UTF8')) = $3 AND expire_date > $4"#
            ),
            delete: format!(r#"DELETE FROM "{t}" WHERE session_key = $1"#),
            exists: format!(r#"SELECT 1 FROM "{t}" WHERE session_key = $1"#),
            clear: format!(
                r#"DELETE FROM "{t}" WHERE session_key IN (SELECT session_key FROM "{t}" WHERE expire_date < $1 LIMIT {CLEAR_BATCH})"#
            ),
            count: format!(r#"SELECT COUNT(*) FROM "{t}" WHERE expire_date > $1"#),
            link: format!(
                r#"INSERT INTO "{t}_user" (session_key, user_id, created, last_seen, expire_date, user_agent, ip)
SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM "{t}" WHERE session_key = $8)
ON CONFLICT (session_key) DO UPDATE SET user_id = EXCLUDED.user_id, last_seen = EXCLUDED.last_seen, expire_date = EXCLUDED.expire_date, user_agent = EXCLUDED.user_agent, ip = EXCLUDED.ip"#
            ),
            unlink: format!(r#"DELETE FROM "{t}_user" WHERE user_id = $1 AND session_key = $2"#),
            sessions_of: format!(
                r#"SELECT u.session_key, u.user_id, u.created, u.last_seen, s.expire_date, u.user_agent, u.ip FROM "{t}_user" u JOIN "{t}" s ON s.session_key = u.session_key WHERE u.user_id = $1 AND s.expire_date > $2 ORDER BY u.created DESC, u.session_key"#
            ),
            revoke: format!(
                r#"DELETE FROM "{t}" WHERE session_key IN (SELECT session_key FROM "{t}_user" WHERE user_id = $1 AND session_key = $2)"#
            ),
        }
    }
}

/// The name of the `varchar_pattern_ops` index PostgreSQL gets for a varchar primary key:
/// Django's own for `django_session` (so both `migrate`s make the same table), a readable one
/// otherwise.
pub fn like_index(table: &Table) -> String {
    if table.name() == "django_session" {
        "django_session_session_key_c0390e0f_like".to_owned()
    } else {
        format!("{}_session_key_like", table.name())
    }
}

fn store_error(table: &Table, e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.code().as_deref() == Some(UNDEFINED_TABLE) {
            return StoreError::MissingTable {
                table: table.name().to_owned(),
            };
        }
    }
    StoreError::backend(ENGINE, e)
}

impl PostgresStore {
    /// Connects to the PostgreSQL database at `url` (`postgres://user@host/db`) with the pool
    /// defaults in the [module docs](self), and keeps sessions in the default table.
    ///
    /// # Errors
    /// [`OpenError::Config`] naming `database_url` when the URL is malformed,
    /// [`OpenError::Store`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        let mut options = PgConnectOptions::from_str(url).map_err(|e| ConfigError::Rejected {
            setting: "database_url",
            source: e.into(),
        })?;
        if options.get_application_name().is_none() {
            options = options.application_name("cloakroom");
        }
        let (pool, breakage) = connect_pool(ENGINE, options).await?;
        Ok(Self::build(pool, crate::config::DEFAULT_TABLE, breakage)?)
    }

    /// Sessions in `table` of an existing pool.
    ///
    /// The pool's own acquire checks apply: the ping of connections that were idle when a
    /// query last failed (see the module docs) comes with the pool [`connect`](Self::connect)
    /// builds. Set `test_before_acquire` on yours for a quick recovery after a server restart.
    ///
    /// # Errors
    /// [`OpenError::Config`] when `table` is not a plain identifier.
    pub fn new(pool: PgPool, table: &str) -> Result<Self, OpenError> {
        // A pool built elsewhere has its own acquire checks; nothing consults this one.
        Ok(Self::build(pool, table, Breakage::default())?)
    }

    fn build(pool: PgPool, table: &str, breakage: Breakage) -> Result<Self, ConfigError> {
        let table = Table::new(table)?;
        Ok(Self {
            q: Queries::new(table.name()),
            pool,
            table,
            breakage,
        })
    }

    /// The same database, another table.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `table` is not a plain identifier.
    pub fn with_table(self, table: &str) -> Result<Self, ConfigError> {
        Self::build(self.pool, table, self.breakage)
    }

    /// A failed query's error, noted for the pool's acquire checks.
    fn error(&self, e: sqlx::Error) -> StoreError {
        self.breakage.saw(&e);
        store_error(&self.table, e)
    }

    /// The pool, for the application's own queries.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the table and its indexes unless they exist, exactly as Django's
    /// `sessions.0001_initial` does, and the user index table beside it
    /// ([`Table::user_table`]), which Django never reads
    /// (idempotent, and safe to run from several servers at once).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database refuses.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let t = self.table.name();
        let like = like_index(&self.table);
        let expiry = self.table.expiry_index();
        let users = self.table.user_table();
        let user_index = self.table.user_id_index();
        let ddl = format!(
            r#"SELECT pg_advisory_xact_lock({MIGRATE_LOCK});
CREATE TABLE IF NOT EXISTS "{t}" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" timestamp with time zone NOT NULL);
CREATE INDEX IF NOT EXISTS "{like}" ON "{t}" ("session_key" varchar_pattern_ops);
CREATE INDEX IF NOT EXISTS "{expiry}" ON "{t}" ("expire_date");
CREATE TABLE IF NOT EXISTS "{users}" ("session_key" varchar(40) NOT NULL PRIMARY KEY REFERENCES "{t}" ("session_key") ON DELETE CASCADE, "user_id" varchar(255) NOT NULL, "created" timestamp with time zone NOT NULL, "last_seen" timestamp with time zone NOT NULL, "expire_date" timestamp with time zone NOT NULL, "user_agent" varchar(512) NULL, "ip" varchar(64) NULL);
CREATE INDEX IF NOT EXISTS "{user_index}" ON "{users}" ("user_id");"#
        );
        // One simple-query string runs as one implicit transaction: the advisory lock is held
        // until all of it has committed, and a failure leaves nothing half made.
        sqlx::raw_sql(&ddl)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// How many live sessions the table holds.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub async fn count_live(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&self.q.count)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn record(&self, row: &PgRow) -> Result<Record, StoreError> {
        let data: String = row.try_get(0).map_err(|e| self.error(e))?;
        let expires_at: OffsetDateTime = row.try_get(1).map_err(|e| self.error(e))?;
        Ok(Record { data, expires_at })
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(&self.q.load)
            .bind(key)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        row.map(|row| self.record(&row)).transpose()
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let result = sqlx::query(&self.q.create)
            .bind(key)
            .bind(&record.data)
            .bind(record.expires_at)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(Created::Stored),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(Created::Taken),
            Err(e) => Err(self.error(e)),
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
            .bind(record.expires_at)
            .bind(key)
            .bind(expected)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        guarded_write(done.rows_affected(), self.load(key, now)).await
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let done = sqlx::query(&self.q.touch)
            .bind(record.expires_at)
            .bind(key)
            .bind(&data_digest(&record.data)[..])
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        guarded_write(done.rows_affected(), self.load(key, now)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query(&self.q.delete)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(&self.q.exists)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.is_some())
    }

    fn users(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }
}

// In `<table>_user` (see `Table::user_table`).
super::sql::sql_user_index!(
    PostgresStore,
    writer: pool,
    bind: std::convert::identity::<OffsetDateTime>,
    read: |row: &PgRow, i: usize| row.try_get::<OffsetDateTime, _>(i)
);

#[async_trait]
impl ClearExpired for PostgresStore {
    async fn clear_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        clear_in_batches(|| self.clear_expired_batch(now)).await
    }

    async fn clear_expired_batch(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.q.clear)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl Scan for PostgresStore {
    async fn scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Batch, StoreError> {
        let t = self.table.name();
        let limit = scan_limit(limit);
        let rows = sqlx::query(&format!(
            r#"SELECT session_data, expire_date, session_key FROM "{t}" WHERE session_key > $1 AND expire_date > $2 ORDER BY session_key LIMIT $3"#
        ))
        .bind(cursor.unwrap_or(""))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        scan_batch(&rows, limit, |row| {
            let key: String = row.try_get(2).map_err(|e| self.error(e))?;
            Ok((key, self.record(row)?))
        })
    }

    async fn count(&self, now: OffsetDateTime) -> Result<Counts, StoreError> {
        let t = self.table.name();
        let (live, expired): (i64, i64) = sqlx::query_as(&format!(
            r#"SELECT COUNT(*) FILTER (WHERE expire_date > $1), COUNT(*) FILTER (WHERE expire_date <= $2) FROM "{t}""#
        ))
        .bind(now)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        Ok(Counts {
            live: u64::try_from(live).unwrap_or(0),
            expired: u64::try_from(expired).unwrap_or(0),
        })
    }
}
