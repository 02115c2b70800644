//! One store for the server SQL engines, written once here and generic over its dialect
//! ([`Dialect`] in `driver.rs`; `postgres.rs`, `mysql.rs`), which gives what differs.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Database;
use time::OffsetDateTime;

use super::driver::{Arg, Dialect, Driver as _, Failure};
use super::pool::{connect_pool, Breakage, Pool, ServerOptions};
use super::{data_digest, guarded_write, Queries, Table};
use crate::error::{ConfigError, OpenError, StoreError};
use crate::store::{Created, Record, SessionStore, Updated, UserSession};
use crate::users::{IndexEntries, IndexEntry};

#[cfg(feature = "postgres")]
mod announce;
mod lock;
mod many;
mod walk;

pub use many::CreateMany;

/// The connections of a server store's pool ([`SqlStore::pool_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// Connections open, idle or in use.
    pub size: u32,
    /// Connections open and idle.
    pub idle: usize,
}

/// Sessions in a table of a server SQL database: [`PostgresStore`](super::super::postgres::PostgresStore)
/// and [`MySqlStore`](super::super::mysql::MySqlStore) are this store with their dialect.
pub struct SqlStore<D: Dialect> {
    pool: Pool<D::Db>,
    table: Table,
    q: Arc<Queries>,
    /// Failures that may have killed pooled connections (see [`Breakage`]).
    breakage: Breakage,
    dialect: PhantomData<D>,
}

// By hand: a derive would ask `Clone` and `Debug` of the driver's database type too.
impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            table: self.table.clone(),
            q: Arc::clone(&self.q),
            breakage: self.breakage.clone(),
            dialect: PhantomData,
        }
    }
}

