//! The client-side cache's memory ([`RedisStore::start_client_cache`](super::RedisStore::start_client_cache)):
//! sessions read from Redis, kept in process memory for a bounded time and dropped when Redis
//! says another client wrote them (`tracking.rs` applies those notices).
//!
//! Correctness rests on three rules:
//! - A load *reserves* its key (a token) before its command goes out, and keeps its answer
//!   only if the reservation is still there when the answer is back; a write drops the key
//!   before it goes out (Redis notifies us of it anyway, see the engine's docs). An
//!   invalidation, a reconnection or an overflow removes reservations with the entries, so an
//!   answer that raced with any of them is never kept.
//! - Nothing is kept unless tracking is on for the connection in use: a reconnection turns the
//!   cache off and empties it, and only the `CLIENT TRACKING` reply on the new connection turns
//!   it back on (commands after that reply are tracked).
//! - An entry is trusted for `ttl` at most, and never past the session's own expiry: what
//!   tracking cannot report (Redis 7.0 drops the `FLUSHDB` notice for the client library, a
//!   connection lost without notice) is seen within `ttl`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{oneshot, Notify};

use super::connect::ClientCache;
use crate::store::Record;

pub(super) struct Local {
    /// How long an entry is answered from memory.
    pub(super) ttl: Duration,
    /// The most entries kept (reservations included).
    pub(super) capacity: usize,
    state: Mutex<LocalState>,
    /// Tells the tracking task to turn tracking on again (the key prefix changed).
    pub(super) retrack: Arc<Notify>,
    /// The handle of the tracking task once started: dropped with the cache (that is, with the
    /// last clone of the store), which ends the task.
    pub(super) task: OnceLock<oneshot::Sender<()>>,
}

#[derive(Default)]
pub(super) struct LocalState {
    /// Tracking is on for the current connection, for the prefix `head`.
    on: bool,
    /// What every key of the store starts with: the prefix tracked.
    pub(super) head: String,
    /// The next reservation token.
    next: u64,
    /// By session key (not Redis key).
    pub(super) entries: HashMap<String, Slot>,
}

pub(super) enum Slot {
    /// A command for the key is in flight; its answer may be kept if this token is still here.
    Reserved(u64),
    /// A live record, read (or written) at `at`.
    Kept { record: Record, at: Instant },
}

