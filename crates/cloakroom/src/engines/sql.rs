//! What the SQL engines share: the table's name rules and the statements' shape.
//!
//! Every SQL engine keeps Django's `django_session` layout, `session_key varchar(40)` primary
//! key, `session_data text` and `expire_date`, with an index on `expire_date`, so a table made
//! by Django works and the other way round.

use std::future::Future;

use crate::error::{ConfigError, StoreError};
use crate::store::{Batch, Record, Updated};

/// A checked table name: letters, digits and `_`, not starting with a digit, so it can be
/// quoted into statements safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table(String);

impl Table {
    /// Checks a table name.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the `table` setting.
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && !name.as_bytes()[0].is_ascii_digit()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(ConfigError::Invalid {
                setting: "table",
                reason: format!("`{name}` is not a plain table name (letters, digits, `_`)"),
            })
        }
    }

    /// The bare name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// The name of the index on `expire_date`: Django's own for `django_session`, so that a
    /// table made by `cloakroom migrate` matches one made by Django's `migrate`.
    pub fn expiry_index(&self) -> String {
        if self.0 == "django_session" {
            "django_session_expire_date_a5c62663".to_owned()
        } else {
            format!("{}_expire_date_idx", self.0)
        }
    }
}

/// The SHA-256 of session data as UTF-8, which a server engine's `touch` sends instead of the
/// data: the server hashes what it holds and compares (32 bytes on the wire, not the session).
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn data_digest(data: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data.as_bytes()).into()
}

impl Table {
    /// The user index beside the session table (`<table>_user`): one row per session linked
    /// to a user, `session_key` its primary key and a foreign key to the session table with
    /// `ON DELETE CASCADE`, so any delete of a session (ours, `clearsessions`, Django's own)
    /// takes its entry along.
    pub fn user_table(&self) -> String {
        format!("{}_user", self.0)
    }

    /// The name of the user index table's index on `user_id`.
    pub fn user_id_index(&self) -> String {
        format!("{}_user_user_id_idx", self.0)
    }
}

/// The [`UserIndex`](crate::store::UserIndex) of a SQL store, over `<table>_user`: written
/// once for the three engines, which differ only in their statements (the store's `q.link`,
/// `q.unlink`, `q.sessions_of`, `q.revoke`, each binding its parameters in the order below)
/// and in how an instant is bound (`$bind`) and read back (`$read`).
///
/// - `link` inserts only while the session row exists and keeps an existing row's `created`;
///   a session deleted meanwhile (a foreign key violation) is simply not linked.
/// - `sessions_of` joins the live session row, whose own `expire_date` is reported: Django
///   may have saved the session since its last link.
/// - `revoke` deletes the session row only if the index says it is this user's; the foreign
///   key's `ON DELETE CASCADE` takes the entry along (and `unlink` does, should a connection
///   run without foreign keys).
macro_rules! sql_user_index {
    ($store:ty, writer: $writer:ident, bind: $bind:expr, read: $read:expr) => {
        /// A failed index statement's error; a missing table is the index table (a store
        /// migrated before the index existed), named so `migrate` is the evident fix.
        fn index_error(table: &Table, e: sqlx::Error) -> StoreError {
            match store_error(table, e) {
                StoreError::MissingTable { .. } => StoreError::MissingTable {
                    table: table.user_table(),
                },
                other => other,
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::UserIndex for $store {
            async fn link(&self, entry: &$crate::store::UserSession) -> Result<(), StoreError> {
                let bind = $bind;
                let result = sqlx::query(&self.q.link)
                    .bind(&entry.id)
                    .bind(&entry.user_id)
                    .bind(bind(entry.created_at))
                    .bind(bind(entry.last_seen))
                    .bind(bind(entry.expires_at))
                    .bind(entry.user_agent.as_deref())
                    .bind(entry.ip.as_deref())
                    .bind(&entry.id)
                    .execute(&self.$writer)
                    .await;
                match result {
                    Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Ok(()),
                    other => other.map(drop).map_err(|e| index_error(&self.table, e)),
                }
            }

            async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
                sqlx::query(&self.q.unlink)
                    .bind(user_id)
                    .bind(id)
                    .execute(&self.$writer)
                    .await
                    .map_err(|e| index_error(&self.table, e))?;
                Ok(())
            }

            async fn sessions_of(
                &self,
                user_id: &str,
                now: time::OffsetDateTime,
            ) -> Result<Vec<$crate::store::UserSession>, StoreError> {
                use sqlx::Row as _;
                let fail = |e| index_error(&self.table, e);
                let read = $read;
                let rows = sqlx::query(&self.q.sessions_of)
                    .bind(user_id)
                    .bind(($bind)(now))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(fail)?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::UserSession {
                            id: row.try_get(0).map_err(fail)?,
                            user_id: row.try_get(1).map_err(fail)?,
                            created_at: read(row, 2).map_err(fail)?,
                            last_seen: read(row, 3).map_err(fail)?,
                            expires_at: read(row, 4).map_err(fail)?,
                            user_agent: row.try_get(5).map_err(fail)?,
                            ip: row.try_get(6).map_err(fail)?,
                        })
                    })
                    .collect()
            }

            async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
                sqlx::query(&self.q.revoke)
                    .bind(user_id)
                    .bind(id)
                    .execute(&self.$writer)
                    .await
                    .map_err(|e| index_error(&self.table, e))?;
                $crate::store::UserIndex::unlink(self, user_id, id).await
            }
        }
    };
}
pub(crate) use sql_user_index;

