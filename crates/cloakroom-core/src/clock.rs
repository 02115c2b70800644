//! Time, from a clock that tests can set, so that expiry is tested without sleeping.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use time::OffsetDateTime;

/// A source of the current time (UTC).
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock: what production uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until a test moves it. Clones share the same time.
///
/// # Examples
/// ```
/// use cloakroom_core::clock::{Clock, ManualClock};
/// let clock = ManualClock::at_unix(1_735_689_600);
/// clock.advance(std::time::Duration::from_secs(60));
/// assert_eq!(clock.now().unix_timestamp(), 1_735_689_660);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock that reads `unix_seconds` until moved.
    pub fn at_unix(unix_seconds: i64) -> Self {
        Self {
            nanos: Arc::new(AtomicI64::new(unix_seconds.saturating_mul(1_000_000_000))),
        }
    }

    /// A clock that starts at the current system time.
    pub fn starting_now() -> Self {
        let now = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Self {
            nanos: Arc::new(AtomicI64::new(i64::try_from(now).unwrap_or(i64::MAX))),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the clock to an instant.
    pub fn set(&self, to: OffsetDateTime) {
        let nanos = i64::try_from(to.unix_timestamp_nanos()).unwrap_or(i64::MAX);
        self.nanos.store(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.nanos.load(Ordering::SeqCst)))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}
