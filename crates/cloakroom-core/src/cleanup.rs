//! Expired sessions cleared on a schedule inside the app (opt-in): what `cloakroom
//! clearsessions` does, run by a background task that [`Sessions::start_cleanup`] starts
//! explicitly and its [`CleanupHandle`] stops.
//!
//! One server clears at a time: each run first takes the store's [`Exclusive`] lock named
//! [`CLEANUP_LOCK`], and a server that finds it held skips its turn
//! ([`CleanupRun::Skipped`]). A store without that ability (the in-process cache, which expires
//! entries by itself and is one process's anyway) clears without a lock; clearing is
//! idempotent, so two runs at once would only repeat work.
//!
//! [`Sessions::start_cleanup`]: crate::Sessions::start_cleanup

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::error::StoreError;
use crate::exclusive::Exclusive;
use crate::live::Live;
use crate::store::ClearExpired;

/// The name of the lock a cleanup run takes (see [`Exclusive::try_lock`]).
pub const CLEANUP_LOCK: &str = "cleanup";

/// The most a run's wait strays from the interval either way, as a fraction of it: servers
/// started together drift apart instead of meeting at the lock on every turn.
const JITTER: f64 = 0.1;

/// What one cleanup run did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CleanupRun {
    /// This server cleared: `count` expired sessions went (0 when none had expired, and always
    /// on engines whose server expires them itself: Redis, the in-process cache).
    Cleared {
        /// How many expired sessions were deleted.
        count: u64,
    },
    /// Skipped: another server holds the cleanup lock (it is clearing now).
    Skipped,
    /// The store failed; the next run tries again. Sessions cleared before the failure stay
    /// cleared.
    Failed(Arc<StoreError>),
}

/// What a cleanup run needs: the abilities of the store, the bound on each call and the clock.
#[derive(Clone)]
pub(crate) struct Cleaner {
    pub engine: &'static str,
    pub clear: Arc<dyn ClearExpired>,
    pub exclusive: Option<Arc<dyn Exclusive>>,
    pub timeout: Duration,
    pub clock: Arc<dyn Clock>,
    /// Where the expiries go: an [`Expired`](crate::EventKind::Expired) event per deleted
    /// session, and the end of the waits on it, while anybody subscribes or waits.
    pub live: Arc<Live>,
}

impl Cleaner {
    /// One run: takes the lock (or skips), clears in batches until none are left or `stop`
    /// says to stop, lets go of the lock, and reports (log and metrics).
    pub async fn run(&self, stop: Option<&mut oneshot::Receiver<()>>) -> CleanupRun {
        let run = self.run_locked(stop).await;
        self.report(&run);
        run
    }

    async fn run_locked(&self, stop: Option<&mut oneshot::Receiver<()>>) -> CleanupRun {
        let guard = match &self.exclusive {
            Some(exclusive) => match self.bounded(exclusive.try_lock(CLEANUP_LOCK)).await {
                Ok(Some(guard)) => Some(guard),
                Ok(None) => return CleanupRun::Skipped,
                Err(e) => return CleanupRun::Failed(Arc::new(e)),
            },
            None => None,
        };
        let cleared = self.clear_batches(stop).await;
        if let Some(guard) = guard {
            if let Err(e) = self.bounded(guard.release()).await {
                // The lock ends anyway (closed connection, TTL); the clearing stands.
                tracing::warn!(engine = self.engine, error = %e, "could not let go of the cleanup lock");
            }
        }
        match cleared {
            Ok(count) => CleanupRun::Cleared { count },
            Err(e) => CleanupRun::Failed(Arc::new(e)),
        }
    }