/// How many rows `clearsessions` deletes per statement, so a large purge never holds a long lock.
pub const CLEAR_BATCH: i64 = 5_000;

/// The answer of a guarded write (`update`, `touch`: `... WHERE session_key = ? AND <the data
/// is as the caller saw it> AND expire_date > now`) that matched `rows` rows.
///
/// One row: it is written. None: the compare-and-swap lost, and `reload` (the engine's `load`)
/// tells the core what is there now, the current record or nothing; one more round trip, paid
/// only under contention.
pub(crate) async fn guarded_write(
    rows: u64,
    reload: impl Future<Output = Result<Option<Record>, StoreError>>,
) -> Result<Updated, StoreError> {
    if rows == 1 {
        return Ok(Updated::Stored);
    }
    Ok(match reload.await? {
        Some(current) => Updated::Conflict(current),
        None => Updated::Missing,
    })
}

/// Runs `batch` (one short `DELETE ... LIMIT` [`CLEAR_BATCH`], its own transaction) until a
/// batch deletes fewer than that, so a large purge never holds many row locks or a long
/// transaction; returns how many went.
pub(crate) async fn clear_in_batches<F: Future<Output = Result<u64, StoreError>>>(
    mut batch: impl FnMut() -> F,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let deleted = batch().await?;
        total += deleted;
        if deleted < CLEAR_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// The `LIMIT` of a scan query for a requested batch size (at least 1).
pub(crate) fn scan_limit(limit: usize) -> i64 {
    i64::try_from(limit.max(1)).unwrap_or(i64::MAX)
}

/// The batch of a scan query (`... WHERE session_key > cursor AND expire_date > now ORDER BY
/// session_key LIMIT limit`): its rows decoded, and the last key as the next cursor when the
/// query filled its limit (so more rows may follow).
pub(crate) fn scan_batch<R>(
    rows: &[R],
    limit: i64,
    decode: impl Fn(&R) -> Result<(String, Record), StoreError>,
) -> Result<Batch, StoreError> {
    let sessions = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    let full = i64::try_from(sessions.len()).unwrap_or(i64::MAX) >= limit;
    let next = if full {
        sessions.last().map(|(key, _)| key.clone())
    } else {
        None
    };
    Ok(Batch { sessions, next })
}

/// The most connections a server pool opens: enough for a busy app server, few enough that a
/// fleet of them stays under the database's `max_connections`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) const POOL_MAX_CONNECTIONS: u32 = 10;

/// How long a request waits for a free connection before failing. sqlx waits 30 s by default;
/// a session load is on every request's path, so fail within the core's default
/// `store_timeout` (3 s) instead of queueing.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) const POOL_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A pooled connection idle for longer than this is pinged before use; a busier one is not,
/// which saves sqlx's default ping round trip on every query.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) const PING_AFTER_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// When a server pool's queries last failed in a way that can mean the server dropped its
/// connections (it restarted, failed over, or the network cut them).
///
/// sqlx pings a connection when it goes back to the pool, so a connection released after such a
/// failure was alive then; one that was already idle before it may be dead, and without a ping
/// sqlx would hand it out again. After a restart a pool of ten idle connections then failed ten
/// requests, and with the circuit breaker open after the first five, one trial per cooldown
/// drained the rest: seconds of 503 with the server back. So the pool pings, before use, every
/// connection that went idle before the last such failure; a dead one is closed and replaced at
/// once, and only the request that hit the first dead connection fails.
#[cfg(any(feature = "postgres", feature = "mysql"))]
#[derive(Clone, Debug)]
pub(crate) struct Breakage {
    epoch: std::time::Instant,
    /// Nanoseconds from `epoch` to the last failure, plus one; 0 when there was none.
    last: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl Default for Breakage {
    fn default() -> Self {
        Self {
            epoch: std::time::Instant::now(),
            last: std::sync::Arc::default(),
        }
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl Breakage {
    /// Notes a failed query if its error can mean dead connections. Constraint violations and
    /// decoding errors come over a working connection and are not noted.
    pub(crate) fn saw(&self, error: &sqlx::Error) {
        let suspicious = match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::PoolTimedOut => true,
            // The server's own "terminating connection" errors (a shutdown, an administrator's
            // kill) are of kind `Other`, as are unexpected ones; a ping is cheap.
            sqlx::Error::Database(db) => matches!(db.kind(), sqlx::error::ErrorKind::Other),
            _ => false,
        };
        if suspicious {
            let at = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            self.last
                .store(at.saturating_add(1), std::sync::atomic::Ordering::Release);
        }
    }

    /// Whether a connection idle for `idle_for` went idle before the last noted failure.
    pub(crate) fn idle_since_before(&self, idle_for: std::time::Duration) -> bool {
        match self.last.load(std::sync::atomic::Ordering::Acquire) {
            0 => false,
            at => {
                let since = self
                    .epoch
                    .elapsed()
                    .saturating_sub(std::time::Duration::from_nanos(at - 1));
                idle_for >= since
            }
        }
    }
}

/// The pool settings the server engines share (see their module docs for the why of each).
/// Connections that went idle before a failure `breakage` saw are pinged before use.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn server_pool_options<DB: sqlx::Database>(
    breakage: Breakage,
) -> sqlx::pool::PoolOptions<DB> {
    use sqlx::Connection as _;
    sqlx::pool::PoolOptions::new()
        .max_connections(POOL_MAX_CONNECTIONS)
        .min_connections(1)
        .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
        .idle_timeout(Some(std::time::Duration::from_secs(10 * 60)))
        // Recycling connections follows failovers and load-balancer changes.
        .max_lifetime(Some(std::time::Duration::from_secs(30 * 60)))
        .test_before_acquire(false)
        .before_acquire(move |conn: &mut DB::Connection, meta| {
            let suspect =
                meta.idle_for >= PING_AFTER_IDLE || breakage.idle_since_before(meta.idle_for);
            Box::pin(async move {
                if suspect {
                    // A failed ping discards this connection; the pool opens a new one.
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Opens a server pool with [`server_pool_options`], keeping the reason when it cannot; the
/// [`Breakage`] returned is the one the pool consults, for the store to note its failures in.
///
/// sqlx's pool retries until its acquire timeout and then reports only "pool timed out"; one
/// direct attempt (itself bounded by that timeout) tells "connection refused" from "password
/// authentication failed" or "unknown database".
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) async fn connect_pool<DB: sqlx::Database>(
    engine: &'static str,
    options: <DB::Connection as sqlx::Connection>::Options,
) -> Result<(sqlx::Pool<DB>, Breakage), crate::error::StoreError> {
    use crate::error::StoreError;
    use sqlx::{ConnectOptions as _, Connection as _};
    let breakage = Breakage::default();
    match server_pool_options::<DB>(breakage.clone())
        .connect_with(options.clone())
        .await
    {
        Ok(pool) => Ok((pool, breakage)),
        Err(sqlx::Error::PoolTimedOut) => {
            match tokio::time::timeout(POOL_ACQUIRE_TIMEOUT, options.connect()).await {
                Ok(Err(reason)) => Err(StoreError::backend(engine, reason)),
                Ok(Ok(conn)) => {
                    // It answers now: report the timeout that really happened.
                    let _ = conn.close().await;
                    Err(StoreError::backend(engine, sqlx::Error::PoolTimedOut))
                }
                Err(_) => Err(StoreError::backend(engine, sqlx::Error::PoolTimedOut)),
            }
        }
        Err(e) => Err(StoreError::backend(engine, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_derived_name_is_longer_than_the_suffix_config_checks() {
        let table = Table::new("t").unwrap();
        let longest = crate::config::LONGEST_DERIVED_SUFFIX.len() + 1;
        let mut names = vec![
            table.expiry_index(),
            table.user_table(),
            table.user_id_index(),
            format!("{}_session_fk", table.user_table()),
        ];
        #[cfg(feature = "postgres")]
        names.push(crate::engines::postgres::like_index(&table));
        for name in names {
            assert!(name.len() <= longest, "{name}");
        }
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        assert!(Table::new("django_session").is_ok());
        assert!(Table::new("x1").is_ok());
        for bad in ["", "1x", "a-b", "a;drop", "a\"b", "sessions.x"] {
            assert!(Table::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Table::new("django_session").unwrap().expiry_index(),
            "django_session_expire_date_a5c62663"
        );
    }

    #[cfg(any(feature = "postgres", feature = "mysql"))]
    #[test]
    fn connections_idle_before_a_connection_failure_are_suspect() {
        use std::time::Duration;
        let breakage = Breakage::default();
        assert!(!breakage.idle_since_before(Duration::from_secs(3600)));

        // Errors that come over a working connection say nothing about the others.
        breakage.saw(&sqlx::Error::RowNotFound);
        breakage.saw(&sqlx::Error::ColumnNotFound("x".into()));
        assert!(!breakage.idle_since_before(Duration::from_secs(3600)));

        breakage.saw(&sqlx::Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        std::thread::sleep(Duration::from_millis(5));
        assert!(breakage.idle_since_before(Duration::from_secs(3600)));
        assert!(
            !breakage.idle_since_before(Duration::from_millis(1)),
            "released after the failure: its release ping passed"
        );
    }
}
