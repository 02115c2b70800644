//! The pool policy of the server engines (PostgreSQL, MySQL), in one place: how many
//! connections, how long a request waits for one, when a connection is pinged, when it is
//! recycled, and the statement cache. [`ServerOptions`] is the caller's say over it; the
//! defaults are chosen for a store that sits on every request's path:
//! - at most 10 connections, one kept open;
//! - a 3 s acquire timeout (sqlx's is 30 s), so an exhausted pool fails within the core's
//!   default `store_timeout` instead of queueing requests;
//! - a statement is one round trip: a connection goes back into the pool with no I/O (sqlx
//!   0.8's own pool pings every connection it takes back, a second round trip per
//!   statement: [`Pool`]), and is pinged before use only when suspect: idle for more than
//!   10 s, its last use failed or was cancelled, or it was idle when a query last failed on
//!   what may be a dead connection ([`Breakage`]): after a server restart only the request
//!   that met the first dead connection fails, and the rest are replaced as they are taken;
//! - idle connections close after 10 min (well inside MySQL's `wait_timeout`) and every
//!   connection is recycled after 30 min, to follow failovers and load-balancer changes;
//! - sqlx's prepared-statement cache (100 statements per connection unless the URL's
//!   `?statement-cache-capacity=` or [`ServerOptions::statement_cache_capacity`] says
//!   otherwise), so each query is parsed once per connection.

use std::time::Duration;

use deadpool::managed;
use sqlx::Database;

pub(crate) use super::breakage::Breakage;

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

/// The connect options of database `DB`.
type ConnectOptions<DB> = <<DB as Database>::Connection as sqlx::Connection>::Options;

/// A pooled connection and whether its last use ended cleanly.
pub(crate) struct Pooled<DB: Database> {
    conn: DB::Connection,
    /// Set when a use ended with its statement answered in full ([`Conn::release`]); a use
    /// that failed or was cancelled (its future dropped by a timeout) may have left a reply
    /// unread, a transaction's `ROLLBACK` unsent, or a dead socket.
    clean: bool,
}

/// How the pool opens and checks connections; deadpool calls it.
struct Manager<DB: Database> {
    connect: ConnectOptions<DB>,
    ping_after_idle: Duration,
    max_lifetime: Duration,
    breakage: Breakage,
}

impl<DB: Database> managed::Manager for Manager<DB> {
    type Type = Pooled<DB>;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Pooled<DB>, sqlx::Error> {
        use sqlx::ConnectOptions as _;
        Ok(Pooled {
            conn: self.connect.connect().await?,
            clean: true,
        })
    }

    /// Checks an idle connection as it is taken, with no I/O unless it is suspect: its last
    /// use did not end cleanly, it was idle for `ping_after_idle`, or it went idle before a
    /// failure [`Breakage`] noted. A suspect one is pinged (which also reads what a cancelled
    /// statement left unread and sends a dropped transaction's `ROLLBACK`); one that fails
    /// the ping is dropped and the pool takes or opens another.
    ///
    /// deadpool's `last_used` counts from the connection's last checkout, not its return, so
    /// it overstates the idle time by the length of one use: at worst an extra ping.
    async fn recycle(
        &self,
        pooled: &mut Pooled<DB>,
        metrics: &managed::Metrics,
    ) -> managed::RecycleResult<sqlx::Error> {
        use sqlx::Connection as _;
        if metrics.age() >= self.max_lifetime {
            return Err(managed::RecycleError::message("past max_lifetime"));
        }
        let idle_for = metrics.last_used();
        if !pooled.clean
            || idle_for >= self.ping_after_idle
            || self.breakage.idle_since_before(idle_for)
        {
            pooled.conn.ping().await?;
            pooled.clean = true;
        }
        Ok(())
    }
}

/// A server engine's connections: a deadpool pool of sqlx connections, in the policy of the
/// module docs. sqlx 0.8's own pool pings every connection it takes back (a bare `Sync` on
/// PostgreSQL, `COM_PING` on MySQL, unconditional in `PoolConnection`'s release) and does so
/// in a task of its own: a round trip and a wakeup of the database for every statement.
/// This one takes a connection back with no I/O and pings only a suspect one as it is taken.
pub(crate) struct Pool<DB: Database> {
    inner: managed::Pool<Manager<DB>>,
    acquire_timeout: Duration,
}

// By hand: a derive would ask `Clone` of the driver's database type too.
impl<DB: Database> Clone for Pool<DB> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            acquire_timeout: self.acquire_timeout,
        }
    }
}

/// A connection taken from a [`Pool`]; back into it when dropped. Counted unclean unless
/// [`release`](Self::release)d, so the next user pings it first.
pub(crate) struct Conn<DB: Database>(managed::Object<Manager<DB>>);

impl<DB: Database> Conn<DB> {
    /// The connection.
    pub(crate) fn raw(&mut self) -> &mut DB::Connection {
        &mut self.0.conn
    }

    /// Back into the pool after a use that ended with its statement answered in full: the
    /// next user takes it without a ping.
    pub(crate) fn release(mut self) {
        self.0.clean = true;
    }

    /// Out of the pool and closed without a goodbye: the server ends its session, and with
    /// it any session lock it held.
    pub(crate) fn discard(self) {
        drop(managed::Object::take(self.0));
    }
}

