//! Time, from a clock that tests can set, so that expiry is tested without sleeping.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

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
        utc(SystemTime::now())
    }
}

/// `at` in UTC. A request reads the clock twice (its load, its end), and `time`'s conversion
/// of a `SystemTime` works out the calendar date each time, most of the cost of a read. The
/// date changes once a day, so each thread keeps the last one it worked out and only the time
/// of day is arithmetic. Instants before 1970 take `time`'s own path.
fn utc(at: SystemTime) -> OffsetDateTime {
    const DAY: u64 = 86_400;
    thread_local! {
        static TODAY: Cell<Option<(u64, Date)>> = const { Cell::new(None) };
    }
    let Ok(since) = at.duration_since(SystemTime::UNIX_EPOCH) else {
        return OffsetDateTime::from(at);
    };
    let (day, second) = (since.as_secs() / DAY, since.as_secs() % DAY);
    let date = TODAY.with(|today| match today.get() {
        Some((cached, date)) if cached == day => Some(date),
        _ => {
            let days = i64::try_from(day).ok()?;
            let date = OffsetDateTime::UNIX_EPOCH
                .date()
                .checked_add(time::Duration::days(days))?;
            today.set(Some((day, date)));
            Some(date)
        }
    });
    let clock = u8::try_from(second / 3600).ok().and_then(|hour| {
        // Both below 60, so the conversions cannot fail.
        let minute = u8::try_from(second / 60 % 60).ok()?;
        let second = u8::try_from(second % 60).ok()?;
        Time::from_hms_nano(hour, minute, second, since.subsec_nanos()).ok()
    });
    match (date, clock) {
        (Some(date), Some(clock)) => PrimitiveDateTime::new(date, clock).assume_utc(),
        _ => OffsetDateTime::from(at),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The day-cached conversion agrees with `time`'s own at every instant tried: across
    /// midnights, leap days, the epoch and before it, and at nanosecond precision.
    #[test]
    fn system_time_converts_as_time_does() {
        use std::time::Duration;
        let mut instants = vec![
            SystemTime::UNIX_EPOCH,
            SystemTime::UNIX_EPOCH - Duration::from_nanos(1),
            SystemTime::UNIX_EPOCH - Duration::from_secs(86_400 * 400 + 5),
            SystemTime::now(),
        ];
        // 2024-02-28 23:59:59.999999999 onwards, in uneven steps over several days.
        let mut at = SystemTime::UNIX_EPOCH + Duration::new(1_709_164_799, 999_999_999);
        for step in 0..5_000u64 {
            instants.push(at);
            at += Duration::new(step * 97 % 7_919, u32::try_from(step * 7_777).unwrap_or(0));
        }
        for at in instants {
            assert_eq!(utc(at), OffsetDateTime::from(at), "{at:?}");
        }
    }
}
