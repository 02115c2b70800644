//! The `db` engine on MySQL and MariaDB, in Django's `django_session` layout so that a Django
//! app and a cloakroom app can share one table.
//!
//! `expire_date` is `datetime(6)` holding the naive UTC wall clock, as Django writes it; the
//! engine binds and reads UTC `PrimitiveDateTime`s, so the connection's `time_zone` does not
//! matter.
//!
//! Two MySQL habits the compare-and-swap must not fall for:
//! - Django sets no collation, so `session_data` usually gets the database default, which is
//!   case-insensitive and often `PAD SPACE`: with a plain `=`, a stale `{"a":"X"}` would match
//!   a stored `{"a":"x"}` and overwrite it. The update compares the data as bytes instead.
//! - MySQL counts *changed* rows as "affected" unless the client sets `CLIENT_FOUND_ROWS`; then
//!   an update writing the very same data and expiry would look like a lost race. sqlx always
//!   sets that flag, so `rows_affected` counts matched rows (pinned by a test).
//!
//! Pool defaults, chosen for a store that sits on every request's path:
//! - at most 10 connections, one kept open;
//! - a 3 s acquire timeout (sqlx's is 30 s), so an exhausted pool fails within the core's
//!   default `store_timeout` instead of queueing requests;
//! - a connection idle for more than 10 s is pinged before use (sqlx pings before *every* use
//!   by default, a round trip per query), and so is one that was idle when a query last failed
//!   on what may be a dead connection: after a server restart only the request that met the
//!   first dead connection fails, and the rest are replaced as they are taken;
//! - idle connections close after 10 min, well inside the server's `wait_timeout`, and every
//!   connection is recycled after 30 min;
//! - sqlx's prepared-statement cache (100 statements per connection; set
//!   `?statement-cache-capacity=` in the URL to change it);
//! - sqlx's session settings: `utf8mb4` names and `time_zone = '+00:00'`.
//!
//! Build your own pool and pass it to [`MySqlStore::new`] to choose otherwise.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlRow};
use sqlx::{MySqlPool, Row};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::sql::{
    clear_in_batches, connect_pool, data_digest, guarded_write, scan_batch, scan_limit, Breakage,
    Table, CLEAR_BATCH,
};
use crate::error::{ConfigError, OpenError, StoreError};
use crate::store::{
    Batch, ClearExpired, Counts, Created, Record, Scan, SessionStore, Updated, UserIndex,
};

const ENGINE: &str = "mysql";

/// `ER_NO_SUCH_TABLE`: "Table 'db.t' doesn't exist" (SQLSTATE 42S02).
const ER_NO_SUCH_TABLE: u16 = 1146;
/// `ER_DUP_KEYNAME`: the index already exists (another server migrated at the same time).
const ER_DUP_KEYNAME: u16 = 1061;

/// Sessions in a MySQL or MariaDB table.
#[derive(Clone, Debug)]
pub struct MySqlStore {
    pool: MySqlPool,
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
                "SELECT session_data, expire_date FROM `{t}` WHERE session_key = ? AND expire_date > ?"
            ),
            create: format!(
                "INSERT INTO `{t}` (session_key, session_data, expire_date) VALUES (?, ?, ?)"
            ),
            // Both sides as utf8mb4 bytes: no case folding, no PAD SPACE, whatever the
            // column's charset and collation (see the module docs).
            update: format!(
                "UPDATE `{t}` SET session_data = ?, expire_date = ? WHERE session_key = ? \
                 AND CAST(CONVERT(session_data USING utf8mb4) AS BINARY) = CAST(CONVERT(? USING utf8mb4) AS BINARY) \
                 AND expire_date > ?"
            ),
            // The server hashes the data it holds (as utf8mb4 bytes, as above) and compares it
            // with the caller's hex digest: the session travels neither way, is not rewritten.
            touch: format!(
                "UPDATE `{t}` SET expire_date = ? WHERE session_key = ? \
                 AND SHA2(CONVERT(session_data USING utf8mb4), 256) = ? AND expire_date > ?"
            ),
            delete: format!("DELETE FROM `{t}` WHERE session_key = ?"),
            exists: format!("SELECT 1 FROM `{t}` WHERE session_key = ?"),
            // Oldest first along the expiry index; single-table DELETE takes a LIMIT directly.
            clear: format!(
                "DELETE FROM `{t}` WHERE expire_date < ? ORDER BY expire_date LIMIT {CLEAR_BATCH}"
            ),
            count: format!("SELECT COUNT(*) FROM `{t}` WHERE expire_date > ?"),
            link: format!(
                "INSERT INTO `{t}_user` (session_key, user_id, created, last_seen, expire_date, user_agent, ip) \
                 SELECT ?, ?, ?, ?, ?, ?, ? FROM DUAL WHERE EXISTS (SELECT 1 FROM `{t}` WHERE session_key = ?) \
                 ON DUPLICATE KEY UPDATE user_id = VALUES(user_id), last_seen = VALUES(last_seen), \
                 expire_date = VALUES(expire_date), user_agent = VALUES(user_agent), ip = VALUES(ip)"
            ),
            unlink: format!("DELETE FROM `{t}_user` WHERE user_id = ? AND session_key = ?"),
            sessions_of: format!(
                "SELECT u.session_key, u.user_id, u.created, u.last_seen, s.expire_date, u.user_agent, u.ip \
                 FROM `{t}_user` u JOIN `{t}` s ON s.session_key = u.session_key \
                 WHERE u.user_id = ? AND s.expire_date > ? ORDER BY u.created DESC, u.session_key"
            ),
            revoke: format!(
                "DELETE FROM `{t}` WHERE session_key IN (SELECT session_key FROM `{t}_user` WHERE user_id = ? AND session_key = ?)"
            ),
        }
    }
}

