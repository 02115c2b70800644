//! A circuit breaker in front of the store, so that a store that is down is not hammered by
//! every request (each of which would wait for its timeout) and comes back on its own.
//!
//! Closed: calls go through; `threshold` failures in a row open it. Open: calls fail at once
//! with [`StoreError::CircuitOpen`] until the cooldown ends. Then exactly one caller gets through
//! as a trial (the others keep failing fast); its success closes the breaker, its failure opens
//! it for another cooldown.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::StoreError;

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    epoch: Instant,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which calls fail fast; 0 when closed.
    open_until: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn cooldown_ms(&self) -> u64 {
        u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a call may go to the store now; `Err` with how long to wait when not.
    pub(crate) fn admit(&self, engine: &'static str) -> Result<(), StoreError> {
        if self.threshold == 0 {
            return Ok(());
        }
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Ok(());
        }
        let now = self.now_ms();
        if now < until {
            return Err(StoreError::CircuitOpen {
                engine,
                retry_after: Duration::from_millis(until - now),
            });
        }
        // The cooldown is over: one caller wins the right to try, by pushing the deadline on.
        let next = now.saturating_add(self.cooldown_ms());
        match self
            .open_until
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(_) => Err(StoreError::CircuitOpen {
                engine,
                retry_after: self.cooldown,
            }),
        }
    }

    /// Records the outcome of an admitted call.
    pub(crate) fn record(&self, ok: bool) {
        if self.threshold == 0 {
            return;
        }
        if ok {
            self.failures.store(0, Ordering::Release);
            self.open_until.store(0, Ordering::Release);
            return;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if failures >= self.threshold {
            let until = self.now_ms().saturating_add(self.cooldown_ms()).max(1);
            self.open_until.store(until, Ordering::Release);
            // A failed trial re-opens it each cooldown: one line per window, with a count.
            static OPENINGS: crate::observe::WarnLimiter = crate::observe::WarnLimiter::new();
            if let Some(held) = OPENINGS.admit() {
                tracing::warn!(
                    failures,
                    cooldown_ms = self.cooldown_ms(),
                    reopened_unlogged = held,
                    "session store keeps failing; circuit breaker open"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_lets_one_trial_through() {
        let b = Breaker::new(3, Duration::from_millis(50));
        for _ in 0..2 {
            b.admit("x").unwrap();
            b.record(false);
        }
        b.admit("x").unwrap();
        b.record(false);
        assert!(matches!(b.admit("x"), Err(StoreError::CircuitOpen { .. })));
        std::thread::sleep(Duration::from_millis(60));
        b.admit("x").unwrap();
        assert!(b.admit("x").is_err(), "only one trial call while half-open");
        b.record(true);
        b.admit("x").unwrap();
        b.admit("x").unwrap();
    }

    #[test]
    fn threshold_zero_never_opens() {
        let b = Breaker::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            b.record(false);
        }
        b.admit("x").unwrap();
    }
}