impl<D: Dialect> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("engine", &D::ENGINE)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Connects to the database at `url` with the pool defaults of [`ServerOptions`], and
    /// keeps sessions in the default table.
    ///
    /// # Errors
    /// [`OpenError::Config`] naming `database_url` when the URL is malformed,
    /// [`OpenError::Store`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        Self::connect_with(url, &ServerOptions::default()).await
    }

    /// Connects to the database at `url` with the pool `options`, and keeps sessions in the
    /// default table.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(url: &str, options: &ServerOptions) -> Result<Self, OpenError> {
        let connect = D::connect_options(url, options).map_err(|e| ConfigError::Rejected {
            setting: "database_url",
            source: e.into(),
        })?;
        let (pool, breakage) = connect_pool(D::ENGINE, connect, options).await?;
        Ok(Self::build(pool, crate::config::DEFAULT_TABLE, breakage)?)
    }

    fn build(pool: Pool<D::Db>, table: &str, breakage: Breakage) -> Result<Self, ConfigError> {
        let table = Table::new(table)?;
        Ok(Self {
            q: Arc::new(Queries::new(&table, D::FLAVOR)),
            pool,
            table,
            breakage,
            dialect: PhantomData,
        })
    }

    /// The same database, another table.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `table` is not a plain identifier.
    pub fn with_table(self, table: &str) -> Result<Self, ConfigError> {
        Self::build(self.pool, table, self.breakage)
    }

    /// Creates the table and its indexes unless they exist, exactly as Django's
    /// `sessions.0001_initial` does, and the user index table beside it
    /// ([`Table::user_table`]), which Django never reads (idempotent, and safe to run from
    /// several servers at once).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database refuses.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await.map_err(|e| self.error(e))?;
        D::migrate(conn.raw(), &self.table)
            .await
            .map_err(|e| self.error(e))?;
        conn.release();
        Ok(())
    }

    /// How many live sessions the table holds.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub async fn count_live(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let row = self.one(&self.q.count, [Arg::At(now)]).await?;
        let n = D::Db::int(&row, 0).map_err(|e| self.error(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The pool's connections, open and idle (for health checks and metrics).
    pub fn pool_status(&self) -> PoolStatus {
        let (size, idle) = self.pool.status();
        PoolStatus { size, idle }
    }

    /// A failed statement's error, noted for the pool's acquire checks.
    fn error(&self, e: sqlx::Error) -> StoreError {
        self.breakage.saw(&e);
        match &e {
            sqlx::Error::Database(db) if D::failure(db.as_ref()) == Failure::MissingTable => {
                StoreError::MissingTable {
                    table: self.table.name().to_owned(),
                }
            }
            _ => StoreError::backend(D::ENGINE, e),
        }
    }

    /// A failed index statement's error; a missing table is the index table (a store migrated
    /// before the index existed), named so `migrate` is the evident fix.
    fn index_error(&self, e: sqlx::Error) -> StoreError {
        match self.error(e) {
            StoreError::MissingTable { .. } => StoreError::MissingTable {
                table: self.table.user_table(),
            },
            other => other,
        }
    }

    /// Runs a statement; the rows it matched, or the driver's error.
    async fn run<'q>(
        &'q self,
        sql: &'q str,
        args: impl IntoIterator<Item = Arg<'q>>,
    ) -> Result<u64, sqlx::Error> {
        let mut conn = self.pool.get().await?;
        let done = D::Db::execute(conn.raw(), D::Db::query::<D>(sql, args)).await?;
        conn.release();
        Ok(D::rows_affected(&done))
    }

    /// Runs a query for at most one row.
    async fn optional<'q>(
        &'q self,
        sql: &'q str,
        args: impl IntoIterator<Item = Arg<'q>>,
    ) -> Result<Option<<D::Db as Database>::Row>, sqlx::Error> {
        let mut conn = self.pool.get().await?;
        let row = D::Db::fetch_optional(conn.raw(), D::Db::query::<D>(sql, args)).await?;
        conn.release();
        Ok(row)
    }

    async fn one<'q>(
        &'q self,
        sql: &'q str,
        args: impl IntoIterator<Item = Arg<'q>>,
    ) -> Result<<D::Db as Database>::Row, StoreError> {
        self.optional(sql, args)
            .await
            .map_err(|e| self.error(e))?
            .ok_or_else(|| self.error(sqlx::Error::RowNotFound))
    }

    async fn all<'q>(
        &'q self,
        sql: &'q str,
        args: impl IntoIterator<Item = Arg<'q>>,
    ) -> Result<Vec<<D::Db as Database>::Row>, sqlx::Error> {
        let mut conn = self.pool.get().await?;
        let rows = D::Db::fetch_all(conn.raw(), D::Db::query::<D>(sql, args)).await?;
        conn.release();
        Ok(rows)
    }

    /// A session row's record: `session_data` at column `at`, `expire_date` after it.
    fn record(&self, row: &<D::Db as Database>::Row, at: usize) -> Result<Record, StoreError> {
        Ok(Record {
            data: D::Db::text(row, at).map_err(|e| self.error(e))?.into(),
            expires_at: D::read_at(row, at + 1).map_err(|e| self.error(e))?,
        })
    }
}