/// An instant as `expire_date` holds it: the naive UTC wall clock.
fn utc_wall_clock(at: OffsetDateTime) -> PrimitiveDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    PrimitiveDateTime::new(at.date(), at.time())
}

fn error_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

fn store_error(table: &Table, e: sqlx::Error) -> StoreError {
    if error_number(&e) == Some(ER_NO_SUCH_TABLE) {
        return StoreError::MissingTable {
            table: table.name().to_owned(),
        };
    }
    StoreError::backend(ENGINE, e)
}

impl MySqlStore {
    /// Connects to the MySQL or MariaDB database at `url` (`mysql://user:pass@host/db`;
    /// `mariadb://` is accepted too) with the pool defaults in the [module docs](self), and
    /// keeps sessions in the default table.
    ///
    /// # Errors
    /// [`OpenError::Config`] naming `database_url` when the URL is malformed,
    /// [`OpenError::Store`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        // sqlx reads host, user and options from the URL and ignores its scheme.
        let options = MySqlConnectOptions::from_str(url).map_err(|e| ConfigError::Rejected {
            setting: "database_url",
            source: e.into(),
        })?;
        let (pool, breakage) = connect_pool(ENGINE, options).await?;
        Ok(Self::build(pool, crate::config::DEFAULT_TABLE, breakage)?)
    }

    /// Sessions in `table` of an existing pool.
    ///
    /// The pool's own acquire checks apply: the ping of connections that were idle when a
    /// query last failed (see the module docs) comes with the pool [`connect`](Self::connect)
    /// builds. Set `test_before_acquire` on yours for a quick recovery after a server restart.
    ///
    /// The pool must be sqlx's (which sets `CLIENT_FOUND_ROWS`; see the module docs).
    ///
    /// # Errors
    /// [`OpenError::Config`] when `table` is not a plain identifier.
    pub fn new(pool: MySqlPool, table: &str) -> Result<Self, OpenError> {
        // A pool built elsewhere has its own acquire checks; nothing consults this one.
        Ok(Self::build(pool, table, Breakage::default())?)
    }

    fn build(pool: MySqlPool, table: &str, breakage: Breakage) -> Result<Self, ConfigError> {
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
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Creates the table and its expiry index unless they exist, exactly as Django's
    /// `sessions.0001_initial` does, and the user index table beside it
    /// ([`Table::user_table`]), which Django never reads
    /// (idempotent, and safe to run from several servers at once).
    ///
    /// The table takes the database's default charset and collation, as Django's does.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database refuses.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let t = self.table.name();
        let index = self.table.expiry_index();
        let fail = |e| self.error(e);
        let create_table = format!(
            "CREATE TABLE IF NOT EXISTS `{t}` (`session_key` varchar(40) NOT NULL PRIMARY KEY, `session_data` longtext NOT NULL, `expire_date` datetime(6) NOT NULL)"
        );
        sqlx::query(&create_table)
            .execute(&self.pool)
            .await
            .map_err(fail)?;
        // MySQL 8 has no CREATE INDEX IF NOT EXISTS (MariaDB does): look first.
        let has_index: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?",
        )
        .bind(t)
        .bind(&index)
        .fetch_one(&self.pool)
        .await
        .map_err(fail)?;
        if has_index == 0 {
            let create_index = format!("CREATE INDEX `{index}` ON `{t}` (`expire_date`)");
            match sqlx::query(&create_index).execute(&self.pool).await {
                Ok(_) => {}
                // Another server created it between our look and our CREATE.
                Err(e) if error_number(&e) == Some(ER_DUP_KEYNAME) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        // The user index, its `user_id` index inline (no look-first needed).
        let users = self.table.user_table();
        let user_index = self.table.user_id_index();
        let create_users = format!(
            "CREATE TABLE IF NOT EXISTS `{users}` (`session_key` varchar(40) NOT NULL PRIMARY KEY, \
             `user_id` varchar(255) NOT NULL, `created` datetime(6) NOT NULL, \
             `last_seen` datetime(6) NOT NULL, `expire_date` datetime(6) NOT NULL, \
             `user_agent` varchar(512) NULL, `ip` varchar(64) NULL, \
             KEY `{user_index}` (`user_id`), \
             CONSTRAINT `{users}_session_fk` FOREIGN KEY (`session_key`) REFERENCES `{t}` (`session_key`) ON DELETE CASCADE)"
        );
        sqlx::query(&create_users)
            .execute(&self.pool)
            .await
            .map_err(fail)?;
        Ok(())
    }

    /// How many live sessions the table holds.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub async fn count_live(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&self.q.count)
            .bind(utc_wall_clock(now))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn record(&self, row: &MySqlRow) -> Result<Record, StoreError> {
        let data: String = row.try_get(0).map_err(|e| self.error(e))?;
        let expire: PrimitiveDateTime = row.try_get(1).map_err(|e| self.error(e))?;
        Ok(Record {
            data,
            expires_at: expire.assume_utc(),
        })
    }
}

