//! [`Breakage`]: when a server pool's connections may have died with the server, so that the
//! pool pings the ones that went idle before (see `pool.rs`).

/// When a server pool's queries last failed in a way that can mean the server dropped its
/// connections (it restarted, failed over, or the network cut them).
///
/// A connection whose statement was answered after such a failure was alive then; one that
/// was already idle before it may be dead, and without a ping the pool would hand it out
/// again. After a restart a pool of ten idle connections then failed ten
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
            self.note();
        }
    }

    /// Notes, as of now, that the server may have dropped its connections: a connection
    /// beside the pool (the listener's) found its own closed.
    pub(crate) fn note(&self) {
        let at = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last
            .store(at.saturating_add(1), std::sync::atomic::Ordering::Release);
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
