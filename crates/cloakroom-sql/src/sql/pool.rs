//! The sqlx pool policy of the server engines (PostgreSQL, MySQL), in one place: how many
//! connections, how long a request waits for one, when a connection is pinged, when it is
//! recycled, and the statement cache. [`ServerOptions`] is the caller's say over it; the
//! defaults are chosen for a store that sits on every request's path:
//! - at most 10 connections, one kept open;
//! - a 3 s acquire timeout (sqlx's is 30 s), so an exhausted pool fails within the core's
//!   default `store_timeout` instead of queueing requests;
//! - a connection idle for more than 10 s is pinged before use (sqlx pings before *every* use
//!   by default, a round trip per query), and so is one that was idle when a query last failed
//!   on what may be a dead connection ([`Breakage`]): after a server restart only the request
//!   that met the first dead connection fails, and the rest are replaced as they are taken;
//! - idle connections close after 10 min (well inside MySQL's `wait_timeout`) and every
//!   connection is recycled after 30 min, to follow failovers and load-balancer changes;
//! - sqlx's prepared-statement cache (100 statements per connection unless the URL's
//!   `?statement-cache-capacity=` or [`ServerOptions::statement_cache_capacity`] says
//!   otherwise), so each query is parsed once per connection.

use std::time::Duration;

/// How a server engine's connection pool behaves; [`Default`] is the policy in the
/// module docs of `cloakroom_sql::sql::pool`. Our own type, so that a sqlx release is not a breaking one of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerOptions {
    /// The most connections the pool opens: enough for a busy app server, few enough that a
    /// fleet of them stays under the database's `max_connections`.
    pub max_connections: u32,
    /// How many connections the pool keeps open while idle.
    pub min_connections: u32,
    /// How long a request waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// A connection idle for longer than this is pinged before use.
    pub ping_after_idle: Duration,
    /// An idle connection is closed after this long.
    pub idle_timeout: Duration,
    /// Every connection is closed and replaced after this long.
    pub max_lifetime: Duration,
    /// Prepared statements cached per connection; `None` keeps the URL's
    /// `statement-cache-capacity` or sqlx's default (100).
    pub statement_cache_capacity: Option<usize>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 1,
            // sqlx waits 30 s by default; a session load is on every request's path, so fail
            // within the core's default `store_timeout` (3 s) instead of queueing.
            acquire_timeout: Duration::from_secs(3),
            // Saves sqlx's default ping round trip on every query of a busy connection.
            ping_after_idle: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10 * 60),
            max_lifetime: Duration::from_secs(30 * 60),
            statement_cache_capacity: None,
        }
    }
}

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
#[derive(Clone, Debug)]
pub(crate) struct Breakage {
    epoch: std::time::Instant,
    /// Nanoseconds from `epoch` to the last failure, plus one; 0 when there was none.
    last: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Breakage {
    fn default() -> Self {
        Self {
            epoch: std::time::Instant::now(),
            last: std::sync::Arc::default(),
        }
    }
}

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

/// The sqlx pool for `options`. Connections that went idle before a failure `breakage` saw
/// are pinged before use.
fn pool_options<DB: sqlx::Database>(
    options: &ServerOptions,
    breakage: Breakage,
) -> sqlx::pool::PoolOptions<DB> {
    use sqlx::Connection as _;
    let ping_after_idle = options.ping_after_idle;
    sqlx::pool::PoolOptions::new()
        .max_connections(options.max_connections)
        .min_connections(options.min_connections)
        .acquire_timeout(options.acquire_timeout)
        .idle_timeout(Some(options.idle_timeout))
        .max_lifetime(Some(options.max_lifetime))
        .test_before_acquire(false)
        .before_acquire(move |conn: &mut DB::Connection, meta| {
            let suspect =
                meta.idle_for >= ping_after_idle || breakage.idle_since_before(meta.idle_for);
            Box::pin(async move {
                if suspect {
                    // A failed ping discards this connection; the pool opens a new one.
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Opens a server pool with `options`, keeping the reason when it cannot; the
/// [`Breakage`] returned is the one the pool consults, for the store to note its failures in.
///
/// sqlx's pool retries until its acquire timeout and then reports only "pool timed out"; one
/// direct attempt (itself bounded by that timeout) tells "connection refused" from "password
/// authentication failed" or "unknown database".
pub(crate) async fn connect_pool<DB: sqlx::Database>(
    engine: &'static str,
    connect: <DB::Connection as sqlx::Connection>::Options,
    options: &ServerOptions,
) -> Result<(sqlx::Pool<DB>, Breakage), crate::error::StoreError> {
    use crate::error::StoreError;
    use sqlx::{ConnectOptions as _, Connection as _};
    let breakage = Breakage::default();
    match pool_options::<DB>(options, breakage.clone())
        .connect_with(connect.clone())
        .await
    {
        Ok(pool) => Ok((pool, breakage)),
        Err(sqlx::Error::PoolTimedOut) => {
            match tokio::time::timeout(options.acquire_timeout, connect.connect()).await {
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