#[async_trait]
impl SessionStore for MySqlStore {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(&self.q.load)
            .bind(key)
            .bind(utc_wall_clock(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        row.map(|row| self.record(&row)).transpose()
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let result = sqlx::query(&self.q.create)
            .bind(key)
            .bind(&record.data)
            .bind(utc_wall_clock(record.expires_at))
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
            .bind(utc_wall_clock(record.expires_at))
            .bind(key)
            .bind(expected)
            .bind(utc_wall_clock(now))
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        // Matched rows, not changed rows: sqlx connects with CLIENT_FOUND_ROWS.
        guarded_write(done.rows_affected(), self.load(key, now)).await
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let digest: String = data_digest(&record.data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let done = sqlx::query(&self.q.touch)
            .bind(utc_wall_clock(record.expires_at))
            .bind(key)
            .bind(digest)
            .bind(utc_wall_clock(now))
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

// In `<table>_user` (see `Table::user_table`); InnoDB enforces its foreign key.
super::sql::sql_user_index!(
    MySqlStore,
    writer: pool,
    bind: utc_wall_clock,
    read: |row: &MySqlRow, i: usize| {
        row.try_get::<PrimitiveDateTime, _>(i)
            .map(PrimitiveDateTime::assume_utc)
    }
);

#[async_trait]
impl ClearExpired for MySqlStore {
    async fn clear_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        clear_in_batches(|| self.clear_expired_batch(now)).await
    }

    async fn clear_expired_batch(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.q.clear)
            .bind(utc_wall_clock(now))
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl Scan for MySqlStore {
    async fn scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Batch, StoreError> {
        let t = self.table.name();
        let limit = scan_limit(limit);
        let rows = sqlx::query(&format!(
            "SELECT session_data, expire_date, session_key FROM `{t}` WHERE session_key > ? AND expire_date > ? ORDER BY session_key LIMIT ?"
        ))
        .bind(cursor.unwrap_or(""))
        .bind(utc_wall_clock(now))
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
            "SELECT CAST(COALESCE(SUM(expire_date > ?), 0) AS SIGNED), CAST(COALESCE(SUM(expire_date <= ?), 0) AS SIGNED) FROM `{t}`"
        ))
        .bind(utc_wall_clock(now))
        .bind(utc_wall_clock(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        Ok(Counts {
            live: u64::try_from(live).unwrap_or(0),
            expired: u64::try_from(expired).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    #[test]
    fn expiry_is_the_utc_wall_clock() {
        assert_eq!(
            utc_wall_clock(datetime!(2025-01-15 02:00:00.25 +02:00)),
            time::macros::datetime!(2025-01-15 00:00:00.25)
        );
        assert_eq!(
            utc_wall_clock(datetime!(2025-01-15 00:00:00 UTC).to_offset(offset!(-05:00))),
            time::macros::datetime!(2025-01-15 00:00:00)
        );
    }
}