#[async_trait]
impl<D: Dialect> SessionStore for SqlStore<D> {
    fn engine(&self) -> &'static str {
        D::ENGINE
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        let row = self
            .optional(&self.q.load, [Arg::Text(key), Arg::At(now)])
            .await
            .map_err(|e| self.error(e))?;
        row.map(|row| self.record(&row, 0)).transpose()
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let args = [
            Arg::Text(key),
            Arg::Text(crate::text_of(D::ENGINE, &record.data)?),
            Arg::At(record.expires_at),
        ];
        match self.run(&self.q.create, args).await {
            Ok(_) => Ok(Created::Stored),
            Err(sqlx::Error::Database(e)) if D::failure(e.as_ref()) == Failure::Duplicate => {
                Ok(Created::Taken)
            }
            Err(e) => Err(self.error(e)),
        }
    }

    async fn update(
        &self,
        key: &str,
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let args = [
            Arg::Text(crate::text_of(D::ENGINE, &record.data)?),
            Arg::At(record.expires_at),
            Arg::Text(key),
            Arg::Text(crate::text_of(D::ENGINE, expected)?),
            Arg::At(now),
        ];
        // MySQL counts matched rows, not changed ones: sqlx connects with CLIENT_FOUND_ROWS.
        let rows = self.run(&self.q.update, args).await;
        guarded_write(rows.map_err(|e| self.error(e))?, self.load(key, now)).await
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let digest = data_digest(&record.data);
        let args = [
            Arg::At(record.expires_at),
            Arg::Text(key),
            Arg::Digest(&digest),
            Arg::At(now),
        ];
        let rows = self.run(&self.q.touch, args).await;
        guarded_write(rows.map_err(|e| self.error(e))?, self.load(key, now)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.run(&self.q.delete, [Arg::Text(key)])
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}

/// The index entries in `<table>_user` (see [`Table::user_table`]); the rules of the index
/// are the core's (`cloakroom_core::users`):
/// - `put` inserts only while the session row exists and keeps an existing row's `created`,
///   in one statement; a session deleted meanwhile (a foreign key violation) is simply not
///   linked.
/// - `entries` joins the live session row, whose own `expire_date` is reported (Django may
///   have saved the session since its last link): dead entries never leave the database, and
///   the foreign key's `ON DELETE CASCADE` takes them along with their sessions.
/// - `delete_held` deletes the session row only if the index says it is this user's, in one
///   statement.
#[async_trait]
impl<D: Dialect> IndexEntries for SqlStore<D> {
    async fn put(&self, entry: &UserSession) -> Result<(), StoreError> {
        let args = [
            Arg::Text(&entry.id),
            Arg::Text(&entry.user_id),
            Arg::At(entry.created_at),
            Arg::At(entry.last_seen),
            Arg::At(entry.expires_at),
            Arg::MaybeText(entry.user_agent.as_deref()),
            Arg::MaybeText(entry.ip.as_deref()),
            Arg::Text(&entry.id),
        ];
        match self.run(&self.q.link, args).await {
            Err(sqlx::Error::Database(e)) if D::failure(e.as_ref()) == Failure::ForeignKey => {
                Ok(())
            }
            other => other.map(drop).map_err(|e| self.index_error(e)),
        }
    }

    async fn remove(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        self.run(&self.q.unlink, [Arg::Text(user_id), Arg::Text(id)])
            .await
            .map_err(|e| self.index_error(e))?;
        Ok(())
    }

    async fn entries(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let fail = |e| self.index_error(e);
        let rows = self
            .all(&self.q.sessions_of, [Arg::Text(user_id), Arg::At(now)])
            .await
            .map_err(fail)?;
        rows.iter()
            .map(|row| {
                Ok(IndexEntry::Found(UserSession {
                    id: D::Db::text(row, 0).map_err(fail)?,
                    user_id: D::Db::text(row, 1).map_err(fail)?,
                    created_at: D::read_at(row, 2).map_err(fail)?,
                    last_seen: D::read_at(row, 3).map_err(fail)?,
                    expires_at: D::read_at(row, 4).map_err(fail)?,
                    user_agent: D::Db::maybe_text(row, 5).map_err(fail)?,
                    ip: D::Db::maybe_text(row, 6).map_err(fail)?,
                }))
            })
            .collect()
    }

    async fn holds(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let rows = self
            .all(&self.q.holds, [Arg::Text(user_id), Arg::Text(id)])
            .await
            .map_err(|e| self.index_error(e))?;
        Ok(!rows.is_empty())
    }

    async fn delete_held(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        self.run(&self.q.revoke, [Arg::Text(user_id), Arg::Text(id)])
            .await
            .map_err(|e| self.index_error(e))?;
        Ok(())
    }
}