impl<DB: Database> Pool<DB> {
    /// A connection, within the acquire timeout: an idle one (checked as
    /// `Manager`'s `recycle` says) or a new one while the pool is under its size.
    pub(crate) async fn get(&self) -> Result<Conn<DB>, sqlx::Error> {
        let mut object = self.object().await?;
        // Unclean until released: a use that fails or is cancelled leaves it so.
        object.clean = false;
        Ok(Conn(object))
    }

    async fn object(&self) -> Result<managed::Object<Manager<DB>>, sqlx::Error> {
        match tokio::time::timeout(self.acquire_timeout, self.inner.get()).await {
            Ok(Ok(object)) => Ok(object),
            Ok(Err(managed::PoolError::Backend(e))) => Err(e),
            Ok(Err(managed::PoolError::Closed)) => Err(sqlx::Error::PoolClosed),
            Ok(Err(other)) => Err(sqlx::Error::Protocol(other.to_string())),
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    }

    /// Connections open (idle or in use), and idle.
    pub(crate) fn status(&self) -> (u32, usize) {
        let status = self.inner.status();
        (
            u32::try_from(status.size).unwrap_or(u32::MAX),
            status.available,
        )
    }

    /// How long a request waits for a connection.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// The options new connections are opened with (for a connection of its own beside
    /// the pool, such as the listener's).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn connect_options(&self) -> &ConnectOptions<DB> {
        &self.inner.manager().connect
    }
}

/// Opens a server pool with `options`; the [`Breakage`] returned is the one the pool
/// consults, for the store to note its failures in.
///
/// `min_connections` (at least one) are opened before it returns, so that a wrong URL,
/// password or database is reported at once and by its own error.
pub(crate) async fn connect_pool<DB: Database>(
    engine: &'static str,
    connect: ConnectOptions<DB>,
    options: &ServerOptions,
) -> Result<(Pool<DB>, Breakage), crate::error::StoreError> {
    use crate::error::StoreError;
    let breakage = Breakage::default();
    let max = usize::try_from(options.max_connections.max(1)).unwrap_or(usize::MAX);
    let manager = Manager {
        connect,
        ping_after_idle: options.ping_after_idle,
        max_lifetime: options.max_lifetime,
        breakage: breakage.clone(),
    };
    // Oldest idle first, as sqlx's pool did: every connection stays in use, so none
    // sits idle into the ping after `ping_after_idle` while the app is busy.
    let inner = managed::Pool::builder(manager)
        .max_size(max)
        .queue_mode(managed::QueueMode::Fifo)
        .build()
        .map_err(|e| StoreError::backend(engine, sqlx::Error::Configuration(e.into())))?;
    let pool = Pool {
        inner,
        acquire_timeout: options.acquire_timeout,
    };
    let min = usize::try_from(options.min_connections).unwrap_or(usize::MAX);
    top_up(&pool, min.clamp(1, max))
        .await
        .map_err(|e| StoreError::backend(engine, e))?;
    let min = min.min(max);
    tokio::spawn(reap(
        pool.inner.weak(),
        min,
        options.idle_timeout,
        options.max_lifetime,
        options.acquire_timeout,
    ));
    Ok((pool, breakage))
}

/// Opens connections until the pool holds `min`.
async fn top_up<DB: Database>(pool: &Pool<DB>, min: usize) -> Result<(), sqlx::Error> {
    let mut held = Vec::new();
    while pool.inner.status().size < min {
        // Held, so that the next one is a new connection rather than this one again.
        held.push(pool.object().await?);
    }
    Ok(())
}

/// The pool's upkeep, every quarter of the shorter of `idle_timeout` and `max_lifetime`
/// (at most 30 s, at least 100 ms): closes the idle connections that reached `max_lifetime`,
/// and those idle for `idle_timeout` while more than `min` are open, and opens connections
/// back up to `min`. Ends with the pool: it holds only a weak handle between rounds.
///
/// A task started by the constructor, as sqlx's pool started its own reaper: it writes
/// nothing and outlives nothing, so it cannot race with a shutdown.
async fn reap<DB: Database>(
    pool: managed::WeakPool<Manager<DB>>,
    min: usize,
    idle_timeout: Duration,
    max_lifetime: Duration,
    acquire_timeout: Duration,
) {
    let period = (idle_timeout.min(max_lifetime) / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = pool.upgrade() else {
            return;
        };
        let mut spare = inner.status().size.saturating_sub(min);
        let retired = inner.retain(|_, metrics| {
            let old = metrics.age() >= max_lifetime;
            let idle = spare > 0 && metrics.last_used() >= idle_timeout;
            if old || idle {
                spare = spare.saturating_sub(1);
            }
            !(old || idle)
        });
        for pooled in retired.removed {
            use sqlx::Connection as _;
            // A goodbye to the server (`Terminate`, `COM_QUIT`); nobody waits for it.
            tokio::spawn(async move {
                let _ = pooled.conn.close().await;
            });
        }
        let pool = Pool {
            inner,
            acquire_timeout,
        };
        // The server may be down: the next round tries again.
        let _ = top_up(&pool, min).await;
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
            "used after the failure: its statement was answered"
        );
    }
}