    /// Clears batch after batch, each under the store timeout, until a batch finds nothing or
    /// `stop` fires (checked between batches, so a stop never cuts a statement short).
    async fn clear_batches(
        &self,
        mut stop: Option<&mut oneshot::Receiver<()>>,
    ) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let mut total = 0;
        loop {
            let went = self.clear_batch(now).await?;
            total += went;
            let stopping = stop.as_mut().is_some_and(|rx| {
                !matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
            });
            if went == 0 || stopping {
                return Ok(total);
            }
        }
    }

    /// One batch: named where somebody wants the expiries (and the engine can name them),
    /// counted otherwise, the statement `clearsessions` runs.
    async fn clear_batch(&self, now: time::OffsetDateTime) -> Result<u64, StoreError> {
        if self.live.wants_expiries() {
            if let Some(gone) = self.bounded(self.clear.clear_expired_named(now)).await? {
                let at = self.clock.now();
                for session in &gone {
                    self.live
                        .expired(&session.id, session.user_id.as_deref(), at);
                }
                return Ok(gone.len() as u64);
            }
        }
        self.bounded(self.clear.clear_expired_batch(now)).await
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(StoreError::Timeout {
                engine: self.engine,
                after: self.timeout,
            }))
    }

    fn report(&self, run: &CleanupRun) {
        let engine = self.engine;
        let outcome = match run {
            CleanupRun::Cleared { count } => {
                metrics::counter!("cloakroom_cleanup_cleared_total", "engine" => engine)
                    .increment(*count);
                tracing::info!(engine, cleared = count, "cleared expired sessions");
                "cleared"
            }
            CleanupRun::Skipped => {
                tracing::debug!(
                    engine,
                    "cleanup skipped: another server holds the cleanup lock"
                );
                "skipped"
            }
            CleanupRun::Failed(e) => {
                tracing::warn!(engine, error = %e, "clearing expired sessions failed; the next run tries again");
                "failed"
            }
        };
        metrics::counter!("cloakroom_cleanup_runs_total", "engine" => engine, "outcome" => outcome)
            .increment(1);
    }

    /// Starts the background task: a run every `every` (give or take [`JITTER`]) until the
    /// handle stops it or is dropped.
    pub fn start(self, every: Duration) -> CleanupHandle {
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let (report_tx, report_rx) = watch::channel(None);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stop_rx => return,
                    () = tokio::time::sleep(jittered(every)) => {}
                }
                let run = self.run(Some(&mut stop_rx)).await;
                report_tx.send_replace(Some(run));
                if !matches!(stop_rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
                    return;
                }
            }
        });
        CleanupHandle {
            stop: Some(stop_tx),
            task: Some(task),
            reports: report_rx,
        }
    }
}

/// `every`, moved by up to ±[`JITTER`] of itself at random.
fn jittered(every: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    // Without randomness the wait is the interval itself: still correct, only less spread.
    if getrandom::fill(&mut bytes).is_err() {
        return every;
    }
    let unit = f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX);
    let factor = 1.0 - JITTER + 2.0 * JITTER * unit;
    Duration::try_from_secs_f64(every.as_secs_f64() * factor).unwrap_or(every)
}

/// The scheduled cleanup [`Sessions::start_cleanup`](crate::Sessions::start_cleanup) started.
/// Dropping it stops the task after its current batch; [`stop`](Self::stop) also waits for it.
#[derive(Debug)]
#[must_use = "dropping the handle stops the cleanup"]
pub struct CleanupHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    reports: watch::Receiver<Option<CleanupRun>>,
}

impl CleanupHandle {
    /// What the latest run did; `None` before the first.
    pub fn last_run(&self) -> Option<CleanupRun> {
        self.reports.borrow().clone()
    }

    /// Every run's report as it comes: `changed().await` wakes at each run, and fails once the
    /// task has ended.
    pub fn reports(&self) -> watch::Receiver<Option<CleanupRun>> {
        self.reports.clone()
    }

    /// Whether the background task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the cleanup and waits for its task to end: at once between runs, after the
    /// current batch (one short statement) during one, letting go of the lock.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // A panic in the task (none is known) has already been reported by tokio.
            let _ = task.await;
        }
    }
}

impl Drop for CleanupHandle {
    fn drop(&mut self) {
        // Dropping the sender is the stop signal; the task ends by itself, after its batch.
        self.stop.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_tenth_of_the_interval() {
        let every = Duration::from_secs(100);
        for _ in 0..1000 {
            let wait = jittered(every);
            assert!(
                wait >= Duration::from_secs(90) && wait <= Duration::from_secs(110),
                "{wait:?}"
            );
        }
    }
}