impl Local {
    /// An empty cache, off until tracking is on for keys starting with `head`.
    pub(super) fn new(bounds: ClientCache, head: String) -> Self {
        Self {
            ttl: bounds.ttl,
            capacity: bounds.capacity.max(1),
            state: Mutex::new(LocalState {
                head,
                ..LocalState::default()
            }),
            retrack: Arc::new(Notify::new()),
            task: OnceLock::new(),
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, LocalState> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters: every entry is self-contained. Keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether loads may be answered and kept (tracking is on for the current connection).
    pub(super) fn is_on(&self) -> bool {
        self.state().on
    }

    /// The kept record for `key` if it is fresh and live at `now`.
    pub(super) fn get(&self, key: &str, now: OffsetDateTime) -> Option<Record> {
        let st = self.state();
        match st.entries.get(key)? {
            Slot::Kept { record, at }
                if st.on
                    && at.elapsed() < self.ttl
                    && record.expires_at > now
                    && record.expires_at > OffsetDateTime::now_utc() =>
            {
                Some(record.clone())
            }
            _ => None,
        }
    }

    /// Reserves `key` for a command about to go out; `None` when nothing may be kept now.
    pub(super) fn reserve(&self, key: &str) -> Option<u64> {
        let mut st = self.state();
        if !st.on {
            return None;
        }
        st.next += 1;
        let token = st.next;
        if st.entries.len() >= self.capacity && !st.entries.contains_key(key) {
            // Full: drop one entry (any; a full cache is a sign `capacity` is too small).
            let victim = st.entries.keys().next().cloned();
            if let Some(victim) = victim {
                st.entries.remove(&victim);
            }
        }
        st.entries.insert(key.to_owned(), Slot::Reserved(token));
        Some(token)
    }

    /// Keeps `record` under `key` if the reservation `token` still holds; forgets the key when
    /// there is no record.
    pub(super) fn fill(&self, key: &str, token: Option<u64>, record: Option<&Record>) {
        let Some(token) = token else { return };
        let mut st = self.state();
        if matches!(st.entries.get(key), Some(Slot::Reserved(t)) if *t == token) {
            match record {
                Some(record) => {
                    let at = Instant::now();
                    let record = record.clone();
                    st.entries.insert(key.to_owned(), Slot::Kept { record, at });
                }
                None => {
                    st.entries.remove(key);
                }
            }
        }
    }

    /// Drops `key` (a write is about to make it stale, or another client wrote it).
    pub(super) fn forget(&self, key: &str) {
        self.state().entries.remove(key);
    }

    /// Empties the cache and turns it off until tracking is on again.
    pub(super) fn reset(&self) {
        let mut st = self.state();
        st.on = false;
        st.entries.clear();
    }

    /// Empties the cache (notices were missed, or Redis invalidated everything).
    pub(super) fn clear(&self) {
        self.state().entries.clear();
    }

    /// Turns the cache on for `head`, if that is still the prefix wanted.
    pub(super) fn turn_on(&self, head: &str) {
        let mut st = self.state();
        if st.head == head {
            st.on = true;
        }
    }

    /// Moves the cache to another key prefix: empty and off until tracking is on for it.
    pub(super) fn rehead(&self, head: String) {
        let mut st = self.state();
        st.on = false;
        st.entries.clear();
        st.head = head;
        // Before the task starts there is nothing to tell: it tracks the prefix it finds.
        if self.task.get().is_some() {
            self.retrack.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(capacity: usize) -> Local {
        let bounds = ClientCache {
            ttl: Duration::from_secs(60),
            capacity,
        };
        let local = Local::new(bounds, String::new());
        local.turn_on("");
        local
    }

    fn live(data: &str) -> Record {
        Record {
            data: data.to_owned().into(),
            expires_at: OffsetDateTime::now_utc() + Duration::from_secs(60),
        }
    }

    #[test]
    fn an_answer_that_raced_an_invalidation_is_not_kept() {
        let now = OffsetDateTime::now_utc();
        let cache = local(10);
        let token = cache.reserve("k");
        // The invalidation is applied before the load's answer is.
        cache.forget("k");
        cache.fill("k", token, Some(&live("old")));
        assert_eq!(cache.get("k", now), None);
        // Without a race the answer is kept.
        let token = cache.reserve("k");
        cache.fill("k", token, Some(&live("new")));
        assert_eq!(
            cache.get("k", now).map(|r| r.data).as_deref(),
            Some(&b"new"[..])
        );
        // A later load's reservation wins over an earlier one's answer.
        let first = cache.reserve("j");
        let second = cache.reserve("j");
        cache.fill("j", first, Some(&live("first")));
        assert_eq!(cache.get("j", now), None);
        cache.fill("j", second, Some(&live("second")));
        assert_eq!(
            cache.get("j", now).map(|r| r.data).as_deref(),
            Some(&b"second"[..])
        );
    }

    #[test]
    fn a_reconnection_drops_entries_and_reservations_and_turns_the_cache_off() {
        let now = OffsetDateTime::now_utc();
        let cache = local(10);
        let kept = cache.reserve("a");
        cache.fill("a", kept, Some(&live("a")));
        let in_flight = cache.reserve("b");
        cache.reset();
        cache.fill("b", in_flight, Some(&live("b")));
        assert_eq!(cache.get("a", now), None);
        assert_eq!(cache.get("b", now), None);
        assert_eq!(cache.reserve("c"), None, "off until tracking is on again");
        cache.turn_on("");
        assert!(cache.reserve("c").is_some());
    }

    #[test]
    fn the_cache_is_bounded_and_respects_expiry() {
        let now = OffsetDateTime::now_utc();
        let cache = local(3);
        for i in 0..10 {
            let key = format!("k{i}");
            let token = cache.reserve(&key);
            cache.fill(&key, token, Some(&live(&key)));
        }
        assert!(cache.state().entries.len() <= 3);
        let token = cache.reserve("short");
        let short = Record {
            data: "short".into(),
            expires_at: now + Duration::from_secs(1),
        };
        cache.fill("short", token, Some(&short));
        assert!(cache.get("short", now).is_some());
        assert_eq!(cache.get("short", now + Duration::from_secs(2)), None);
    }

    #[test]
    fn a_new_cache_is_off_until_tracking_is_on() {
        let bounds = ClientCache {
            ttl: Duration::from_secs(60),
            capacity: 0,
        };
        let cache = Local::new(bounds, "p:1:s".to_owned());
        assert_eq!(cache.capacity, 1);
        assert_eq!(cache.reserve("k"), None);
        cache.turn_on("another head");
        assert!(!cache.is_on(), "tracking for another prefix does not count");
        cache.turn_on("p:1:s");
        assert!(cache.is_on());
    }
}
